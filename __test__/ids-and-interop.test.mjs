// Document ids of every kind, and sharing one stream with rxdb/plugins/replication-nats.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { subjectFor } from 'rxdb-nats-native';
import { replicateNats } from './harness/rxdb.mjs';
import { replicateNats as replicateNatsOfficial } from 'rxdb/plugins/replication-nats';
import { startNatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, docsOf, streamMessages, collectErrors } from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

const options = (db, streamName, extra = {}) => ({
  collection: db.people,
  replicationIdentifier: `ids-${streamName}`,
  streamName,
  subjectPrefix: `${streamName}.people`,
  connection: { servers: server.url },
  pull: {},
  push: {},
  retryTime: 200,
  ...extra,
});

const AWKWARD_IDS = ['a.b', 'a..b', 'with space', 'tab\there', '*', '>', 'ünï☃ cödé', '~tilde', '~', '.', 'x/y=z$%'];
const PLAIN_IDS = ['alice', 'ünï☃', 'x/y=z$%', 'a*b', 'a>b'];

test('every kind of id round-trips between two databases', async () => {
  const streamName = uniqueName('ids');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicateNats(options(a, streamName));
  const rb = replicateNats(options(b, streamName));
  const errors = collectErrors([ra, rb]);
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  const ids = [...new Set([...AWKWARD_IDS, ...PLAIN_IDS])];
  await a.people.bulkInsert(ids.map((id, i) => ({ id, name: `doc ${i}`, age: i, tags: [] })));
  await waitFor(async () => (await b.people.count().exec()) === ids.length, 'all ids on b');
  assert.deepEqual(Object.keys(await docsOf(b)).sort(), [...ids].sort());

  // Updates and deletes of escaped ids flow back.
  await (await b.people.findOne('a.b').exec()).incrementalPatch({ age: 99 });
  await (await b.people.findOne('*').exec()).remove();
  await waitFor(async () => (await a.people.findOne('a.b').exec())?.age === 99, 'the update of a.b');
  await waitFor(async () => !(await a.people.findOne('*').exec()), 'the delete of *');

  const subjects = new Set((await streamMessages(server.url, streamName)).map((m) => m.subject));
  for (const id of PLAIN_IDS) assert.ok(subjects.has(`${streamName}.people.${id}`), `plain id ${id} keeps its subject`);
  assert.ok(subjects.has(`${streamName}.people.~YS5i`), 'a.b is escaped as ~ + base64url');
  for (const id of AWKWARD_IDS) assert.ok(subjects.has(subjectFor(`${streamName}.people`, id)));
  assert.deepEqual(errors, []);
  await a.close();
  await b.close();
});

test('shares one stream with rxdb/plugins/replication-nats, both ways', async () => {
  const streamName = uniqueName('interop');
  const [native, official] = [await createDb(), await createDb()];
  const rn = replicateNats(options(native, streamName));
  const nativeErrors = collectErrors(rn);
  await rn.awaitInitialReplication(); // creates the stream
  // maxReconnectAttempts 0: the official plugin never closes its connection; this lets the
  // test process exit once the server stops.
  const ro = replicateNatsOfficial(
    options(official, streamName, { connection: { servers: server.url, maxReconnectAttempts: 0 } })
  );
  const officialErrors = collectErrors(ro);
  // Not awaiting ro.awaitInitialReplication(): its pull waits for a fetch to expire (30 s).

  await native.people.insert({ id: 'from-native', name: 'N', age: 1, tags: ['n'] });
  await waitFor(() => official.people.findOne('from-native').exec(), 'the official plugin to get the native write');
  await official.people.insert({ id: 'from-official', name: 'O', age: 2, tags: ['o'] });
  await waitFor(() => native.people.findOne('from-official').exec(), 'the native plugin to get the official write');
  await (await native.people.findOne('from-official').exec()).incrementalPatch({ age: 20 });
  await waitFor(async () => (await official.people.findOne('from-official').exec())?.age === 20, 'the native update');

  const subjects = (await streamMessages(server.url, streamName)).map((m) => m.subject);
  assert.ok(subjects.includes(`${streamName}.people.from-native`));
  assert.ok(subjects.includes(`${streamName}.people.from-official`));
  assert.deepEqual(nativeErrors, []);
  assert.deepEqual(officialErrors, [], 'the official plugin accepts the stream this library created');
  await rn.cancel();
  await ro.cancel();
  await native.close();
  await official.close();
});
