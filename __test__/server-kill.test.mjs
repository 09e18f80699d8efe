// kill -9 of the server in the middle of a push and of an initial pull: after a restart on the
// same store, both sides converge with every document, none applied twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { replicateNats } from 'rxdb-nats-native';
import { startNatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, streamMessages } from './harness/rxdb.mjs';
import { connect } from 'nats';

const N = 5000;
const person = (i) => ({ id: `p${String(i).padStart(5, '0')}`, name: `Person ${i}`, age: i % 100, tags: ['t'] });

function replicate(server, db, streamName, extra = {}) {
  return replicateNats({
    collection: db.people,
    replicationIdentifier: `kill-${streamName}`,
    streamName,
    subjectPrefix: `${streamName}.people`,
    // Short timeouts so the test does not wait out the defaults after the kill.
    connection: { servers: server.url, reconnectTimeWait: 100, timeout: 2000 },
    pull: { batchSize: 100 },
    push: { batchSize: 100 },
    retryTime: 300,
    ...extra,
  });
}

async function messageCount(url, streamName) {
  const nc = await connect({ servers: url, maxReconnectAttempts: 0 });
  try {
    const jsm = await nc.jetstreamManager();
    return (await jsm.streams.info(streamName)).state.messages;
  } catch {
    return -1;
  } finally {
    await nc.close().catch(() => {});
  }
}

test('kill -9 during a 5,000-document push: every document arrives exactly once', async () => {
  const server = await startNatsServer();
  const streamName = uniqueName('killpush');
  const db = await createDb();
  const r = replicate(server, db, streamName, { pull: undefined });
  await r.awaitInitialReplication();
  await db.people.bulkInsert(Array.from({ length: N }, (_, i) => person(i)));
  await waitFor(async () => (await messageCount(server.url, streamName)) >= 500, 'the push to be under way', 30000);
  await server.kill();
  await new Promise((res) => setTimeout(res, 500));
  await server.start();
  await waitFor(async () => (await messageCount(server.url, streamName)) >= N, 'all documents on the server', 60000);
  await r.awaitInSync();
  const messages = await streamMessages(server.url, streamName);
  const subjects = new Set(messages.map((m) => m.subject));
  assert.equal(subjects.size, N, 'every document is on the stream');
  assert.equal(messages.length, N, 'no document was written twice');

  // A fresh client converges with all of them.
  const fresh = await createDb();
  const rf = replicate(server, fresh, streamName, { push: undefined, live: false });
  await rf.awaitInitialReplication();
  assert.equal(await fresh.people.count().exec(), N);
  await db.close();
  await fresh.close();
  await server.destroy();
});

test('kill -9 during a fresh client\'s initial pull: it ends with every document, each applied once', async () => {
  const server = await startNatsServer();
  const streamName = uniqueName('killpull');
  const seedDb = await createDb();
  const seed = replicate(server, seedDb, streamName, { pull: undefined, live: false, push: { batchSize: 1000 } });
  await seedDb.people.bulkInsert(Array.from({ length: N }, (_, i) => person(i)));
  await seed.awaitInSync();
  await seedDb.close();

  const db = await createDb();
  const applied = new Map();
  // Small batches, so the kill lands while the pull is under way.
  const r = replicate(server, db, streamName, { push: undefined, pull: { batchSize: 20 } });
  r.received$.subscribe((d) => applied.set(d.id, (applied.get(d.id) || 0) + 1));
  await waitFor(async () => (await db.people.count().exec()) >= 300, 'the pull to be under way', 30000);
  await server.kill();
  await new Promise((res) => setTimeout(res, 500));
  await server.start();
  await waitFor(async () => (await db.people.count().exec()) === N, 'every document after the restart', 60000);
  assert.equal(applied.size, N);
  assert.deepEqual([...applied.values()].filter((n) => n > 1), [], 'no document applied twice');
  await db.close();
  await server.destroy();
});

test('cancel during a push, then start again: nothing lost, nothing written twice', async () => {
  const server = await startNatsServer();
  const streamName = uniqueName('cancelpush');
  const db = await createDb();
  const first = replicate(server, db, streamName, { pull: undefined });
  await db.people.bulkInsert(Array.from({ length: N }, (_, i) => person(i)));
  await waitFor(async () => (await messageCount(server.url, streamName)) >= 500, 'the push to be under way', 30000);
  await first.cancel();
  const atCancel = await messageCount(server.url, streamName);
  assert.ok(atCancel < N, `the push was still under way (${atCancel})`);
  const second = replicate(server, db, streamName, { pull: undefined });
  await second.awaitInSync();
  await waitFor(async () => (await messageCount(server.url, streamName)) >= N, 'every document', 30000);
  const messages = await streamMessages(server.url, streamName);
  assert.equal(new Set(messages.map((m) => m.subject)).size, N);
  assert.equal(messages.length, N, 'no document was written twice');
  await db.close();
  await server.destroy();
});
