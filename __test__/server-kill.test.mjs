// kill -9 of the server in the middle of a push and of an initial pull: after a restart on the
// same store, both sides converge with every document, none applied twice. Each fault lands at a
// point the test chooses, not at a moment it hopes for: the push's server dies when its 500th
// message goes by (a subscriber in another process kills it), the pull and the cancelled push
// are held by a modifier until the fault is done.
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { replicateNats } from './harness/rxdb.mjs';
import { startNatsServer, killOnMessage } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, streamMessages, heldGate } from './harness/rxdb.mjs';
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
  let nc;
  try {
    nc = await connect({ servers: url, maxReconnectAttempts: 0 });
    const jsm = await nc.jetstreamManager();
    return (await jsm.streams.info(streamName)).state.messages;
  } catch {
    return -1;
  } finally {
    await nc?.close().catch(() => {});
  }
}

test('kill -9 during a 5,000-document push: every document arrives exactly once', async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const streamName = uniqueName('killpush');
  const db = await createDb();
  t.after(() => db.close());
  const r = replicate(server, db, streamName, { pull: undefined });
  await r.awaitInitialReplication();
  const killer = killOnMessage(server.url, `${streamName}.people.*`, 500, server.proc.pid);
  t.after(() => killer.child.kill());
  await killer.ready;
  let sent = 0;
  r.sent$.subscribe(() => sent++);
  await db.people.bulkInsert(Array.from({ length: N }, (_, i) => person(i)));
  await killer.done;
  // Batches of 100 wait for their acknowledgements: most of the push comes after the kill.
  const sentAtKill = sent;
  assert.ok(sentAtKill < N, `the push was still under way at the kill (${sentAtKill} of ${N} sent)`);
  await server.kill(); // collects the exit
  await server.start();
  await waitFor(async () => (await messageCount(server.url, streamName)) >= N, 'all documents on the server', 60000);
  await r.awaitInSync();
  const messages = await streamMessages(server.url, streamName);
  const subjects = new Set(messages.map((m) => m.subject));
  assert.equal(subjects.size, N, 'every document is on the stream');
  assert.equal(messages.length, N, 'no document was written twice');

  // A fresh client converges with all of them.
  const fresh = await createDb();
  t.after(() => fresh.close());
  const rf = replicate(server, fresh, streamName, { push: undefined, live: false });
  await rf.awaitInitialReplication();
  assert.equal(await fresh.people.count().exec(), N);
});

/** The pull consumers of a stream, as the server describes them. */
async function consumers(url, streamName) {
  const nc = await connect({ servers: url });
  try {
    const out = [];
    for await (const ci of (await nc.jetstreamManager()).consumers.list(streamName)) out.push(ci);
    return out;
  } finally {
    await nc.close();
  }
}

test('kill -9 during a fresh client\'s initial pull: it ends with every document, each applied once', async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const streamName = uniqueName('killpull');
  const seedDb = await createDb();
  const seed = replicate(server, seedDb, streamName, { pull: undefined, live: false, push: { batchSize: 1000 } });
  await seedDb.people.bulkInsert(Array.from({ length: N }, (_, i) => person(i)));
  await seed.awaitInSync();
  await seedDb.close();

  const db = await createDb();
  t.after(() => db.close());
  const applied = new Map();
  // Held on the first document past HOLD_AT until the server was killed and restarted: the
  // pull reads ahead, but not the whole stream at once, so its consumer has documents left.
  const HOLD_AT = 1000;
  const gate = heldGate();
  const modifier = gate.heldAfter(HOLD_AT);
  const r = replicate(server, db, streamName, { push: undefined, pull: { batchSize: 20, modifier } });
  r.received$.subscribe((d) => applied.set(d.id, (applied.get(d.id) || 0) + 1));
  await waitFor(() => gate.held > 0, 'the pull to reach the gate', 60000);
  const [consumer] = await consumers(server.url, streamName);
  assert.ok(consumer && consumer.num_pending > 0, `the pull consumer still has documents to deliver at the kill (${consumer?.num_pending} pending)`);
  await server.kill();
  assert.ok(applied.size < N, `the pull was still under way at the kill (${applied.size} of ${N} applied)`);
  await server.start();
  gate.release();
  await waitFor(async () => (await db.people.count().exec()) === N, 'every document after the restart', 60000);
  assert.equal(applied.size, N);
  assert.deepEqual([...applied.values()].filter((n) => n > 1), [], 'no document applied twice');
});

test('cancel during a push, then start again: nothing lost, nothing written twice', async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const streamName = uniqueName('cancelpush');
  const db = await createDb();
  t.after(() => db.close());
  // push.modifier holds the push at document 1,000 (batches of 100: ten are on the server).
  const gate = heldGate();
  const modifier = async (doc) => {
    if (Number(doc.id.slice(1)) >= 1000) await gate.hold();
    return doc;
  };
  const first = replicate(server, db, streamName, { pull: undefined, push: { batchSize: 100, modifier } });
  await db.people.bulkInsert(Array.from({ length: N }, (_, i) => person(i)));
  await waitFor(() => gate.held > 0, 'the push to reach the gate', 60000);
  const atCancel = await messageCount(server.url, streamName);
  assert.ok(atCancel < N, `the push was still under way (${atCancel} of ${N} on the stream)`);
  const cancelled = first.cancel();
  gate.release();
  await cancelled;
  const second = replicate(server, db, streamName, { pull: undefined });
  await second.awaitInSync();
  await waitFor(async () => (await messageCount(server.url, streamName)) >= N, 'every document', 30000);
  const messages = await streamMessages(server.url, streamName);
  assert.equal(new Set(messages.map((m) => m.subject)).size, N);
  assert.equal(messages.length, N, 'no document was written twice');
});
