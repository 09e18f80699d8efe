// Conflicts: concurrent creates and updates are detected on the server and resolved by the
// collection's conflict handler; nothing is silently overwritten.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { deepEqual } from 'rxdb/plugins/utils';
import { startNatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, streamMessages, collectErrors, replicatePeople } from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

/** A conflict handler that merges tags, so a lost write shows as a missing tag. */
function mergingHandler(calls) {
  return {
    isEqual(a, b) {
      return deepEqual({ ...a, tags: [...a.tags].sort() }, { ...b, tags: [...b.tags].sort() });
    },
    async resolve(input) {
      calls.count++;
      const tags = [...new Set([...input.realMasterState.tags, ...input.newDocumentState.tags])].sort();
      return { ...input.realMasterState, tags };
    },
  };
}

const replicate = (db, streamName, extra = {}) =>
  replicatePeople(server.url, db, streamName, { autoStart: false, ...extra });

for (const [how, streamConfig] of [
  ['one read per document', {}],
  ['one batch direct get per batch (allowDirect)', { allowDirect: true }],
]) test(`concurrent creates of the same ids conflict and are merged by a custom handler (${how})`, async () => {
  const streamName = uniqueName('creates');
  const calls = { count: 0 };
  const [a, b] = [
    await createDb({ conflictHandler: mergingHandler(calls) }),
    await createDb({ conflictHandler: mergingHandler(calls) }),
  ];
  const ids = Array.from({ length: 50 }, (_, i) => `shared-${i}`);
  await a.people.bulkInsert(ids.map((id) => ({ id, name: id, age: 1, tags: ['from-a'] })));
  await b.people.bulkInsert(ids.map((id) => ({ id, name: id, age: 1, tags: ['from-b'] })));
  const ra = replicate(a, streamName, { streamConfig });
  const rb = replicate(b, streamName, { streamConfig });
  const errors = collectErrors([ra, rb]);
  await Promise.all([ra.start(), rb.start()]);
  const merged = async (db) =>
    (await db.people.find().exec()).every((d) => d.tags.join() === 'from-a,from-b');
  await waitFor(async () => (await merged(a)) && (await merged(b)), 'both sides to hold the merged documents');
  await ra.awaitInSync();
  await rb.awaitInSync();
  assert.ok(calls.count >= ids.length, `the handler resolved ${calls.count} conflicts`);
  const last = {};
  for (const m of await streamMessages(server.url, streamName)) last[m.subject] = JSON.parse(m.body);
  for (const id of ids) {
    assert.deepEqual(last[`${streamName}.people.${id}`].tags, ['from-a', 'from-b'], `server state of ${id}`);
  }
  assert.deepEqual(errors, []);
  await a.close();
  await b.close();
});

test('concurrent updates of one document lose neither write', async () => {
  const streamName = uniqueName('updates');
  const calls = { count: 0 };
  const [a, b] = [
    await createDb({ conflictHandler: mergingHandler(calls) }),
    await createDb({ conflictHandler: mergingHandler(calls) }),
  ];
  const ra = replicate(a, streamName);
  const rb = replicate(b, streamName);
  await Promise.all([ra.start(), rb.start()]);
  await a.people.insert({ id: 'doc', name: 'doc', age: 0, tags: [] });
  await waitFor(() => b.people.findOne('doc').exec(), 'b to get the document');
  await ra.pause();
  await rb.pause();
  for (let i = 0; i < 5; i++) {
    const [da, db] = [await a.people.findOne('doc').exec(), await b.people.findOne('doc').exec()];
    await da.incrementalPatch({ tags: [...da.tags, `a${i}`] });
    await db.incrementalPatch({ tags: [...db.tags, `b${i}`] });
  }
  await Promise.all([ra.start(), rb.start()]);
  const want = ['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4'].join();
  await waitFor(
    async () =>
      (await a.people.findOne('doc').exec()).tags.join() === want &&
      (await b.people.findOne('doc').exec()).tags.join() === want,
    'both sides to hold every tag'
  ).catch(async (e) => {
    console.log('A', JSON.stringify((await a.people.findOne('doc').exec()).toJSON()));
    console.log('B', JSON.stringify((await b.people.findOne('doc').exec()).toJSON()));
    console.log('S', JSON.stringify((await streamMessages(server.url, streamName)).slice(-3)));
    throw e;
  });
  assert.ok(calls.count >= 1);
  await a.close();
  await b.close();
});
