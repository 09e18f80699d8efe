// Outages: a server that is down for a minute, and one that comes up only after the replication
// started. Writes on both sides during the outage arrive afterwards; nobody restarts anything.
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { replicateNats } from './harness/rxdb.mjs';
import { NatsServer, startNatsServer, freePort } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, docsOf, codeOf, collectErrors } from './harness/rxdb.mjs';

const OUTAGE_MS = Number(process.env.OUTAGE_MS || 60000);

function replicate(server, db, streamName, name) {
  return replicateNats({
    collection: db.people,
    replicationIdentifier: `outage-${streamName}`,
    streamName,
    subjectPrefix: `${streamName}.people`,
    connection: { servers: server.url, name, timeout: 2000 },
    pull: {},
    push: {},
    retryTime: 500,
  });
}
const person = (id, extra = {}) => ({ id, name: id, age: 1, tags: [], ...extra });

test(`a ${OUTAGE_MS / 1000} s outage: writes on both sides during it arrive after it`, { timeout: OUTAGE_MS + 120000 }, async () => {
  const server = await startNatsServer();
  const streamName = uniqueName('outage');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicate(server, a, streamName, 'a');
  const rb = replicate(server, b, streamName, 'b');
  const errors = collectErrors([ra, rb]);
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  await a.people.insert(person('before'));
  await waitFor(() => b.people.findOne('before').exec(), 'the write before the outage');

  await server.stop();
  const outageStart = Date.now();
  await a.people.insert(person('during-a'));
  await b.people.insert(person('during-b'));
  await (await b.people.findOne('before').exec()).incrementalPatch({ age: 2 });
  await waitFor(() => errors.some((e) => ['NATS_UNAVAILABLE', 'NATS_CONNECT_FAILED'].includes(codeOf(e))), 'error$ to report the outage');
  await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - outageStart))));
  await server.start();

  await waitFor(async () => {
    const [da, db] = [await docsOf(a), await docsOf(b)];
    return Object.keys(da).length === 3 && JSON.stringify(Object.keys(da).sort()) === JSON.stringify(Object.keys(db).sort()) &&
      da.before.age === 2 && db.before.age === 2;
  }, 'both sides to hold every write', 60000);
  await ra.awaitInSync();
  await rb.awaitInSync();
  assert.deepEqual(await docsOf(a), await docsOf(b));
  await a.close();
  await b.close();
  await server.destroy();
});

test('the server comes up after several failed connects: the replication starts by itself', async () => {
  const late = new NatsServer();
  late.port = await freePort();
  const streamName = uniqueName('late');
  const db = await createDb();
  await db.people.insert(person('written-before-the-server'));
  const r = replicate(late, db, streamName, 'late');
  const errors = collectErrors(r);
  // Retried every retryTime (500 ms), each failure reported: the server starts after the fifth.
  const failures = () => errors.filter((e) => codeOf(e) === 'NATS_CONNECT_FAILED').length;
  await waitFor(() => failures() >= 5, 'five failed connects on error$', 60000);
  await late.start();
  const other = await createDb();
  const ro = replicate(late, other, streamName, 'other');
  await waitFor(() => other.people.findOne('written-before-the-server').exec(), 'the early write to arrive');
  await other.people.insert(person('from-other'));
  await waitFor(() => db.people.findOne('from-other').exec(), 'live replication to run');
  await ro.cancel();
  await db.close();
  await other.close();
  await late.destroy();
});
