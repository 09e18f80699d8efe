// Races between what RxDB is handed from the stream and what it pushes at the same time. RxDB
// applies a handed-over master state only once its upstream is idle, and it pushes rows built from
// a snapshot of the local documents: both can pair an older state with a newer one. Each test
// here lost writes before the glue guarded against it (js/replicate.cjs: guardDownstream,
// supersededRows).
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { startNatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, replicatePeople, streamMessages, collectErrors } from './harness/rxdb.mjs';

const DOCS = 500;
const ROUNDS = 40;

// Before: the writer's own earlier revisions came back after it had pushed newer ones, rolled its
// documents back, and its next round was resolved against the server; it ended on round 18-24
// for ~499 of 500 documents.
test('a writer that outpaces its own echo keeps every round', async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const streamName = uniqueName('outpace');
  const writer = await createDb();
  const reader = await createDb();
  const rw = replicatePeople(server.url, writer, streamName, { pull: { batchSize: 200 }, push: { batchSize: 200 } });
  const rr = replicatePeople(server.url, reader, streamName, { pull: { batchSize: 200 }, push: { batchSize: 200 } });
  const errors = collectErrors([rw, rr]);
  t.after(async () => {
    await rw.cancel();
    await rr.cancel();
    await writer.close();
    await reader.close();
  });
  await rw.awaitInitialReplication();
  await rr.awaitInitialReplication();
  // The writer never waits for its echo; a reader keeps up, so the stream is busy both ways.
  for (let round = 1; round <= ROUNDS; round++) {
    await writer.people.bulkUpsert(
      Array.from({ length: DOCS }, (_, i) => ({ id: `doc-${i}`, name: `round ${round}`, age: round, tags: [] }))
    );
    await waitFor(async () => (await rr.stats()).lag < 3 * DOCS, 'the reader to keep up', 60000);
  }
  const ages = async (db) => {
    const out = {};
    for (const d of await db.people.find().exec()) out[d.age] = (out[d.age] || 0) + 1;
    return JSON.stringify(out);
  };
  const allLast = JSON.stringify({ [ROUNDS]: DOCS });
  await waitFor(async () => (await ages(writer)) === allLast, 'the writer to keep its last round', 30000).catch(
    async (e) => assert.fail(`${e.message}; writer documents by round: ${await ages(writer)}`)
  );
  await waitFor(async () => (await ages(reader)) === allLast, 'the reader to get the last round', 30000).catch(
    async (e) => assert.fail(`${e.message}; reader documents by round: ${await ages(reader)}`)
  );
  // The server's newest message of every document is the last round too.
  const newest = new Map();
  for (const m of await streamMessages(server.url, streamName)) newest.set(m.subject, JSON.parse(m.body).age);
  assert.equal(newest.size, DOCS);
  assert.deepEqual([...new Set(newest.values())], [ROUNDS]);
  assert.equal((await rw.stats()).conflicts, 0, 'a single writer has nothing to conflict with');
  assert.deepEqual(errors, []);
});

// RxDB pushes every local document again from a snapshot when it starts or resyncs, and reads the
// assumed master state of each only afterwards. When the downstream replaced the document in
// between, it hands over a row whose assumed master state is newer than its content. Written, it
// would replace the newer server state with content never based on it. The row is built here as
// RxDB builds it and handed to the replication's push handler.
test('a pushed row older than the local document does not overwrite the newer server state', async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const streamName = uniqueName('snapshot');
  const a = await createDb();
  const b = await createDb();
  const ra = replicatePeople(server.url, a, streamName);
  const rb = replicatePeople(server.url, b, streamName);
  t.after(async () => {
    await ra.cancel();
    await rb.cancel();
    await a.close();
    await b.close();
  });
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  await a.people.insert({ id: 'x', name: 'first', age: 1, tags: [] });
  await waitFor(async () => (await b.people.findOne('x').exec())?.name === 'first', 'b to get the first state');
  const second = await b.people.findOne('x').exec();
  await second.incrementalPatch({ name: 'second', age: 2 });
  await waitFor(async () => (await a.people.findOne('x').exec())?.name === 'second', 'a to get the second state');
  await ra.awaitInSync();
  const before = await streamMessages(server.url, streamName);

  const local = (await a.people.findOne('x').exec()).toJSON();
  const row = {
    assumedMasterState: { ...local, _deleted: false },
    newDocumentState: { id: 'x', name: 'first', age: 1, tags: [], _deleted: false },
  };
  const conflictsBefore = (await ra.stats()).conflicts;
  const answer = await ra.push.handler([row]);

  assert.equal(answer.length, 1, 'the row is answered as a conflict, so RxDB does not record it as pushed');
  assert.equal(answer[0].name, 'second');
  assert.deepEqual(await streamMessages(server.url, streamName), before, 'nothing was written');
  assert.equal((await a.people.findOne('x').exec()).name, 'second');
  assert.equal((await ra.stats()).conflicts, conflictsBefore, 'not counted as a conflict with another writer');

  // A row whose content is the local document is written as always.
  await (await a.people.findOne('x').exec()).incrementalPatch({ name: 'third', age: 3 });
  await waitFor(async () => (await b.people.findOne('x').exec())?.name === 'third', 'b to get the third state');
  assert.equal((await streamMessages(server.url, streamName)).length, before.length + 1);
});
