// The demo: a local nats-server, two in-memory RxDB databases replicating through it with
// rxdb-nats-native, writes on both sides, and proof that they converge. With `--kv`, a last
// round shares a KV bucket between an RxDB database and a plain nats.js KV client.
import { createRxDatabase } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { replicateNats } from 'rxdb-nats-native';
import { connect } from 'nats';
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

// Key order differs between a local insert and a replicated copy: compare sorted keys.
const canonical = (doc) => JSON.stringify(Object.fromEntries(Object.entries(doc).sort()));
const dump = async (db) =>
  (await db.people.find({ sort: [{ id: 'asc' }] }).exec()).map((d) => canonical(d.toJSON())).join('\n');
async function converged() {
  const expected = await dump(b.db);
  for (let i = 0; i < 200; i++) {
    if ((await dump(a.db)) === expected) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

// Progress while documents flow from alpha to beta, from the replications' own stats().
const start = performance.now();
let lastCount = 0;
let lastAt = start;
const progress = setInterval(async () => {
  const [count, sa, sb] = await Promise.all([
    b.db.people.count().exec(), a.replication.stats(), b.replication.stats(),
  ]);
  const now = performance.now();
  const rate = (count - lastCount) / ((now - lastAt) / 1000);
  [lastCount, lastAt] = [count, now];
  log(
    `beta ${count}/${N} documents, ${Math.round(rate)} docs/s | alpha pushed ${sa.documentsPushed} ` +
      `| beta lag ${sb.lag ?? '?'} messages | conflicts ${sa.conflicts + sb.conflicts}`
  );
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
log(`beta updated ${young.length} and deleted some documents; alpha has them: ${await converged()}`);

// Both edit the same documents while beta is offline: beta's edits conflict when it comes back,
// and RxDB's default conflict handler keeps the server's (alpha's) version.
const contested = docs.filter((d) => d.age >= 10 && d.age < 80).slice(0, 100).map((d) => d.id);
await b.replication.pause();
await a.db.people.bulkUpsert(contested.map((id) => ({ ...docs[+id.slice(7)], name: 'edited on alpha' })));
await a.replication.awaitInSync();
await b.db.people.bulkUpsert(contested.map((id) => ({ ...docs[+id.slice(7)], name: 'edited on beta' })));
log(`alpha and beta both edited ${contested.length} documents while beta was paused`);
await b.replication.start();
await b.replication.awaitInSync();
const same = await converged();
log(same ? 'CONVERGED: alpha and beta hold the same documents' : 'NOT CONVERGED');
const kept = await b.db.people.findByIds(contested).exec();
const alphaWon = [...kept.values()].filter((d) => d.name === 'edited on alpha').length;
log(`contested documents: ${alphaWon}/${contested.length} hold alpha's edit on beta (the server state won)`);

// The summary, from stats().
const [sa, sb] = [await a.replication.stats(), await b.replication.stats()];
const kb = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;
console.log('\nsummary       pushed (docs / bytes)   pulled (docs / bytes)   conflicts  malformed  reconnects  lag');
for (const [name, s] of [['alpha', sa], ['beta', sb]]) {
  console.log(
    `${name.padEnd(12)}  ${`${s.documentsPushed} / ${kb(s.bytesPushed)}`.padEnd(22)}  ` +
      `${`${s.documentsPulled} / ${kb(s.bytesPulled)}`.padEnd(22)}  ${String(s.conflicts).padEnd(9)}  ` +
      `${String(s.malformedSkipped).padEnd(9)}  ${String(s.reconnects).padEnd(10)}  ${s.lag}`
  );
}
console.log(`first sync: ${N} documents in ${seconds.toFixed(2)}s (${Math.round(N / seconds)} docs/s)\n`);

await a.replication.cancel();
await b.replication.cancel();
await a.db.close();
await b.db.close();
const kvOk = process.argv.includes('--kv') ? await kvRound() : true;
await server.destroy();
log('replications cancelled, databases closed, nats-server stopped');
process.exitCode = same && alphaWon === contested.length && kvOk ? 0 : 1;

/**
 * The KV layout: RxDB database "gamma" replicates KV bucket "people"; a nats.js KV client (any
 * NATS service could be it) puts, reads and deletes the same documents.
 */
async function kvRound() {
  const db = await createRxDatabase({ name: 'gamma', storage: getRxStorageMemory(), multiInstance: false });
  await db.addCollections({ people: { schema } });
  const replication = replicateNats({
    collection: db.people,
    replicationIdentifier: 'demo-kv',
    kv: { bucket: 'people' },
    connection: { servers: server.url, name: 'gamma' },
    pull: {},
    push: {},
    retryTime: 500,
  });
  replication.error$.subscribe((e) => log(`gamma error: ${e.code || ''} ${e.message}`));
  await replication.awaitInitialReplication();
  const nc = await connect({ servers: server.url, name: 'kv-service' });
  const kv = await nc.jetstream().views.kv('people');
  const until = async (check) => {
    for (let i = 0; i < 200 && !(await check()); i++) await new Promise((r) => setTimeout(r, 25));
    return check();
  };
  await db.people.bulkInsert([
    { id: 'ada', name: 'Ada', age: 36 },
    { id: 'alan turing', name: 'Alan', age: 41 },
  ]);
  await replication.awaitInSync();
  const ada = JSON.parse(new TextDecoder().decode((await kv.get('ada')).value));
  log(`KV round: gamma inserted 2 documents; kv.get('ada') = ${JSON.stringify(ada)}`);
  await kv.put('grace', new TextEncoder().encode(JSON.stringify({ id: 'grace', name: 'Grace', age: 85 })));
  const arrived = await until(() => db.people.findOne('grace').exec());
  log(`KV round: the KV client put 'grace'; gamma has it: ${!!arrived}`);
  await kv.delete('ada');
  const deleted = await until(async () => !(await db.people.findOne('ada').exec()));
  log(`KV round: the KV client deleted 'ada'; gone from gamma: ${deleted}`);
  const keys = [];
  for await (const key of await kv.keys()) keys.push(key);
  log(`KV round: kv.keys() = ${JSON.stringify(keys.sort())} (the id 'alan turing' is under an escaped key)`);
  await replication.cancel();
  await db.close();
  await nc.close();
  return ada.name === 'Ada' && !!arrived && deleted && keys.length === 2;
}
