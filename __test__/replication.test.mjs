import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { replicateNats } from 'rxdb-nats-native';
import { startNatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, docsOf, streamMessages } from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

function replicate(db, streamName, extra = {}) {
  return replicateNats({
    collection: db.people,
    replicationIdentifier: `test-${streamName}`,
    streamName,
    subjectPrefix: `${streamName}.people`,
    connection: { servers: server.url },
    pull: {},
    push: {},
    retryTime: 200,
    ...extra,
  });
}

test('two databases converge through one stream: inserts, updates and deletes', async () => {
  const streamName = uniqueName('converge');
  const [a, b] = [await createDb(), await createDb()];
  const errors = [];
  const ra = replicate(a, streamName);
  const rb = replicate(b, streamName);
  ra.error$.subscribe((e) => errors.push(e));
  rb.error$.subscribe((e) => errors.push(e));
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();

  await a.people.bulkInsert([
    { id: 'alice', name: 'Alice', age: 30, tags: ['x'] },
    { id: 'bob', name: 'Bob', age: 40, tags: [] },
  ]);
  await waitFor(async () => (await b.people.count().exec()) === 2, 'b to get both documents');

  const bob = await b.people.findOne('bob').exec();
  await bob.incrementalPatch({ age: 41 });
  await waitFor(async () => (await a.people.findOne('bob').exec())?.age === 41, 'a to see the update');

  await (await a.people.findOne('alice').exec()).remove();
  await waitFor(async () => (await b.people.count().exec()) === 1, 'b to see the delete');

  await ra.awaitInSync();
  await rb.awaitInSync();
  assert.deepEqual(await docsOf(a), await docsOf(b));
  const messages = await streamMessages(server.url, streamName);
  const last = {};
  for (const m of messages) last[m.subject] = JSON.parse(m.body);
  assert.equal(last[`${streamName}.people.alice`]._deleted, true);
  assert.equal(last[`${streamName}.people.bob`].age, 41);
  assert.deepEqual(errors, []);
  await a.close();
  await b.close();
});
