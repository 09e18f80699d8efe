// The writer of bench/scenario.mjs remoteLatency, in a process of its own.
// `node bench/remote-writer.mjs <url> <collections> <seed per collection> <writes> [nats|native|official]`.
// Seeds each stream bench<k> (subjects bench<k>.docs.*), prints "seeded", waits for "go" on stdin,
// then makes single writes one after another, round-robin over the streams, each stamped with the
// time (epoch ms, sub-ms) just before it is written; the next one goes when the reader answers on
// bench.seen (or after 5 s). Prints "done" at the end.
// The writer is a plain nats.js client (nats, the default: the stamp is taken before its
// publish), or an RxDB database replicating every stream with rxdb-nats-native or the official
// plugin (the stamp is taken before the insert into its collection, whose replication pushes it).
import { connect } from 'nats';
import { createRxDatabase } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { replicateNats as replicateNative } from 'rxdb-nats-native';
import { replicateNats as replicateOfficial } from 'rxdb/plugins/replication-nats';

const [url, collectionsText, seedText, writesText, writer = 'nats'] = process.argv.slice(2);
const K = Number(collectionsText);
const SEED = Number(seedText);
const WRITES = Number(writesText);
const now = () => performance.timeOrigin + performance.now();
const enc = (doc) => new TextEncoder().encode(JSON.stringify(doc));
const schema = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: { id: { type: 'string', maxLength: 40 }, name: { type: 'string' }, age: { type: 'integer' }, tags: { type: 'array', items: { type: 'string' } } },
  required: ['id', 'name', 'age', 'tags'],
};

const nc = await connect({ servers: url });
const jsm = await nc.jetstreamManager();
const js = nc.jetstream();
for (let k = 0; k < K; k++) {
  await jsm.streams.add({ name: `bench${k}`, subjects: [`bench${k}.docs.*`] });
  const acks = [];
  for (let i = 0; i < SEED; i++) {
    acks.push(js.publish(`bench${k}.docs.s${i}`, enc({ id: `s${i}`, name: 'seed', age: i, tags: [], _deleted: false })));
    if (acks.length >= 1000) await Promise.all(acks.splice(0));
  }
  await Promise.all(acks);
}

/** write(k, doc): the writer's single write of doc into collection / stream k. */
let write = (k, doc) => js.publish(`bench${k}.docs.${doc.id}`, enc({ ...doc, _deleted: false }));
const replications = [];
let db = null;
if (writer !== 'nats') {
  db = await createRxDatabase({ name: `writer${process.pid}`, storage: getRxStorageMemory(), multiInstance: false });
  const collections = {};
  for (let k = 0; k < K; k++) collections[`docs${k}`] = { schema };
  await db.addCollections(collections);
  const replicateNats = writer === 'native' ? replicateNative : replicateOfficial;
  for (let k = 0; k < K; k++) {
    replications.push(
      replicateNats({
        collection: db[`docs${k}`], replicationIdentifier: `writer${k}`, streamName: `bench${k}`, subjectPrefix: `bench${k}.docs`,
        connection: writer === 'official' ? { servers: url, maxReconnectAttempts: 0 } : { servers: url },
        pull: { batchSize: 100 }, push: { batchSize: 100 }, live: true, retryTime: 1000,
      })
    );
  }
  // Writes need the replication running, not the seeds: wait for them a while (the official
  // plugin's initial pull waits for its fetch to expire, and may never finish), then go on.
  const until = Date.now() + 20000;
  for (let k = 0; k < K && Date.now() < until; k++) {
    while (Date.now() < until && (await db[`docs${k}`].count().exec()) < SEED) await new Promise((r) => setTimeout(r, 20));
  }
  write = (k, doc) => db[`docs${k}`].insert(doc);
}

let seen = null;
const sub = nc.subscribe('bench.seen');
(async () => {
  for await (const m of sub) seen?.(new TextDecoder().decode(m.data));
})();
await nc.flush();
console.log('seeded');
await new Promise((resolve) => process.stdin.once('data', resolve));
for (let i = 0; i < WRITES; i++) {
  const id = `w${i}`;
  const arrived = new Promise((resolve) => {
    seen = (got) => got === id && resolve(true);
    setTimeout(() => resolve(false), 5000);
  });
  await write(i % K, { id, name: String(now()), age: i, tags: [] });
  await arrived;
}
console.log('done');
await Promise.all(replications.map((r) => r.cancel()));
await db?.close();
await nc.close();
process.exit(0);
