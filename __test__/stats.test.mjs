// replication.stats(): what a user watches to see that replication moves, and how far behind it is.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { startNatsServer } from './harness/nats-server.mjs';
import {
  createDb, uniqueName, waitFor, publishRaw, replicatePeople, collectErrors,
} from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

const person = (id, age = 1) => ({ id, name: `name-${id}`, age, tags: [] });
const bodyBytes = (docs) => docs.reduce((n, d) => n + Buffer.byteLength(JSON.stringify({ ...d, _deleted: false })), 0);

test('stats count documents and bytes each way, and the lag while paused', async () => {
  const streamName = uniqueName('stats');
  const a = await createDb();
  const b = await createDb();
  const ra = replicatePeople(server.url, a, streamName);
  await ra.awaitInitialReplication();
  const rb = replicatePeople(server.url, b, streamName);
  await rb.awaitInitialReplication();

  const docs = Array.from({ length: 20 }, (_, i) => person(`p${i}`));
  await a.people.bulkInsert(docs);
  await waitFor(async () => (await b.people.count().exec()) === 20, 'b to receive 20');
  await ra.awaitInSync();
  const sa = await ra.stats();
  assert.equal(sa.documentsPushed, 20);
  assert.equal(sa.bytesPushed, bodyBytes(docs));
  assert.equal(sa.conflicts, 0);
  await waitFor(async () => (await rb.stats()).lag === 0, 'b to have no lag');
  const sb = await rb.stats();
  assert.equal(sb.documentsPulled, 20);
  assert.equal(sb.bytesPulled, bodyBytes(docs));
  assert.equal(sb.streamLastSequence, 20);
  assert.equal(sb.checkpoint, 20);
  assert.equal(sb.documentsPushed, 0);

  // While b is paused, a's writes pile up on the stream: that is b's lag.
  await rb.pause();
  await a.people.bulkInsert([person('late1'), person('late2'), person('late3')]);
  await ra.awaitInSync();
  await waitFor(async () => (await rb.stats()).lag === 3, 'b to lag by 3');
  await rb.start();
  await waitFor(async () => (await rb.stats()).lag === 0, 'b to catch up');
  assert.equal((await rb.stats()).documentsPulled, 23);

  await ra.cancel();
  await rb.cancel();
  const after = await rb.stats();
  assert.equal(after.documentsPulled, 23, 'counters survive cancel()');
  assert.equal(after.lag, null, 'no lag without a connection');
});

test('stats count conflicts, rejected documents and skipped malformed messages', async () => {
  const streamName = uniqueName('statsbad');
  const prefix = `${streamName}.people`;
  const db = await createDb();
  const r = replicatePeople(server.url, db, streamName);
  const errors = collectErrors(r);
  await r.awaitInitialReplication();

  // Another writer created `seed` already; a push-only client creates it too: a conflict.
  await publishRaw(server.url, `${prefix}.seed`, JSON.stringify(person('seed')));
  const pushOnly = await createDb();
  await pushOnly.people.insert(person('seed', 99));
  const rPush = replicatePeople(server.url, pushOnly, streamName, { pull: undefined });
  await rPush.awaitInitialReplication();
  await rPush.awaitInSync();
  const sPush = await rPush.stats();
  assert.equal(sPush.conflicts, 1);
  assert.equal(sPush.documentsPushed, 0);
  assert.equal(sPush.lag, null, 'no lag without pull');
  assert.equal((await pushOnly.people.findOne('seed').exec()).age, 1, 'the server state won');

  await publishRaw(server.url, `${prefix}.junk1`, 'not json');
  await publishRaw(server.url, `${prefix}.junk2`, '[]');
  await publishRaw(server.url, `${prefix}.fine`, JSON.stringify(person('fine')));
  await waitFor(() => db.people.findOne('fine').exec(), 'the valid document after the junk');
  await waitFor(async () => (await r.stats()).malformedSkipped === 2, 'two skipped messages');
  assert.equal(errors.filter((e) => e.code === 'NATS_MALFORMED_MESSAGE').length, 2);
  await rPush.cancel();
  await r.cancel();
});

test('stats count reconnects after a server restart', async () => {
  const own = await startNatsServer();
  try {
    const db = await createDb();
    const r = replicatePeople(own.url, db, uniqueName('statsreconnect'), {
      connection: { servers: own.url, reconnectTimeWait: 200 },
    });
    await r.awaitInitialReplication();
    assert.equal((await r.stats()).reconnects, 0);
    await own.stop();
    await own.start();
    await waitFor(async () => (await r.stats()).reconnects === 1, 'one reconnect');
    await db.people.insert(person('after-restart'));
    await r.awaitInSync();
    assert.equal((await r.stats()).documentsPushed, 1);
    await r.cancel();
  } finally {
    await own.destroy();
  }
});

test('liveTimings$ times each live batch on its way to RxDB, in order, on the epoch clock', async () => {
  const streamName = uniqueName('timings');
  const a = await createDb();
  const b = await createDb();
  const ra = replicatePeople(server.url, a, streamName);
  await ra.awaitInitialReplication();
  const rb = replicatePeople(server.url, b, streamName);
  const timings = [];
  rb.liveTimings$.subscribe((t) => timings.push(t));
  await rb.awaitInitialReplication();
  const before = performance.timeOrigin + performance.now();
  await a.people.insert(person('live1'));
  await waitFor(async () => (await b.people.count().exec()) === 1, 'b to receive live1');
  const seen = performance.timeOrigin + performance.now();
  assert.equal(timings.length, 1, `one live batch, got ${JSON.stringify(timings)}`);
  const [t] = timings;
  assert.equal(t.documents, 1);
  // Each moment follows the one before, all between the write and its arrival.
  const moments = [before, t.receivedAt, t.sentAt, t.takenAt, t.handedAt, seen];
  moments.slice(1).forEach((m, i) => assert.ok(m >= moments[i], `moment ${i + 1} of ${JSON.stringify(moments)} is not after the one before`));
  await ra.cancel();
  await rb.cancel();
  await a.close();
  await b.close();
});
