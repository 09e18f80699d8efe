// Deletions whose tombstones leave the stream (purged, compacted, expired, or removed by the
// stream's limits) while a client is away: when it comes back with the same
// replicationIdentifier it ends with exactly what the stream holds plus its own local writes,
// instead of keeping the deleted documents (ghosts) or pushing them back (resurrections).
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { compactStream } from 'rxdb-nats-native';
import { person, ids, range, twoSynced } from './harness/people.mjs';
import { startNatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, docsOf, collectErrors, codeOf, replicatePeople, streamMessages } from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});


async function withJsm(fn) {
  const nc = await connect({ servers: server.url });
  try {
    return await fn(await nc.jetstreamManager());
  } finally {
    await nc.close();
  }
}

/** Removes every message of the documents `indexes` (what `nats stream purge --subject` does). */
const purgeDocuments = (streamName, indexes) =>
  withJsm(async (jsm) => {
    for (const i of indexes) await jsm.streams.purge(streamName, { filter: `${streamName}.people.${person(i).id}` });
  });


test('a client away while deletions were purged from the stream deletes them when it comes back, and pushes its own writes', async () => {
  const streamName = uniqueName('ghosts');
  const { a, b, ra, rb } = await twoSynced(server.url, streamName, 100);
  // B stops; A deletes 40 documents; their tombstones (and earlier revisions) then leave the stream.
  await rb.cancel();
  const deleted = range(0, 40);
  await a.people.bulkRemove(deleted.map((i) => person(i).id));
  await waitFor(async () => ids(await docsOf(a)).length === 60, 'the deletes on A');
  await ra.awaitInSync();
  await purgeDocuments(streamName, deleted);
  // While stopped, B writes: 5 new documents, an update of a survivor, an update of a deleted one.
  await b.people.bulkInsert(range(500, 505).map((i) => person(i)));
  await (await b.people.findOne(person(70).id).exec()).incrementalPatch({ name: 'updated by B' });
  await (await b.people.findOne(person(5).id).exec()).incrementalPatch({ name: 'updated by B while deleted elsewhere' });
  const removedOnB = new Set();
  b.people.remove$.subscribe((event) => removedOnB.add(event.documentId));

  const rb2 = replicatePeople(server.url, b, streamName);
  const errors = collectErrors([ra, rb2]);
  await rb2.awaitInitialReplication();
  await rb2.awaitInSync();
  const expected = [...range(40, 100), ...range(500, 505)].map((i) => person(i).id).sort();
  await waitFor(async () => ids(await docsOf(b)).join() === expected.join(), 'B without the deleted documents', 20000);
  await waitFor(async () => ids(await docsOf(a)).join() === expected.join(), "B's own writes on A", 20000);
  assert.equal((await b.people.findOne(person(70).id).exec()).name, 'updated by B');
  await waitFor(async () => (await a.people.findOne(person(70).id).exec())?.name === 'updated by B', "B's update on A");
  // Subscribers of B saw the deletions happen (through RxDB, not around it).
  for (const i of deleted) if (i !== 5) assert.ok(removedOnB.has(person(i).id), `remove$ for ${person(i).id}`);
  const stats = await rb2.stats();
  assert.equal(stats.resyncs, 1, 'one reconciliation');
  // A fresh client sees what A and B hold, and none of the deleted documents came back.
  const c = await createDb();
  const rc = replicatePeople(server.url, c, streamName, { push: undefined });
  await rc.awaitInitialReplication();
  assert.deepEqual(ids(await docsOf(c)), expected);
  assert.deepEqual(errors.map(codeOf), []);
  await Promise.all([ra.cancel(), rb2.cancel(), rc.cancel()]);
  await Promise.all([a.close(), b.close(), c.close()]);
});

test('a client that comes back to a stream where nothing was removed does not reconcile', async () => {
  const streamName = uniqueName('noresync');
  const { a, b, ra, rb } = await twoSynced(server.url, streamName, 20);
  await rb.cancel();
  await a.people.bulkRemove(range(0, 5).map((i) => person(i).id));
  await a.people.bulkInsert(range(100, 103).map((i) => person(i)));
  await ra.awaitInSync();
  const rb2 = replicatePeople(server.url, b, streamName);
  const errors = collectErrors(rb2);
  await rb2.awaitInitialReplication();
  assert.deepEqual(ids(await docsOf(b)), ids(await docsOf(a)));
  assert.equal((await rb2.stats()).resyncs, 0);
  assert.deepEqual(errors.map(codeOf), []);
  await Promise.all([ra.cancel(), rb2.cancel()]);
  await Promise.all([a.close(), b.close()]);
});

test("a stream whose limits removed messages a client never read: it reconciles and says so once", async () => {
  const streamName = uniqueName('limits');
  // The stream keeps 30 messages: older ones go, read or not.
  await withJsm((jsm) => jsm.streams.add({ name: streamName, subjects: [`${streamName}.people.*`], max_msgs: 30 }));
  const { a, b, ra, rb } = await twoSynced(server.url, streamName, 20);
  await rb.cancel();
  // 20 deletes and 20 creates: the first 10 deletes fall off the stream unread by B.
  await a.people.bulkRemove(range(0, 20).map((i) => person(i).id));
  await a.people.bulkInsert(range(100, 120).map((i) => person(i)));
  await ra.awaitInSync();
  const rb2 = replicatePeople(server.url, b, streamName);
  const errors = collectErrors(rb2);
  await rb2.awaitInitialReplication();
  await waitFor(async () => ids(await docsOf(b)).join() === ids(await docsOf(a)).join(), 'B as A');
  assert.deepEqual(ids(await docsOf(b)), range(100, 120).map((i) => person(i).id));
  const codes = errors.map(codeOf);
  assert.deepEqual(codes, ['NATS_HISTORY_REMOVED'], 'reported once');
  assert.match(errors[0].message, new RegExp(`stream "${streamName}" removed messages \\d+ to \\d+ by its limits`));
  assert.equal((await rb2.stats()).resyncs, 1);
  await Promise.all([ra.cancel(), rb2.cancel()]);
  await Promise.all([a.close(), b.close()]);
});

test('compactStream removes tombstones older than tombstonesOlderThan with their documents, and clients away reconcile', async () => {
  const streamName = uniqueName('compacttomb');
  const { a, b, ra, rb } = await twoSynced(server.url, streamName, 30);
  await rb.cancel();
  await a.people.bulkRemove(range(0, 10).map((i) => person(i).id));
  await (await a.people.findOne(person(20).id).exec()).incrementalPatch({ name: 'second revision' });
  await ra.awaitInSync();
  const connection = { servers: server.url };
  // Written just now: none is older than a minute.
  const recent = await compactStream({ streamName, connection, tombstonesOlderThan: 60000 });
  assert.equal(recent.tombstonesRemoved, 0);
  const gone = (messages) => messages.filter((m) => range(0, 10).some((i) => m.subject.endsWith(`.${person(i).id}`)));
  assert.equal(gone(await streamMessages(server.url, streamName)).length, 10, 'the 10 tombstones stay');
  const result = await compactStream({ streamName, connection, tombstonesOlderThan: 0 });
  assert.equal(result.tombstonesRemoved, 10);
  assert.equal(result.messagesAfter, 20, 'one revision of each live document, nothing of the deleted ones');
  assert.deepEqual(gone(await streamMessages(server.url, streamName)), []);
  // A fresh client never sees the deleted documents; B, away during all of it, deletes them.
  const c = await createDb();
  const rc = replicatePeople(server.url, c, streamName, { push: undefined });
  await rc.awaitInitialReplication();
  const live = range(10, 30).map((i) => person(i).id);
  assert.deepEqual(ids(await docsOf(c)), live);
  const rb2 = replicatePeople(server.url, b, streamName);
  const errors = collectErrors([rb2, rc]);
  await rb2.awaitInitialReplication();
  await waitFor(async () => ids(await docsOf(b)).join() === live.join(), 'B without the deleted documents');
  assert.equal((await b.people.findOne(person(20).id).exec()).name, 'second revision');
  assert.equal((await rb2.stats()).resyncs, 1);
  assert.deepEqual(errors.map(codeOf), []);
  await Promise.all([ra.cancel(), rb2.cancel(), rc.cancel()]);
  await Promise.all([a.close(), b.close(), c.close()]);
});

test('compactStream takes the replications\' deletedField', async () => {
  const streamName = uniqueName('compactfield');
  const db = await createDb();
  const r = replicatePeople(server.url, db, streamName, { deletedField: 'gone' });
  await r.awaitInitialReplication();
  await db.people.bulkInsert(range(0, 4).map((i) => person(i)));
  await db.people.bulkRemove([person(0).id, person(1).id]);
  await r.awaitInSync();
  const result = await compactStream({ streamName, connection: { servers: server.url }, tombstonesOlderThan: 0, deletedField: 'gone' });
  assert.equal(result.tombstonesRemoved, 2);
  assert.equal(result.messagesAfter, 2);
  await assert.rejects(compactStream({ streamName, connection: { servers: server.url }, deletedField: '' }), (err) => codeOf(err) === 'NATS_INVALID_OPTION' && /deletedField/.test(err.message));
  await r.cancel();
  await db.close();
});
