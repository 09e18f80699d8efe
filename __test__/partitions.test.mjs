// Network partitions: the link stays open but goes silent (a dropped path, a firewall rule), so
// no socket closes and only pings can tell. The partition is a loopback proxy that holds every
// byte both ways (harness/link-proxy.mjs) and later delivers them, as TCP does after a heal.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { startNatsServer } from './harness/nats-server.mjs';
import { startLinkProxy } from './harness/link-proxy.mjs';
import { createDb, uniqueName, waitFor, docsOf, codeOf, replicatePeople, streamMessages } from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const person = (prefix, i) => ({ id: `${prefix}${String(i).padStart(3, '0')}`, name: `${prefix} ${i}`, age: i, tags: [] });
const ids = (docs) => Object.keys(docs).sort();

test('a link silent for 20 s is reported within pingInterval × maxPingOut; after the heal both sides converge, each write on the stream once', async (t) => {
  const PING_INTERVAL = 2000;
  const MAX_PING_OUT = 2;
  const streamName = uniqueName('silent');
  const proxy = await startLinkProxy(server.port);
  t.after(() => proxy.close());
  const [a, b] = [await createDb(), await createDb()];
  // A reaches the server only through the proxy; B directly.
  const ra = replicatePeople(server.url, a, streamName, {
    connection: { servers: proxy.url, pingInterval: PING_INTERVAL, maxPingOut: MAX_PING_OUT },
  });
  const rb = replicatePeople(server.url, b, streamName);
  t.after(async () => {
    await Promise.all([ra.cancel(), rb.cancel()]);
    await Promise.all([a.close(), b.close()]);
  });
  await Promise.all([ra.awaitInitialReplication(), rb.awaitInitialReplication()]);
  const lost = [];
  ra.error$.subscribe((e) => {
    if (codeOf(e) === 'NATS_UNAVAILABLE' && /lost the connection/.test(e.message)) lost.push(Date.now());
  });

  proxy.blackhole();
  const cut = Date.now();
  // Both write while the link is silent: A into its own database, B onto the stream.
  await a.people.bulkInsert(Array.from({ length: 300 }, (_, i) => person('a', i)));
  await b.people.bulkInsert(Array.from({ length: 300 }, (_, i) => person('b', i)));
  await waitFor(() => lost.length > 0, 'the silent link on error$', 20000);
  const detectedMs = lost[0] - cut;
  // async-nats checks the link on a timer of its own: one ping period of slack on a busy machine.
  assert.ok(detectedMs <= PING_INTERVAL * MAX_PING_OUT + PING_INTERVAL, `reported ${detectedMs} ms after the cut`);
  t.diagnostic(`silent link reported ${detectedMs} ms after the cut`);
  // The partition lasts 20 s whatever the machine's speed, then heals.
  await sleep(Math.max(0, cut + 20000 - Date.now()));
  proxy.heal();
  const healed = Date.now();

  const all = [...Array.from({ length: 300 }, (_, i) => person('a', i).id), ...Array.from({ length: 300 }, (_, i) => person('b', i).id)].sort();
  await waitFor(async () => ids(await docsOf(a)).join() === all.join() && ids(await docsOf(b)).join() === all.join(), 'all 600 documents on both sides', 10000);
  t.diagnostic(`converged ${Date.now() - healed} ms after the heal`);
  // Every write reached the stream exactly once: no retry after the partition wrote twice.
  const messages = await streamMessages(server.url, streamName);
  const perSubject = new Map();
  for (const m of messages) perSubject.set(m.subject, (perSubject.get(m.subject) || 0) + 1);
  assert.equal(perSubject.size, 600);
  assert.deepEqual([...perSubject.entries()].filter(([, n]) => n !== 1), [], 'each document written once');
  assert.ok((await ra.stats()).reconnects >= 1, 'A reconnected');
});
