// The writer of bench/scenario.mjs remoteLatency, in a process of its own: a plain nats.js client.
// `node bench/remote-writer.mjs <url> <collections> <seed per collection> <writes>`. Seeds each
// stream bench<k> (subjects bench<k>.docs.*), prints "seeded", waits for "go" on stdin, then makes
// single writes one after another, round-robin over the streams, each stamped with the time
// (epoch ms, sub-ms) just before its publish; the next one goes when the reader answers on
// bench.seen (or after 5 s). Prints "done" at the end.
import { connect } from 'nats';

const [url, collectionsText, seedText, writesText] = process.argv.slice(2);
const K = Number(collectionsText);
const SEED = Number(seedText);
const WRITES = Number(writesText);
const now = () => performance.timeOrigin + performance.now();
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
  await js.publish(`bench${i % K}.docs.${id}`, enc({ id, name: String(now()), age: i, tags: [], _deleted: false }));
  await arrived;
}
console.log('done');
await nc.close();
process.exit(0);
