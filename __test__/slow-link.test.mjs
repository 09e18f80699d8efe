// Across regions, round trips decide the speed. Two clients reach nats-server through a proxy
// that delays every chunk each way (scripts/delay-proxy.mjs, in a process of its own so this
// process's work cannot delay the link). A single write must reach the other client in about
// the time the path takes (writer -> server -> reader: two one-way delays), not in extra round
// trips. The bench reports the figures (slow-link rows); this checks the ratio with slack. The
// delay is long (100 ms each way) so that the check is about round trips, not about how busy
// the machine is: 1.5x leaves 100 ms for our work and RxDB's per write, and one extra round trip
// would add 200.
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { startNatsServer } from './harness/nats-server.mjs';
import { spawnDelayProxy } from '../scripts/delay-proxy.mjs';
import { createDb, uniqueName, replicatePeople, collectErrors, codeOf } from './harness/rxdb.mjs';

const ONE_WAY_MS = 100;
const PATH_MS = 2 * ONE_WAY_MS;
const WRITES = 25;

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

test(`a single write reaches the other client over a ${PATH_MS} ms path in at most 1.5x the path (median of ${WRITES})`, async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const proxy = await spawnDelayProxy(server.port, ONE_WAY_MS);
  t.after(() => proxy.stop());
  const streamName = uniqueName('slow');
  const [writer, reader] = [await createDb(), await createDb()];
  const rw = replicatePeople(proxy.url, writer, streamName);
  const rr = replicatePeople(proxy.url, reader, streamName);
  const errors = collectErrors([rw, rr]);
  t.after(async () => {
    await rw.cancel();
    await rr.cancel();
    await writer.close();
    await reader.close();
  });
  await rw.awaitInitialReplication();
  await rr.awaitInitialReplication();

  const arrived = new Map();
  const subscription = reader.people.insert$.subscribe((event) => arrived.get(event.documentId)?.());
  t.after(() => subscription.unsubscribe());
  const samples = [];
  for (let i = 0; i < WRITES; i++) {
    const id = `w${i}`;
    const seen = new Promise((resolve) => arrived.set(id, resolve));
    const started = performance.now();
    await writer.people.insert({ id, name: id, age: i, tags: [] });
    await seen;
    samples.push(performance.now() - started);
  }
  const p50 = median(samples);
  t.diagnostic(`single-write latency over a ${PATH_MS} ms path: p50 ${p50.toFixed(1)} ms (${(p50 / PATH_MS).toFixed(2)}x), all ${samples.map((s) => s.toFixed(0)).join(' ')}`);
  // The proxy really delays: nothing can arrive faster than the path.
  assert.ok(Math.min(...samples) >= PATH_MS, `a write arrived in ${Math.min(...samples).toFixed(1)} ms, under the ${PATH_MS} ms path`);
  // One extra round trip on the push or live path would make it at least 2x.
  assert.ok(p50 <= 1.5 * PATH_MS, `median ${p50.toFixed(1)} ms is over 1.5x the ${PATH_MS} ms path`);
  assert.deepEqual(errors.map(codeOf), []);
});
