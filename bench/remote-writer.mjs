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
import { epochNow as now, replicatedStreams } from './streams.mjs';

const [url, collectionsText, seedText, writesText, writer = 'nats'] = process.argv.slice(2);
const K = Number(collectionsText);
const SEED = Number(seedText);
const WRITES = Number(writesText);
const enc = (doc) => new TextEncoder().encode(JSON.stringify(doc));

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
let replications = [];
let db = null;
if (writer !== 'nats') {
  ({ db, replications } = await replicatedStreams({ name: `writer${process.pid}`, impl: writer, url, K, batchSize: 100 }));
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
