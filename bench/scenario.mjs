// One benchmark run in its own process (so peak RSS belongs to it), on its own nats-server.
// Usage: node bench/scenario.mjs <impl: native|official|noop|raw|rawjs|floor> <scenario> <N> <batch> <limitMs> [size]
// (size: bytes per attachment, for the attachment scenarios). Prints one JSON line with the result.
import { createRxDatabase, addRxPlugin } from 'rxdb';
import { RxDBAttachmentsPlugin } from 'rxdb/plugins/attachments';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { replicateNats as replicateNative, tenantPermissions } from 'rxdb-nats-native';
import { replicateNats as replicateOfficial } from 'rxdb/plugins/replication-nats';
import { replicateRxCollection } from 'rxdb/plugins/replication';
import { connect } from 'nats';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startNatsServer } from '../scripts/nats-server-process.mjs';
import { schema, epochNow as now, replicatedStreams } from './streams.mjs';
import { spawnDelayProxy } from '../scripts/delay-proxy.mjs';

const [impl, scenario, nText, batchText, limitText, sizeText] = process.argv.slice(2);
const N = Number(nText);
const BATCH = Number(batchText);
const LIMIT_MS = Number(limitText);
const SIZE = Number(sizeText || 0);
const NOOP_DELAY_MS = Number(process.env.BENCH_NOOP_DELAY_MS || 0);
// Single writes timed by the latency scenarios.
const LATENCY_WRITES = Number(process.env.BENCH_LATENCY_WRITES || 200);
addRxPlugin(RxDBAttachmentsPlugin);

// ~200 bytes as JSON with RxDB's fields.
const doc = (i, extra = {}) => ({
  id: `doc-${String(i).padStart(7, '0')}`,
  name: `Person number ${i} with a longer name`,
  age: i % 100,
  tags: ['alpha', 'beta', 'gamma'],
  ...extra,
});
const docs = (n) => Array.from({ length: n }, (_, i) => doc(i));

let dbCounter = 0;
async function createDb({ attachments = false } = {}) {
  const db = await createRxDatabase({
    name: `bench${process.pid}x${dbCounter++}`,
    storage: getRxStorageMemory(),
    multiInstance: false,
  });
  await db.addCollections({ docs: { schema: attachments ? { ...schema, attachments: {} } : schema } });
  return db;
}

/** `size` bytes that differ for each `seed` (and do not compress). */
function bytesOf(size, seed) {
  const buffer = Buffer.alloc(size);
  let x = (seed + 1) * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    buffer[i] = x >>> 24;
  }
  return buffer;
}

// Set in the child process that seeds the stream (see `seed`): the server to seed, no scenario.
const SEED_URL = process.env.BENCH_SEED_URL;
// BENCH_TENANT=1: users `admin` (everything) and `tenant` (tenantPermissions() for bench.docs on
// stream bench); the native replication then runs with tenant: true as `tenant`.
const TENANT = process.env.BENCH_TENANT === '1';
const tenantUsers = () =>
  `authorization { users: [ { user: admin, password: admin }, { user: tenant, password: tenant, permissions: ${JSON.stringify(
    tenantPermissions({ streamName: 'bench', subjectPrefix: 'bench.docs' })
  )} } ] }`;
const server = SEED_URL ? null : await startNatsServer(TENANT ? { config: tenantUsers() } : undefined);
/** The bench's own connections (seeding, counting): the administrator when there are users. */
const admin = TENANT ? { user: 'admin', pass: 'admin' } : {};
// BENCH_DELAY_MS > 0: the clients reach the server over a slow link (a delaying proxy in a
// process of its own, so this process's work cannot delay the link), each way.
const DELAY_MS = Number(process.env.BENCH_DELAY_MS || 0);
let proxy = null;
if (DELAY_MS > 0 && server) {
  proxy = await spawnDelayProxy(server.port, DELAY_MS);
  server.proxiedUrl = proxy.url;
}
const url = SEED_URL || server.proxiedUrl || server.url;
// BENCH_LAYOUT=kv: the native replication uses the KV layout (bucket "bench", stream KV_bench).
const KV = process.env.BENCH_LAYOUT === 'kv';
const STREAM = KV ? 'KV_bench' : 'bench';
const PREFIX = 'bench.docs';
/** Where the documents are, as replicateNats() takes it. */
const layout = KV ? { kv: { bucket: 'bench' } } : { streamName: STREAM, subjectPrefix: PREFIX };

// BENCH_TOMBSTONE_TTL_MS: the native replication's deletions expire (streamConfig.tombstoneTtl).
const TOMBSTONE_TTL_MS = Number(process.env.BENCH_TOMBSTONE_TTL_MS || 0);

function replicate(db, { pull = true, push = true, live = true, autoStart = true, batch = BATCH } = {}) {
  const replicateNats = impl === 'native' ? replicateNative : replicateOfficial;
  return replicateNats({
    collection: db.docs,
    replicationIdentifier: 'bench',
    ...layout,
    ...(impl === 'native' && TOMBSTONE_TTL_MS ? { streamConfig: { tombstoneTtl: TOMBSTONE_TTL_MS } } : {}),
    connection: impl === 'official' ? { servers: url, maxReconnectAttempts: 0 } : { servers: url, ...(TENANT ? { user: 'tenant', pass: 'tenant' } : {}) },
    ...(impl === 'native' && TENANT ? { tenant: true } : {}),
    pull: pull ? { batchSize: batch } : undefined,
    push: push ? { batchSize: batch } : undefined,
    live,
    autoStart,
    retryTime: 1000,
  });
}

// The bench's own reads of the stream go straight to the server on one connection: over the slow
// link a connection per poll would cost the measurement round trips of its own.
let counter = null;
async function streamCount() {
  try {
    counter ||= await (await connect({ servers: server.url })).jetstreamManager();
    return (await counter.streams.info(STREAM)).state.messages;
  } catch {
    return 0;
  }
}

/** `xs` in ascending order, as a new array. */
const ascending = (xs) => [...xs].sort((x, y) => x - y);
/** The `p` quantile (0..1) of `sorted`, an ascending array: the sample at floor(p × length). */
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

/**
 * Times each call of the replication's push handler: `steadyMsPerBatch` is the time from the end
 * of the first call to the end of the last, per call after the first (connecting and creating
 * the stream happen in the first), so it is what a batch costs once running.
 */
function timeBatches(replication) {
  const handler = replication.push.handler;
  const calls = [];
  let running = 0;
  let mostAtOnce = 0;
  replication.push.handler = async (rows) => {
    const call = { started: performance.now() };
    mostAtOnce = Math.max(mostAtOnce, ++running);
    try {
      return await handler(rows);
    } finally {
      running--;
      call.ended = performance.now();
      calls.push(call);
    }
  };
  return () => {
    const byEnd = [...calls].sort((x, y) => x.ended - y.ended);
    const first = byEnd[0];
    const later = byEnd.slice(1);
    return {
      batches: calls.length,
      steadyMsPerBatch: later.length > 0 ? (later[later.length - 1].ended - first.ended) / later.length : undefined,
      // The median time inside the handler (the plugin's own part of a batch), first call excluded.
      handlerMs: later.length > 0 ? percentile(ascending(later.map((c) => c.ended - c.started)), 0.5) : undefined,
      // All the time inside the handler, first call (which connects) excluded, summed per call.
      handlerTotalMs: later.length > 0 ? later.reduce((sum, c) => sum + c.ended - c.started, 0) : undefined,
      // The time RxDB waited on at least one call, after the first call's end: RxDB's initial
      // upstream runs up to four calls at once, whose overlap the sum counts once per call.
      // Against raw async-nats publishing the same batches (raw's afterFirstMs).
      handlerBusyMs: later.length > 0 ? busyMs(later, first.ended) : undefined,
      handlerMostAtOnce: mostAtOnce,
    };
  };
}

/** The length of the union of the `calls`' [started, ended] intervals, from `from` on. */
function busyMs(calls, from) {
  let busy = 0;
  let reached = from;
  for (const { started, ended } of [...calls].sort((x, y) => x.started - y.started)) {
    if (ended > reached) {
      busy += ended - Math.max(started, reached);
      reached = ended;
    }
  }
  return busy;
}

/**
 * Live latency: single inserts into `a`, each timed until `b` has it, the next one as soon as it
 * has; LATENCY_WRITES of them.
 */
async function timeSingleWrites(a, b) {
  const seen = new Map();
  b.docs.insert$.subscribe((ev) => seen.get(ev.documentId)?.());
  const samples = [];
  const writes = LATENCY_WRITES;
  for (let i = 0; i < writes; i++) {
    const d = doc(i);
    const visible = new Promise((resolve) => seen.set(d.id, resolve));
    const t = performance.now();
    await a.docs.insert(d);
    const ok = await Promise.race([visible.then(() => true), new Promise((r) => setTimeout(() => r(false), 5000))]);
    if (!ok) break;
    samples.push(performance.now() - t);
  }
  const all = ascending(samples);
  return {
    ms: all.reduce((s, x) => s + x, 0),
    p50: percentile(all, 0.5), p95: percentile(all, 0.95), max: all[all.length - 1],
    reached: all.length, complete: all.length === writes,
  };
}

/** Polls until `count()` reaches `target` or the limit passes; returns {ms, reached, complete}. */
async function timeUntil(started, count, target, everyMs = 5) {
  for (;;) {
    const reached = await count();
    const ms = performance.now() - started;
    if (reached >= target) return { ms, reached, complete: true };
    if (ms > LIMIT_MS) return { ms, reached, complete: false };
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Times until `target` distinct documents of `collection` match `selector` (a plain equality
 * selector; default: every document), as the collection's change stream reports them: a constant
 * cost per document, the same for every impl (polling a count instead scans the whole collection
 * each time, so a slower run paid for more scans). Call it before the replication starts. The
 * last batch's indexing, which RxDB's memory storage defers to the next read, is included by
 * reading one document; a count with the selector checks the result after the clock stopped.
 * Resolves {ms, reached, complete}.
 */
function timeArrivals(started, collection, target, selector = {}) {
  const fields = Object.entries(selector);
  const matches = (doc) => fields.every(([field, value]) => doc[field] === value);
  const present = new Set();
  let last;
  let finish;
  const arrived = new Promise((resolve) => {
    finish = resolve;
  });
  const sub = collection.eventBulks$.subscribe((bulk) => {
    for (const event of bulk.events) {
      if (event.operation !== 'DELETE' && matches(event.documentData)) present.add(event.documentId);
      else present.delete(event.documentId);
      last = event.documentId;
    }
    if (present.size >= target) finish(true);
  });
  const timer = setTimeout(() => finish(false), Math.max(0, LIMIT_MS - (performance.now() - started)));
  return arrived.then(async (inTime) => {
    sub.unsubscribe();
    clearTimeout(timer);
    if (inTime) await collection.storageInstance.findDocumentsById([last], false);
    const ms = performance.now() - started;
    const reached = await collection.count({ selector }).exec();
    return { ms, reached, complete: inTime && reached >= target };
  });
}

/**
 * Seeds the stream with n documents, in a child process: what seeding allocates (a database of n
 * documents and its push) must count neither in this process's peak RSS nor in the garbage
 * collection of the pull timed after it, which RxDB's own pull cell does not have either.
 */
async function seed(n) {
  await promisify(execFile)(process.execPath, [fileURLToPath(import.meta.url), 'native', 'seed', String(n), '1000', '0'], {
    env: { ...process.env, BENCH_SEED_URL: server.url },
  });
}

/** Seeds the stream at `url` with n documents through the native replication. */
async function seedHere(n) {
  const db = await createDb();
  const r = replicateNative({
    collection: db.docs, replicationIdentifier: 'seed', ...layout,
    connection: { servers: url }, push: { batchSize: 1000 }, live: false,
  });
  await db.docs.bulkInsert(docs(n));
  await r.awaitInSync();
  await r.cancel();
  await db.close();
}

const scenarios = {
  // N documents with one attachment of SIZE bytes each: pushed by one client (timed until in
  // sync), then pulled by a fresh one (timed until every attachment reads back whole).
  async attachments() {
    const a = await createDb({ attachments: true });
    await a.docs.bulkInsert(docs(N));
    const contents = [];
    for (let i = 0; i < N; i++) {
      contents.push(bytesOf(SIZE, i));
      const stored = await a.docs.findOne(doc(i).id).exec();
      await stored.putAttachment({ id: 'file.bin', data: new Blob([contents[i]]), type: 'application/octet-stream' });
    }
    const ra = replicate(a, { pull: false, autoStart: false });
    let started = performance.now();
    ra.start();
    await Promise.race([ra.awaitInSync(), new Promise((res) => setTimeout(res, LIMIT_MS))]);
    const push = await timeUntil(started, streamCount, N);
    await ra.cancel();
    await a.close();
    if (!push.complete) return push;

    const b = await createDb({ attachments: true });
    started = performance.now();
    const arrivals = timeArrivals(started, b.docs, N);
    replicate(b, { push: false, live: false });
    const pull = await arrivals;
    const readMs = performance.now() - started;
    // Every attachment arrived whole (checked after timing: reading is RxDB's, not ours).
    let whole = 0;
    for (let i = 0; i < N; i++) {
      const attachment = (await b.docs.findOne(doc(i).id).exec())?.getAttachment('file.bin');
      const bytes = attachment && Buffer.from(await (await attachment.getData()).arrayBuffer());
      if (bytes && bytes.equals(contents[i])) whole++;
    }
    return { ms: push.ms, readMs, reached: whole, complete: pull.complete && whole === N, bytes: N * SIZE };
  },

  async rawobjects() {
    const bin = fileURLToPath(new URL('../target/release/examples/raw_objects', import.meta.url));
    const out = JSON.parse(execFileSync(bin, [url, 'bench_raw_objects', String(N), String(SIZE)]).toString());
    return { ms: out.put_ms, readMs: out.get_ms, reached: N, complete: out.bytes === N * SIZE, bytes: out.bytes };
  },

  async floor() {
    const db = await createDb();
    const started = performance.now();
    await db.docs.bulkInsert(docs(N));
    return { ms: performance.now() - started, reached: N, complete: true };
  },

  async raw() {
    const bin = fileURLToPath(new URL('../target/release/examples/raw_limit', import.meta.url));
    const out = JSON.parse(execFileSync(bin, [url, STREAM, PREFIX, String(N), String(BATCH)]).toString());
    return { ms: out.publish_ms, afterFirstMs: out.publish_after_first_ms, readMs: out.read_ms, reached: out.count, complete: out.count === N };
  },

  // The raw limit of live latency: async-nats alone, single writes seen by a pull consumer on
  // a second connection, each write as soon as the previous one was seen (as in `latency`); the
  // writer's connection reads the stream too, as both replications in `latency` do.
  async rawLatency() {
    const bin = fileURLToPath(new URL('../target/release/examples/raw_latency', import.meta.url));
    const writes = LATENCY_WRITES;
    const out = JSON.parse(execFileSync(bin, [url, STREAM, PREFIX, String(writes), '0']).toString());
    return { ms: out.p50_ms * writes, p50: out.p50_ms, p95: out.p95_ms, max: out.max_ms, reached: out.count, complete: out.count === writes };
  },

  // RxDB's replication machinery alone: a push handler that answers at once (or after
  // BENCH_NOOP_DELAY_MS, to see how RxDB's own time changes with a handler that waits).
  async noop() {
    const db = await createDb();
    await db.docs.bulkInsert(docs(N));
    const r = replicateRxCollection({
      collection: db.docs,
      replicationIdentifier: 'noop',
      push: { batchSize: BATCH, handler: NOOP_DELAY_MS > 0 ? () => new Promise((r) => setTimeout(() => r([]), NOOP_DELAY_MS)) : async () => [] },
      live: true,
      autoStart: false,
    });
    const started = performance.now();
    await r.start();
    await r.awaitInSync();
    const ms = performance.now() - started;
    await r.cancel();
    return { ms, reached: N, complete: true };
  },

  // RxDB's replication machinery alone, pulling: a pull handler that hands out prepared batches
  // from memory, timed like the pull scenario (until the collection holds N documents).
  async noopPull() {
    const prepared = docs(N).map((d) => ({ ...d, _deleted: false }));
    const db = await createDb();
    const started = performance.now();
    const arrivals = timeArrivals(started, db.docs, N);
    replicateRxCollection({
      collection: db.docs,
      replicationIdentifier: 'noop-pull',
      pull: {
        batchSize: BATCH,
        handler: async (checkpoint, batchSize) => {
          const from = checkpoint ? checkpoint.at : 0;
          const documents = prepared.slice(from, from + batchSize);
          return { documents, checkpoint: { at: from + documents.length } };
        },
      },
      live: false,
    });
    return arrivals;
  },

  async push() {
    const db = await createDb();
    await db.docs.bulkInsert(docs(N));
    const r = replicate(db, { pull: false, autoStart: false });
    const batches = timeBatches(r);
    const started = performance.now();
    r.start();
    const done = Promise.race([
      r.awaitInSync(),
      new Promise((res) => setTimeout(res, LIMIT_MS)),
    ]);
    await done;
    return { ...(await timeUntil(started, streamCount, N)), ...batches() };
  },

  async pull() {
    await seed(N);
    const db = await createDb();
    const started = performance.now();
    const arrivals = timeArrivals(started, db.docs, N);
    replicate(db, { push: false, live: false });
    return arrivals;
  },

  // A fresh client pulls N documents that have BATCH revisions each (written round-robin by a
  // plain NATS client); timed until every document shows its last revision.
  async revisions() {
    const revisions = BATCH;
    const nc = await connect({ servers: url });
    await (await nc.jetstreamManager()).streams.add({ name: STREAM, subjects: [`${PREFIX}.*`] });
    const js = nc.jetstream();
    for (let r = 1; r <= revisions; r++) {
      const acks = [];
      for (let i = 0; i < N; i++) {
        const d = doc(i, { age: r, _deleted: false });
        acks.push(js.publish(`${PREFIX}.${d.id}`, new TextEncoder().encode(JSON.stringify(d))));
        if (acks.length >= 5000) await Promise.all(acks.splice(0));
      }
      await Promise.all(acks);
    }
    await nc.close();
    const db = await createDb();
    const started = performance.now();
    const arrivals = timeArrivals(started, db.docs, N, { age: revisions });
    replicate(db, { push: false, live: false, batch: 100 });
    const result = await arrivals;
    return { ...result, revisions, messages: N * revisions };
  },

  async latency() {
    const [a, b] = [await createDb(), await createDb()];
    const ra = replicate(a);
    const rb = replicate(b);
    await ra.awaitInitialReplication();
    // The official plugin's initial pull waits for its fetch to expire: do not wait on it.
    if (impl === 'native') await rb.awaitInitialReplication();
    else await new Promise((r) => setTimeout(r, 1000));
    return timeSingleWrites(a, b);
  },

  // RxDB's own part of live latency: two databases replicating both ways, as in `latency`,
  // through a "server" in memory: each push handler hands its rows to both pull streams at once.
  async noopLatency() {
    const { Subject } = await import('rxjs');
    const server$ = new Subject();
    let sequence = 0;
    const replicateInMemory = (db, name) =>
      replicateRxCollection({
        collection: db.docs,
        replicationIdentifier: name,
        live: true,
        push: {
          batchSize: BATCH,
          handler: async (rows) => {
            sequence += rows.length;
            server$.next({ documents: rows.map((r) => r.newDocumentState), checkpoint: { sequence } });
            return [];
          },
        },
        pull: { batchSize: BATCH, handler: async () => ({ documents: [], checkpoint: { sequence } }), stream$: server$ },
      });
    const [a, b] = [await createDb(), await createDb()];
    const [ra, rb] = [replicateInMemory(a, 'a'), replicateInMemory(b, 'b')];
    await ra.awaitInitialReplication();
    await rb.awaitInitialReplication();
    return timeSingleWrites(a, b);
  },

  // Live latency from another process: a writer (bench/remote-writer.mjs; BENCH_WRITER: a plain
  // nats.js client, or an RxDB database replicating with rxdb-nats-native or the official plugin)
  // writes single documents round-robin over BENCH_COLLECTIONS streams, each seeded with N
  // documents; this process replicates every collection (impl native or official), or reads the
  // streams with nats.js alone (impl rawjs: what delivery costs without RxDB). Each sample is the
  // time from just before the writer's write to the document's insert event here (epoch clocks of
  // the same machine); the writer waits for it before the next write. Stages of each sample:
  // `delivery` to the moment the replication has the message (native: its client received it;
  // official: it handed it to RxDB), native's `native` (batch, JSON), `handOver` (to the JS
  // thread) and `decode` (parse, attachments, modifier) from liveTimings$, and `rxdb` from
  // RxDB's pull.stream$ (remoteEvents$) to the insert event: RxDB's own cost, for both plugins.
  async remoteLatency() {
    const K = Number(process.env.BENCH_COLLECTIONS || 1);
    const WRITER = process.env.BENCH_WRITER || 'nats';
    const { spawn } = await import('node:child_process');
    const writer = spawn(process.execPath, [fileURLToPath(new URL('./remote-writer.mjs', import.meta.url)), server.url, String(K), String(N), String(LATENCY_WRITES), WRITER], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = [];
    writer.stdout.on('data', (d) => lines.push(...d.toString().split('\n').filter(Boolean)));
    const line = (text) => new Promise((resolve) => {
      const check = setInterval(() => lines.includes(text) && (clearInterval(check), resolve()), 10);
    });
    if (!(await Promise.race([line('seeded').then(() => true), new Promise((r) => setTimeout(() => r(false), LIMIT_MS))]))) {
      writer.kill();
      return { ms: LIMIT_MS, reached: 0, complete: false, error: 'the writer did not get ready' };
    }
    const nc = await connect({ servers: server.url });
    const samples = [];
    // Per sample with its moments: the time of each stage (see above) and the total.
    const staged = [];
    // Per written id: the moments seen so far (the last liveTimings$ event, the hand-over to RxDB).
    const moments = new Map();
    const onArrival = (id, name) => {
      if (!id.startsWith('w')) return;
      const at = now();
      const written = Number(name);
      samples.push(at - written);
      const m = moments.get(id);
      if (m) {
        moments.delete(id);
        const t = m.timing;
        staged.push({
          total: at - written,
          delivery: (t ? t.receivedAt : m.handed) - written,
          ...(t && { native: t.sentAt - t.receivedAt, handOver: t.takenAt - t.sentAt, decode: t.handedAt - t.takenAt }),
          rxdb: at - m.handed,
        });
      }
      nc.publish('bench.seen', new TextEncoder().encode(id));
    };
    const readers = [];
    if (impl === 'rawjs') {
      const js = nc.jetstream();
      for (let k = 0; k < K; k++) {
        const consumer = await js.consumers.get(`bench${k}`, { deliver_policy: 'new' });
        const messages = await consumer.consume();
        (async () => {
          for await (const m of messages) {
            const doc = m.json();
            onArrival(doc.id, doc.name);
          }
        })();
        readers.push({ cancel: async () => messages.close() });
      }
    } else {
      const { db, replications } = await replicatedStreams({ name: `remote${process.pid}`, impl, url: server.url, K, batchSize: BATCH });
      for (const [k, r] of replications.entries()) {
        db[`docs${k}`].insert$.subscribe((ev) => onArrival(ev.documentId, ev.documentData.name));
        let timing = null;
        r.liveTimings$?.subscribe((t) => (timing = t));
        r.remoteEvents$.subscribe((event) => {
          if (event === 'RESYNC') return;
          const handed = now();
          for (const d of event.documents) if (d.id.startsWith('w')) moments.set(d.id, { handed, timing });
          timing = null;
        });
        readers.push(r);
      }
      // The official plugin's initial pull waits for its fetch to expire: wait for the documents instead.
      await timeUntil(performance.now(), async () => {
        let n = 0;
        for (let k = 0; k < K; k++) n += await db[`docs${k}`].count().exec();
        return n;
      }, K * N);
    }
    writer.stdin.write('go\n');
    await Promise.race([line('done'), new Promise((r) => setTimeout(r, LIMIT_MS))]);
    writer.kill();
    await Promise.all(readers.map((r) => r.cancel()));
    await nc.close();
    const all = ascending(samples);
    // Each stage's p50 and p95, and in the slowest 5% of samples, the share whose longest stage
    // it was (where the tail goes).
    const stageFigures = {};
    const slowest = percentile(ascending(staged.map((x) => x.total)), 0.95);
    const longest = (x) => Object.entries(x).filter(([k]) => k !== 'total').sort((a, b) => b[1] - a[1])[0][0];
    const tail = staged.filter((x) => x.total >= slowest).map(longest);
    for (const stage of ['delivery', 'native', 'handOver', 'decode', 'rxdb']) {
      const sorted = ascending(staged.map((x) => x[stage]).filter((v) => v !== undefined));
      if (sorted.length === 0) continue;
      stageFigures[`${stage}P50`] = percentile(sorted, 0.5);
      stageFigures[`${stage}P95`] = percentile(sorted, 0.95);
      stageFigures[`${stage}TailShare`] = tail.filter((s) => s === stage).length / tail.length;
    }
    return {
      ms: all.reduce((s, x) => s + x, 0),
      p50: percentile(all, 0.5), p95: percentile(all, 0.95), p99: percentile(all, 0.99), max: all[all.length - 1],
      ...stageFigures,
      reached: all.length, complete: all.length === LATENCY_WRITES,
    };
  },

  // N short-lived documents, BATCH at a time: each is created, updated once and deleted, each
  // step pushed before the next. What the stream holds then (messages, bytes), and, with
  // BENCH_TOMBSTONE_TTL_MS, once the tombstones have expired (after which it holds nothing).
  // A fresh client's first pull of its N documents from a stream shared with
  // BENCH_OTHER_TENANTS other tenants of N documents each (written interleaved with its own, on
  // bench.tenant<k>.*), timed until its N documents arrived.
  async tenantPull() {
    const others = Number(process.env.BENCH_OTHER_TENANTS || 0);
    const nc = await connect({ servers: url, ...admin });
    await (await nc.jetstreamManager()).streams.add({ name: STREAM, subjects: [`${STREAM}.>`] });
    const js = nc.jetstream();
    const acks = [];
    for (let i = 0; i < N; i++) {
      const body = new TextEncoder().encode(JSON.stringify(doc(i, { _deleted: false })));
      for (let t = 0; t <= others; t++) {
        acks.push(js.publish(`${t === 0 ? PREFIX : `${STREAM}.tenant${t}`}.${doc(i).id}`, body));
        if (acks.length >= 5000) await Promise.all(acks.splice(0));
      }
    }
    await Promise.all(acks);
    await nc.close();
    const db = await createDb();
    const started = performance.now();
    const arrivals = timeArrivals(started, db.docs, N);
    replicate(db, { push: false, live: false });
    return arrivals;
  },

  async churn() {
    const db = await createDb();
    const r = replicate(db, { pull: false });
    await r.awaitInitialReplication();
    const started = performance.now();
    for (let from = 0; from < N; from += BATCH) {
      const batch = Array.from({ length: Math.min(BATCH, N - from) }, (_, k) => doc(from + k));
      await db.docs.bulkInsert(batch);
      await r.awaitInSync();
      await db.docs.bulkUpsert(batch.map((d) => ({ ...d, age: d.age + 1 })));
      await r.awaitInSync();
      await db.docs.bulkRemove(batch.map((d) => d.id));
      await r.awaitInSync();
    }
    const ms = performance.now() - started;
    const nc = await connect({ servers: server.url });
    const jsm = await nc.jetstreamManager();
    const state = async () => (await jsm.streams.info(STREAM)).state;
    const written = await state();
    const result = { ms, reached: N, complete: true, messages: written.messages, bytes: written.bytes };
    if (TOMBSTONE_TTL_MS) {
      const expired = await timeUntil(performance.now(), async () => ((await state()).messages === 0 ? 1 : 0), 1, 50);
      const left = await state();
      Object.assign(result, { expiredMessages: left.messages, expiredBytes: left.bytes, complete: expired.complete });
    }
    await nc.close();
    await r.cancel();
    return result;
  },

  async conflicts() {
    const n = Math.min(N, 1000);
    await seed(n);
    const [a, b] = [await createDb(), await createDb()];
    const ra = replicate(a);
    const rb = replicate(b);
    const both = async () => (await a.docs.count().exec()) + (await b.docs.count().exec());
    await timeUntil(performance.now(), both, 2 * n);
    const started = performance.now();
    // Both clients update the same documents at the same time.
    await Promise.all([
      a.docs.bulkUpsert(docs(n).map((d) => ({ ...d, name: `a ${d.id}`, age: 1 }))),
      b.docs.bulkUpsert(docs(n).map((d) => ({ ...d, name: `b ${d.id}`, age: 2 }))),
    ]);
    const dump = async (db) =>
      (await db.docs.find({ sort: [{ id: 'asc' }] }).exec()).map((d) => `${d.id}:${d.name}:${d.age}`).join();
    const result = await timeUntil(started, async () => {
      const [da, db_] = [await dump(a), await dump(b)];
      return da === db_ ? 1 : 0;
    }, 1);
    return { ...result, reached: result.complete ? n : 0 };
  },
};

if (SEED_URL) {
  await seedHere(N);
  process.exit(0);
}

const baseline = process.memoryUsage().rss;
let result;
try {
  result = await scenarios[scenario]();
} catch (e) {
  result = { error: String(e && e.message), complete: false };
}
result.peakRssMb = process.resourceUsage().maxRSS / 1024;
result.baselineRssMb = baseline / 1024 / 1024;
console.log(JSON.stringify({ impl, scenario, N, batch: BATCH, delayMs: DELAY_MS, ...result }));
await proxy?.stop();
await server.kill();
process.exit(0);
