// Network partitions: the link stays open but goes silent (a dropped path, a firewall rule), so
// no socket closes and only pings can tell. The partition is a loopback proxy that holds every
// byte both ways (harness/link-proxy.mjs) and later delivers them, as TCP does after a heal.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { startNatsServer, NatsCluster } from './harness/nats-server.mjs';
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

/** Inserts documents `<prefix>000`, `<prefix>001`, … into `db`, one every 100 ms, until `stop()`. */
function steadyWriter(db, prefix) {
  const writer = { count: 0, running: true };
  writer.done = (async () => {
    while (writer.running) {
      await db.people.insert(person(prefix, writer.count++));
      await sleep(100);
    }
  })();
  writer.stop = async () => {
    writer.running = false;
    await writer.done;
  };
  return writer;
}

/** How many messages each subject of stream `streamName` holds. */
async function messagesPerSubject(url, streamName) {
  const counts = new Map();
  for (const m of await streamMessages(url, streamName)) counts.set(m.subject, (counts.get(m.subject) || 0) + 1);
  return counts;
}

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
  // Due within pingInterval × maxPingOut (the client aims 5% below); 1 s of slack for a busy machine.
  assert.ok(detectedMs <= PING_INTERVAL * MAX_PING_OUT + 1000, `reported ${detectedMs} ms after the cut`);
  t.diagnostic(`silent link reported ${detectedMs} ms after the cut`);
  // The partition lasts 20 s whatever the machine's speed, then heals.
  await sleep(Math.max(0, cut + 20000 - Date.now()));
  proxy.heal();
  const healed = Date.now();

  const all = [...Array.from({ length: 300 }, (_, i) => person('a', i).id), ...Array.from({ length: 300 }, (_, i) => person('b', i).id)].sort();
  await waitFor(async () => ids(await docsOf(a)).join() === all.join() && ids(await docsOf(b)).join() === all.join(), 'all 600 documents on both sides', 10000);
  t.diagnostic(`converged ${Date.now() - healed} ms after the heal`);
  // Every write reached the stream exactly once: no retry after the partition wrote twice.
  const perSubject = await messagesPerSubject(server.url, streamName);
  assert.equal(perSubject.size, 600);
  assert.deepEqual([...perSubject.entries()].filter(([, n]) => n !== 1), [], 'each document written once');
  assert.ok((await ra.stats()).reconnects >= 1, 'A reconnected');
});

test('a client of a 3-node cluster whose link to its node goes silent for good fails over; its writes reach the stream within detection + 5 s, each once', { timeout: 180000 }, async (t) => {
  const PING_INTERVAL = 2000;
  const MAX_PING_OUT = 2;
  // no_advertise: the client knows the nodes only through the proxies, as a partitioned client would.
  const cluster = await new NatsCluster({ noAdvertise: true }).start();
  t.after(() => cluster.destroy());
  const proxies = await Promise.all(cluster.nodes.map((n) => startLinkProxy(n.port)));
  t.after(() => Promise.all(proxies.map((p) => p.close())));
  const streamName = uniqueName('failover');
  const db = await createDb();
  const r = replicatePeople(proxies[0].url, db, streamName, {
    connection: { servers: proxies.map((p) => p.url), pingInterval: PING_INTERVAL, maxPingOut: MAX_PING_OUT },
    streamConfig: { replicas: 3 },
  });
  // The writer below stops first, also when an assertion failed while it ran.
  let writer;
  t.after(async () => {
    await writer?.stop().catch(() => {});
    await r.cancel();
    await db.close();
  });
  await r.awaitInitialReplication();
  const nc = await connect({ servers: cluster.urls });
  t.after(() => nc.close());
  const jsm = await nc.jetstreamManager();
  const onStream = async () => (await jsm.streams.info(streamName)).state.messages;

  // Writes, one every 100 ms, until told to stop.
  writer = steadyWriter(db, 'w');
  await waitFor(async () => (await onStream()) >= 10, 'the first writes on the stream');
  // Cut the link the client uses now, for good (the node itself stays up for the others).
  const current = proxies.find((p) => p.connections > 0);
  assert.ok(current, 'the client is connected through one proxy');
  const before = await onStream();
  const writtenAtCut = writer.count;
  current.blackhole();
  const cut = Date.now();
  // The first write made after the cut is on the stream once the client reached another node.
  await waitFor(async () => (await onStream()) > Math.max(before, writtenAtCut), 'a write made after the cut on the stream', 30000);
  const failedOverMs = Date.now() - cut;
  t.diagnostic(`writes reached the stream again ${failedOverMs} ms after the cut`);
  assert.ok(failedOverMs <= PING_INTERVAL * MAX_PING_OUT + 5000, `${failedOverMs} ms after the cut`);
  await sleep(2000);
  await writer.stop();
  // Every write is on the stream, each once.
  await waitFor(async () => (await onStream()) === writer.count, `all ${writer.count} writes on the stream`, 30000);
  const subjects = await messagesPerSubject(cluster.urls.join(','), streamName);
  assert.equal(subjects.size, writer.count);
  assert.deepEqual([...subjects.values()].filter((n) => n !== 1), []);
  assert.equal(proxies.filter((p) => p !== current && p.connections > 0).length, 1, 'on another node now');
});

test('a node cut off from its peers: writes through it are refused and retried, never acknowledged falsely; after the heal each is on the stream once', { timeout: 240000 }, async (t) => {
  // Every route runs through a proxy of its own: routes[from][to].
  const routes = [];
  const cluster = await new NatsCluster({
    routeVia: async (from, to, port) => {
      const proxy = await startLinkProxy(port);
      routes.push({ from, to, proxy });
      return proxy.port;
    },
  }).start();
  t.after(async () => {
    await cluster.destroy();
    await Promise.all(routes.map((r) => r.proxy.close()));
  });
  const [n1, n2, n3] = cluster.nodes;
  const streamName = uniqueName('cutoff');
  const db = await createDb();
  // The client knows node 1 only.
  const r = replicatePeople(n1.url, db, streamName, { connection: { servers: n1.url }, streamConfig: { replicas: 3 } });
  // The writer below stops first, also when an assertion failed while it ran.
  let writer;
  t.after(async () => {
    await writer?.stop().catch(() => {});
    await r.cancel();
    await db.close();
  });
  const errors = [];
  r.error$.subscribe((e) => errors.push(codeOf(e)));
  await r.awaitInitialReplication();
  // Node 1 leads the stream, so the cut leaves a leader without its quorum.
  const admin = await connect({ servers: [n2.url, n3.url] });
  t.after(() => admin.close());
  for (let i = 0; i < 10 && (await cluster.streamLeader(streamName)) !== n1; i++) {
    await admin.request(`$JS.API.STREAM.LEADER.STEPDOWN.${streamName}`, new TextEncoder().encode(JSON.stringify({ placement: { preferred: n1.serverName } })), { timeout: 5000 }).catch(() => {});
    await sleep(1000);
  }
  const leader = (await cluster.streamLeader(streamName)).serverName;
  t.diagnostic(`stream leader before the cut: ${leader}`);
  // The majority side's view, asked on node 2 and 3 only.
  const jsm = await admin.jetstreamManager();
  const onMajority = async () => {
    try {
      return (await jsm.streams.info(streamName)).state.messages;
    } catch {
      return -1;
    }
  };

  writer = steadyWriter(db, 'c');
  await waitFor(async () => (await onMajority()) >= 10, 'the first writes on the stream');
  for (const route of routes) if (route.from === 0 || route.to === 0) route.proxy.blackhole();
  const cut = Date.now();
  const writtenAtCut = writer.count;
  // The majority elects a leader of its own; nothing written through node 1 reaches it.
  const stored = await waitFor(async () => {
    const n = await onMajority();
    return n >= 0 && n;
  }, 'the majority side answering', 60000);
  await sleep(Math.max(0, cut + 15000 - Date.now()));
  const afterCut = await onMajority();
  assert.ok(afterCut < writtenAtCut + 10, `the majority holds ${afterCut} after ${writtenAtCut} writes before the cut (${stored} when it answered)`);
  assert.ok(writer.count > writtenAtCut + 50, 'the client kept writing during the cut');
  const duringCut = errors.length;

  for (const route of routes) route.proxy.heal();
  const healed = Date.now();
  await sleep(2000);
  await writer.stop();
  await waitFor(async () => (await onMajority()) === writer.count, `all ${writer.count} writes on the stream`, 60000);
  t.diagnostic(`all ${writer.count} writes on the stream ${Date.now() - healed} ms after the heal; ${duringCut} errors during the cut (${[...new Set(errors)].join(', ')})`);
  const subjects = await messagesPerSubject(n2.url, streamName);
  assert.equal(subjects.size, writer.count);
  assert.deepEqual([...subjects.values()].filter((n) => n !== 1), [], 'each write once');
  assert.ok(errors.includes('NATS_UNAVAILABLE'), 'the refused writes were reported and retried');
  // A fresh client on node 3 sees every write.
  const fresh = await createDb();
  const rf = replicatePeople(n3.url, fresh, streamName, { push: undefined, live: false });
  await rf.awaitInitialReplication();
  assert.equal(Object.keys(await docsOf(fresh)).length, writer.count);
  await rf.cancel();
  await fresh.close();
});
