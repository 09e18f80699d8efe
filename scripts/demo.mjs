// The demo: a local nats-server, two in-memory RxDB databases replicating through it with
// rxdb-nats-native, writes on both sides, and proof that they converge.
import { createRxDatabase } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { replicateNats } from 'rxdb-nats-native';
import { startNatsServer } from './nats-server-process.mjs';

const N = 5000;
const schema = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 100 },
    name: { type: 'string' },
    age: { type: 'integer' },
    tags: { type: 'array', items: { type: 'string' } },
  },
  required: ['id', 'name'],
};

const log = (text) => console.log(`[${((performance.now() - t0) / 1000).toFixed(2)}s] ${text}`);
const t0 = performance.now();

const server = await startNatsServer();
log(`nats-server with JetStream on ${server.url} (store ${server.storeDir})`);

async function client(name) {
  const db = await createRxDatabase({ name, storage: getRxStorageMemory(), multiInstance: false });
  await db.addCollections({ people: { schema } });
  const replication = replicateNats({
    collection: db.people,
    replicationIdentifier: 'demo-people',
    streamName: 'demo',
    subjectPrefix: 'demo.people',
    connection: { servers: server.url, name },
    pull: { batchSize: 500 },
    push: { batchSize: 500 },
    retryTime: 500,
  });
  replication.error$.subscribe((e) => log(`${name} error: ${e.code || ''} ${e.message}`));
  await replication.awaitInitialReplication();
  return { name, db, replication };
}

const a = await client('alpha');
const b = await client('beta');
log('both databases replicate through stream "demo" (subjects demo.people.*)');

// Progress while documents flow from alpha to beta.
const start = performance.now();
const progress = setInterval(async () => {
  const count = await b.db.people.count().exec();
  const rate = count / ((performance.now() - start) / 1000);
  log(`beta has ${count}/${N} documents (${Math.round(rate)} docs/s)`);
}, 250);
const docs = Array.from({ length: N }, (_, i) => ({
  id: `person-${i}`,
  name: `Person ${i}`,
  age: i % 90,
  tags: ['demo', i % 2 ? 'odd' : 'even'],
}));
await a.db.people.bulkInsert(docs);
await a.replication.awaitInSync();
while ((await b.db.people.count().exec()) < N) await new Promise((r) => setTimeout(r, 50));
clearInterval(progress);
const seconds = (performance.now() - start) / 1000;
log(`beta has all ${N} documents after ${seconds.toFixed(2)}s (${Math.round(N / seconds)} docs/s)`);

// Writes on beta flow back, deletes too.
const young = await b.db.people.find({ selector: { age: { $lt: 10 } } }).exec();
await b.db.people.bulkUpsert(young.map((d) => ({ ...d.toJSON(), name: 'updated on beta' })));
await b.db.people.find({ selector: { age: { $gte: 80 } } }).remove();
await b.replication.awaitInSync();
// Key order differs between a local insert and a replicated copy: compare sorted keys.
const canonical = (doc) => JSON.stringify(Object.fromEntries(Object.entries(doc).sort()));
const dump = async (db) =>
  (await db.people.find({ sort: [{ id: 'asc' }] }).exec()).map((d) => canonical(d.toJSON())).join('\n');
const expected = await dump(b.db);
let same = false;
for (let i = 0; i < 200 && !same; i++) {
  same = (await dump(a.db)) === expected;
  if (!same) await new Promise((r) => setTimeout(r, 50));
}
log(`beta updated and deleted some documents; alpha has ${await a.db.people.count().exec()} documents`);
log(same ? 'CONVERGED: alpha and beta hold the same documents' : 'NOT CONVERGED');

await a.replication.cancel();
await b.replication.cancel();
await a.db.close();
await b.db.close();
await server.destroy();
log('replications cancelled, databases closed, nats-server stopped');
process.exitCode = same ? 0 : 1;
