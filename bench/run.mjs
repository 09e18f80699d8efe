// npm run bench: every scenario against rxdb-nats-native and rxdb/plugins/replication-nats in
// one run, each run in its own process on a fresh nats-server, rounds interleaved, each cell the
// median of BENCH_RUNS runs (3) with its spread. Prints the tables, writes
// bench/results/<timestamp>.json and replaces the marked section of README.md with them.
//
// What matters is what this library adds over RxDB's own replication cost, as a multiple of what
// async-nats alone needs: (native − RxDB) ÷ raw.
//
//   BENCH_QUICK=1        a ~2-minute subset (1,000 and 10,000 documents, batch 100); does not touch the README
//   BENCH_SIZES=1000,10000 BENCH_BATCHES=100 BENCH_RUNS=5 BENCH_LIMIT_MS=60000   (defaults: 1000,10000,100000; 100,1000; 3; 60000)
//                        (a push or pull cell's limit is 3× RxDB's own time for it when that is longer)
//   BENCH_ONLY=revisions|slow|latency|kv|tenants|...   one part only (does not touch the README)
//   BENCH_DELAY_MS=20    the one-way delay of the slow link
//   BENCH_ATTACHMENTS=100x102400,10x5242880   documents x bytes per attachment (the default; empty: none)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
// Benchmarks run on the pinned nats-server unless NATS_SERVER_BIN says otherwise.
process.env.NATS_SERVER_BIN ||= require('../scripts/nats-server.cjs').pinnedNatsServerBin();
const env = process.env;
const QUICK = env.BENCH_QUICK === '1';
const list = (v, d) => (v ? v.split(',').map(Number) : d);
const SIZES = list(env.BENCH_SIZES, QUICK ? [1000, 10000] : [1000, 10000, 100000]);
const BATCHES = list(env.BENCH_BATCHES, QUICK ? [100] : [100, 1000]);
const RUNS = Number(env.BENCH_RUNS || 3);
const LIMIT_MS = Number(env.BENCH_LIMIT_MS || (QUICK ? 5000 : 60000));
// The official plugin needs minutes per scenario at 100,000 (when it finishes at all); its pull
// does not finish at any size, so one run of it says all there is to say.
const OFFICIAL_MAX_N = Number(env.BENCH_OFFICIAL_MAX_N || 10000);
const OFFICIAL_RUNS = QUICK ? 1 : Number(env.BENCH_OFFICIAL_RUNS || RUNS);
const ONLY = env.BENCH_ONLY;
const DELAY_MS = Number(env.BENCH_DELAY_MS || 20);
const LATENCY_WRITES_TEXT = env.BENCH_LATENCY_WRITES || '200';
const REVISIONS = [[1000, 50], [10000, 20]];
// Single writes timed per latency run (a quick run over the slow link would spend minutes on 200).
env.BENCH_LATENCY_WRITES ||= QUICK ? '50' : '200';
const part = (name) => !ONLY || ONLY === name;
const ATTACHMENTS = (env.BENCH_ATTACHMENTS ?? (QUICK ? '' : '100x102400,10x5242880'))
  .split(',')
  .filter(Boolean)
  .map((row) => row.split('x').map(Number));

function runOnce(impl, scenario, n, batch, extraEnv = {}, size = 0, limitMs = LIMIT_MS) {
  const out = execFileSync(
    process.execPath,
    [path.join(here, 'scenario.mjs'), impl, scenario, String(n), String(batch), String(Math.round(limitMs)), String(size)],
    { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20, env: { ...env, ...extraEnv } }
  ).toString();
  const result = JSON.parse(out.trim().split('\n').pop());
  process.stderr.write(`  ${impl} ${scenario} N=${n} batch=${batch}${extraEnv.BENCH_DELAY_MS ? ` delay=${extraEnv.BENCH_DELAY_MS}` : ''}: ${summary(result)}\n`);
  return result;
}

function summary(r) {
  if (r.error) return `error: ${r.error}`;
  const base = r.complete ? `${r.ms.toFixed(0)} ms` : `INCOMPLETE after ${r.ms.toFixed(0)} ms at ${r.reached}`;
  return r.p50 !== undefined ? `${base}, p50 ${r.p50.toFixed(2)} p95 ${r.p95.toFixed(2)} max ${r.max.toFixed(2)} ms` : base;
}

/** Planned cells: each runs `runs` times; rounds are interleaved so a busy moment hits every cell. */
const plan = [];
const cell = (impl, scenario, n, batch, { runs = RUNS, env: extraEnv = {}, key, size = 0 } = {}) =>
  plan.push({ key: key || `${impl}/${scenario}/${n}/${batch}`, impl, scenario, n, batch, size, runs, env: extraEnv, results: [] });

if (part('sizes')) {
  for (const n of SIZES) {
    // The floor of a fresh pull: a raw replay (raw's readMs) plus one bulkInsert of every document.
    cell('floor', 'floor', n, 100);
    for (const batch of BATCHES) {
      // async-nats alone, publishing in windows of the push batch, each window's acks awaited.
      cell('raw', 'raw', n, batch);
      cell('noop', 'noop', n, batch);
      cell('noop', 'noopPull', n, batch);
      for (const scenario of ['push', 'pull']) {
        cell('native', scenario, n, batch);
        if (n <= OFFICIAL_MAX_N) cell('official', scenario, n, batch, { runs: OFFICIAL_RUNS });
      }
    }
  }
}
const LATENCY_N = 10000;
if (part('latency')) {
  for (const impl of ['native', 'official']) cell(impl, 'latency', LATENCY_N, 100);
  // What RxDB needs alone (the same two databases through an in-memory server) and what
  // async-nats alone needs (publish, then a pull consumer on another connection receives).
  cell('noop', 'noopLatency', LATENCY_N, 100);
  cell('raw', 'rawLatency', LATENCY_N, 100);
}
if (part('conflicts') && !QUICK) for (const impl of ['native', 'official']) cell(impl, 'conflicts', 1000, 100);
if (part('revisions') && !QUICK) {
  for (const [docs, revisions] of REVISIONS) {
    cell('native', 'revisions', docs, revisions);
    cell('native', 'revisions', docs, 1);
    cell('official', 'revisions', docs, revisions, { runs: 1 });
  }
}
// The slow link: 2,000 documents in batches of 100, and single live writes, over a proxy that
// delays every chunk DELAY_MS each way.
const SLOW_N = 2000;
if (part('slow')) {
  const slow = { BENCH_DELAY_MS: String(DELAY_MS) };
  for (const impl of ['native', 'official']) {
    for (const scenario of ['push', 'pull', 'latency']) {
      cell(impl, scenario, SLOW_N, 100, { env: slow, key: `slow/${impl}/${scenario}`, runs: impl === 'official' && scenario === 'pull' ? 1 : RUNS });
    }
  }
}

// The KV layout next to the stream layout: the same documents, native both ways.
const KV_N = 10000;
if (part('kv')) {
  for (const layout of ['stream', 'kv']) {
    for (const scenario of ['push', 'pull']) {
      cell('native', scenario, KV_N, 100, { env: { BENCH_LAYOUT: layout }, key: `layout/${layout}/${scenario}` });
    }
  }
}

// Live latency from another process, with 1 and 10 collections replicated in the reader's
// process, each seeded with REMOTE_N documents; raw nats.js delivery beside. The writer is a
// nats.js client, or an RxDB replication (the reader's plugin) in its process.
const REMOTE_N = 2000;
const REMOTE_COLLECTIONS = [1, 10];
const REMOTE_WRITERS = ['nats', 'rxdb'];
const remoteImpls = (writer) => (writer === 'nats' ? ['rawjs', 'native', 'official'] : ['native', 'official']);
if (part('remote')) {
  for (const writer of REMOTE_WRITERS) {
    for (const k of REMOTE_COLLECTIONS) {
      for (const impl of remoteImpls(writer)) {
        const env = { BENCH_COLLECTIONS: String(k), BENCH_WRITER: writer === 'nats' ? 'nats' : impl };
        cell(impl, 'remoteLatency', REMOTE_N, 100, { key: `remote/${writer}/${impl}/${k}`, env });
      }
    }
  }
}

// Short-lived documents (created, updated, deleted): what the stream keeps of them, with and
// without tombstoneTtl (the official plugin has none; it keeps every revision).
const CHURN_N = QUICK ? 1000 : 5000;
const CHURN_TTL_MS = 1000;
if (part('churn')) {
  cell('native', 'churn', CHURN_N, 100, { key: 'churn/native' });
  cell('native', 'churn', CHURN_N, 100, { key: 'churn/native-ttl', env: { BENCH_TOMBSTONE_TTL_MS: String(CHURN_TTL_MS) } });
  cell('official', 'churn', CHURN_N, 100, { key: 'churn/official', runs: OFFICIAL_RUNS });
}

// A fresh tenant's first pull: alone on its stream, and beside 9 other tenants of the same size
// (the official plugin's consumers are not filtered: it reads, and hands RxDB, every tenant's
// documents, so there is no figure of it to compare); then the same with tenant: true.
const TENANT_N = QUICK ? 1000 : 10000;
const TENANT_ROWS = [['alone', 0, '0'], ['beside', 9, '0'], ['alone-tenant', 0, '1'], ['beside-tenant', 9, '1']];
if (part('tenants')) {
  for (const [key, others, tenant] of TENANT_ROWS) {
    cell('native', 'tenantPull', TENANT_N, 100, { key: `tenants/${key}`, env: { BENCH_OTHER_TENANTS: String(others), BENCH_TENANT: tenant } });
  }
}

// Attachments: the official plugin loses their data, so there is nothing to compare it with.
if (part('attachments')) {
  for (const [n, size] of ATTACHMENTS) {
    cell('native', 'attachments', n, 100, { size, key: `attachments/native/${n}/${size}` });
    cell('raw', 'rawobjects', n, 100, { size, key: `attachments/raw/${n}/${size}` });
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? undefined : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// A push or pull cell may take as long as 3 × RxDB's own time for it (the median of that cell's
// runs so far, which run first in each round), at least LIMIT_MS: where RxDB alone needs more than
// LIMIT_MS (push 100,000 × 100) the cell still gets a figure. RxDB's own cells themselves only
// need a bound against a hang.
const OWN_LIMIT_MS = 10 * LIMIT_MS;
const ownScenario = { push: 'noop', pull: 'noopPull' };
function limitOf(c) {
  if (c.impl === 'noop') return OWN_LIMIT_MS;
  const own = ownScenario[c.scenario] && plan.find((p) => p.key === `noop/${ownScenario[c.scenario]}/${c.n}/${c.batch}`);
  const times = own ? own.results.filter((r) => r.complete && !r.error).map((r) => r.ms) : [];
  return times.length > 0 ? Math.max(LIMIT_MS, 3 * median(times)) : LIMIT_MS;
}

const rounds = Math.max(...plan.map((c) => c.runs));
for (let round = 0; round < rounds; round++) {
  process.stderr.write(`round ${round + 1} of ${rounds}\n`);
  for (const c of plan) if (c.results.length < c.runs) c.results.push(runOnce(c.impl, c.scenario, c.n, c.batch, c.env, c.size, limitOf(c)));
}

// ---- statistics -------------------------------------------------------------------------------
/** Median and spread of a field over a cell's complete runs; `incomplete` if any run was not. */
function stat(key, field = 'ms') {
  const c = plan.find((p) => p.key === key);
  if (!c) return undefined;
  const done = c.results.filter((r) => r.complete && !r.error);
  const values = done.map((r) => r[field]).filter((v) => typeof v === 'number');
  return {
    runs: c.results.length,
    complete: done.length === c.results.length,
    median: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    reached: median(c.results.map((r) => r.reached || 0)),
    ms: median(c.results.map((r) => r.ms)),
    peakRssMb: median(c.results.map((r) => r.peakRssMb)),
  };
}
const fmt = (x, d = 0) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));
const withSpread = (s, d = 0) =>
  !s ? '–' : !s.complete ? `incomplete (${fmt(s.reached)} in ${fmt(s.ms)} ms)` : s.runs > 1 ? `${fmt(s.median, d)} (${fmt(s.min, d)}–${fmt(s.max, d)})` : fmt(s.median, d);

const tables = [];
if (part('sizes')) {
  const t = [
    '| scenario | N | batch | RxDB own ms | native ms | official ms | raw async-nats ms | native − RxDB | (native − RxDB) ÷ raw | ours against the floor | native ÷ official | peak RSS over RxDB own, MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |',
  ];
  for (const n of SIZES) {
    for (const batch of BATCHES) {
      for (const scenario of ['push', 'pull']) {
        const own = stat(`noop/${scenario === 'push' ? 'noop' : 'noopPull'}/${n}/${batch}`);
        const nat = stat(`native/${scenario}/${n}/${batch}`);
        const off = stat(`official/${scenario}/${n}/${batch}`);
        const raw = stat(`raw/raw/${n}/${batch}`, scenario === 'push' ? 'ms' : 'readMs');
        const added = nat.complete && own.complete ? nat.median - own.median : undefined;
        const speedup = !off ? 'skipped' : !nat.complete ? '–' : off.complete ? `${fmt(off.median / nat.median, 1)}×` : `> ${fmt(off.ms / nat.median, 1)}×`;
        // Push: the time RxDB waits on our push handler (first call, which connects, left out;
        // calls that overlap counted once) against async-nats alone publishing the same batches,
        // with the per-call sum beside it. Pull: the whole fresh pull against its floor, a raw
        // replay plus one bulkInsert of every document.
        let floor = '–';
        if (scenario === 'push') {
          const key = `native/push/${n}/${batch}`;
          const [busy, summed, atOnce, rawSame] = [stat(key, 'handlerBusyMs'), stat(key, 'handlerTotalMs'), stat(key, 'handlerMostAtOnce'), stat(`raw/raw/${n}/${batch}`, 'afterFirstMs')];
          if (busy.median !== undefined && rawSame.median !== undefined) floor = `handler ${fmt(busy.median)} ÷ raw ${fmt(rawSame.median)} ms = ${fmt(busy.median / rawSame.median, 2)}× (per call summed ${fmt(summed.median)} = ${fmt(summed.median / rawSame.median, 2)}×, ≤ ${fmt(atOnce.median)} at once)`;
        } else {
          const insert = stat(`floor/floor/${n}/100`);
          if (nat.complete && insert.complete && raw.complete) floor = `native ÷ (replay ${fmt(raw.median)} + bulkInsert ${fmt(insert.median)} ms) = ${fmt(nat.median / (raw.median + insert.median), 2)}×`;
        }
        t.push(`| ${scenario} | ${n} | ${batch} | ${withSpread(own)} | ${withSpread(nat)} | ${off ? withSpread(off) : 'skipped'} | ${fmt(raw.median)} | ${fmt(added)} | ${added === undefined ? '–' : `${fmt(added / raw.median, 2)}×`} | ${floor} | ${speedup} | ${fmt(nat.peakRssMb - own.peakRssMb)} |`);
      }
    }
  }
  tables.push(t.join('\n'));
}
if (part('latency')) {
  const t = [
    `| live latency, ${env.BENCH_LATENCY_WRITES} single writes seen by another client | p50 ms | p95 ms | max ms |`,
    '| --- | ---: | ---: | ---: |',
  ];
  const key = { native: 'native/latency', official: 'official/latency', own: 'noop/noopLatency', raw: 'raw/rawLatency' };
  const lat = (who) => ['p50', 'p95', 'max'].map((f) => stat(`${key[who]}/${LATENCY_N}/100`, f));
  const labels = {
    own: "RxDB's own (the same two databases through an in-memory server)",
    raw: 'raw async-nats (publish, a pull consumer on another connection receives)',
    native: 'native',
    official: 'official',
  };
  for (const who of ['own', 'raw', 'native', 'official']) {
    const [p50, p95, max] = lat(who);
    t.push(p50.complete ? `| ${labels[who]} | ${withSpread(p50, 2)} | ${withSpread(p95, 2)} | ${fmt(max.median, 2)} |` : `| ${labels[who]} | incomplete (${fmt(p50.reached)}/${env.BENCH_LATENCY_WRITES}) | | |`);
  }
  const [own, raw, nat] = ['own', 'raw', 'native'].map(lat);
  const ratio = (i) => (own[i].complete && raw[i].complete && nat[i].complete ? `${fmt((nat[i].median - own[i].median) / raw[i].median, 2)}×` : '–');
  t.push(`| (native − RxDB's own) ÷ raw | ${ratio(0)} | ${ratio(1)} | |`);
  tables.push(t.join('\n'));
}
if (part('conflicts') && !QUICK) {
  const t = ['| scenario | native | official |', '| --- | --- | --- |'];
  const conf = (impl) => {
    const s = stat(`${impl}/conflicts/1000/100`);
    return s.complete ? `converged in ${withSpread(s)} ms` : `did not converge in ${fmt(s.ms)} ms`;
  };
  t.push(`| conflict storm (2 clients × 1,000 docs) | ${conf('native')} | ${conf('official')} |`);
  tables.push(t.join('\n'));
}
if (part('revisions') && !QUICK) {
  const t = [
    '| fresh client, documents × revisions | messages | native ms | one revision each: native ms | native ÷ one-revision pull | official ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [docs, revisions] of REVISIONS) {
    const nat = stat(`native/revisions/${docs}/${revisions}`);
    const one = stat(`native/revisions/${docs}/1`);
    const off = stat(`official/revisions/${docs}/${revisions}`);
    const ratio = nat.complete && one.complete ? `${fmt(nat.median / one.median, 2)}×` : '–';
    t.push(`| ${docs} × ${revisions} | ${docs * revisions} | ${withSpread(nat)} | ${withSpread(one)} | ${ratio} | ${withSpread(off)} |`);
  }
  tables.push(t.join('\n'));
}
if (part('slow')) {
  const rtt = 2 * DELAY_MS;
  const t = [
    `| slow link (${DELAY_MS} ms each way, a ${rtt} ms round trip) | native | official |`,
    '| --- | --- | --- |',
  ];
  const push = (impl) => {
    const s = stat(`slow/${impl}/push`);
    const perBatch = stat(`slow/${impl}/push`, 'steadyMsPerBatch');
    const handler = stat(`slow/${impl}/push`, 'handlerMs');
    return s.complete
      ? `${withSpread(s)} ms; once connected ${fmt(perBatch.median, 1)} ms = ${fmt(perBatch.median / rtt, 2)} RTT per batch, of which the push handler ${fmt(handler.median / rtt, 2)} RTT`
      : withSpread(s);
  };
  const pull = (impl) => {
    const s = stat(`slow/${impl}/pull`);
    return s.complete ? `${withSpread(s)} ms` : withSpread(s);
  };
  const live = (impl) => {
    const [p50, p95] = ['p50', 'p95'].map((f) => stat(`slow/${impl}/latency`, f));
    // The path a write must travel: writer → server → reader, one way each.
    return p50.complete ? `p50 ${withSpread(p50, 1)} ms (${fmt(p50.median / rtt, 2)}× the path), p95 ${withSpread(p95, 1)} ms (${fmt(p95.median / rtt, 2)}×)` : withSpread(p50);
  };
  t.push(`| push ${SLOW_N} documents, batches of 100 | ${push('native')} | ${push('official')} |`);
  t.push(`| pull ${SLOW_N} documents, batches of 100 | ${pull('native')} | ${pull('official')} |`);
  t.push(`| live: single writes seen by another client | ${live('native')} | ${live('official')} |`);
  tables.push(t.join('\n'));
}

if (part('kv')) {
  const t = [`| layout (native, ${KV_N} documents, batches of 100) | push ms | pull ms |`, '| --- | ---: | ---: |'];
  for (const [layout, label] of [['stream', 'stream (`streamName` + `subjectPrefix`)'], ['kv', 'KV bucket (`kv: { bucket }`)']]) {
    t.push(`| ${label} | ${withSpread(stat(`layout/${layout}/push`))} | ${withSpread(stat(`layout/${layout}/pull`))} |`);
  }
  tables.push(t.join('\n'));
}

if (part('remote')) {
  const t = [
    `| live latency, ${LATENCY_WRITES_TEXT} single writes from another process | writer | collections | p50 ms | p95 ms | p99 ms |`,
    '| --- | --- | ---: | ---: | ---: | ---: |',
  ];
  const labels = { rawjs: 'raw nats.js delivery (a consumer per stream, no RxDB)', native: 'native', official: 'official' };
  for (const writer of REMOTE_WRITERS) {
    for (const k of REMOTE_COLLECTIONS) {
      for (const impl of remoteImpls(writer)) {
        const [p50, p95, p99] = ['p50', 'p95', 'p99'].map((f) => stat(`remote/${writer}/${impl}/${k}`, f));
        const by = writer === 'nats' ? 'nats.js publish' : `RxDB insert, ${impl} replication`;
        t.push(`| ${labels[impl]} | ${by} | ${k} × ${REMOTE_N} docs | ${withSpread(p50, 2)} | ${withSpread(p95, 2)} | ${withSpread(p99, 2)} |`);
      }
    }
  }
  tables.push(t.join('\n'));
  // Where a live change's time goes, per stage (medians of each run's p50 and p95 of it): to the
  // replication's client (native: its NATS client received it; official: the plugin handed it to
  // RxDB), inside native code, over to the JavaScript thread, decoding, and RxDB from its
  // pull.stream$ to the insert event (RxDB's own cost, measured on the same writes). In brackets,
  // the share of the slowest 5% of writes in which that stage took longest: where the tail goes.
  const s2 = [
    '| stages, ms: p50 / p95 (share of the slowest 5% where it took longest) | writer | collections | delivery | native code | to the JS thread | decode | RxDB | total p50 / p95 |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const writer of REMOTE_WRITERS) {
    for (const k of REMOTE_COLLECTIONS) {
      for (const impl of ['native', 'official']) {
        const key = `remote/${writer}/${impl}/${k}`;
        const cell = (stage) => {
          const [p50, p95, share] = ['P50', 'P95', 'TailShare'].map((f) => stat(key, `${stage}${f}`)?.median);
          if (p50 === undefined) return '';
          return `${fmt(p50, 2)} / ${fmt(p95, 2)}${share === undefined ? '' : ` (${fmt(share * 100, 0)}%)`}`;
        };
        const stages = ['delivery', 'native', 'handOver', 'decode', 'rxdb'].map(cell);
        const total = `${fmt(stat(key, 'p50')?.median, 2)} / ${fmt(stat(key, 'p95')?.median, 2)}`;
        const by = writer === 'nats' ? 'nats.js' : 'RxDB';
        s2.push(`| ${impl} | ${by} | ${k} | ${stages.join(' | ')} | ${total} |`);
      }
    }
  }
  tables.push(s2.join('\n'));
}

if (part('churn')) {
  const t = [
    `| ${CHURN_N} documents created, updated and deleted (batches of 100) | time ms | messages on the stream | bytes | after the tombstones' TTL: messages | bytes |`,
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [key, label] of [['native', 'native'], ['native-ttl', `native, \`tombstoneTtl: ${CHURN_TTL_MS}\``], ['official', 'official']]) {
    const [ms, messages, bytes, expiredMessages, expiredBytes] = ['ms', 'messages', 'bytes', 'expiredMessages', 'expiredBytes'].map((f) => stat(`churn/${key}`, f));
    const after = key === 'native-ttl' ? `${fmt(expiredMessages.median)} | ${fmt(expiredBytes.median)}` : 'kept | kept';
    t.push(`| ${label} | ${withSpread(ms)} | ${fmt(messages.median)} | ${fmt(bytes.median)} | ${after} |`);
  }
  tables.push(t.join('\n'));
}

if (part('tenants')) {
  const t = [
    `| a fresh tenant's first pull of its ${fmt(TENANT_N)} documents | on a stream of its own documents ms | beside 9 tenants of as many (10× the stream) ms | ratio |`,
    '| --- | ---: | ---: | ---: |',
  ];
  for (const [label, suffix] of [['native', ''], ['native, `tenant: true` (push consumers on its inbox)', '-tenant']]) {
    const [alone, beside] = [stat(`tenants/alone${suffix}`), stat(`tenants/beside${suffix}`)];
    const ratio = alone && beside && alone.complete && beside.complete ? fmt(beside.median / alone.median, 2) : 'n/a';
    t.push(`| ${label} | ${withSpread(alone)} | ${withSpread(beside)} | ${ratio} |`);
  }
  tables.push(t.join('\n'));
}

if (part('attachments') && ATTACHMENTS.length > 0) {
  const mbs = (bytes, ms) => bytes / 1e6 / (ms / 1000);
  const withRate = (s, bytes) => (s && s.complete ? `${withSpread(s)} ms (${fmt(mbs(bytes, s.median), 1)} MB/s)` : withSpread(s));
  const t = [
    '| attachments | native push | native pull | raw Object Store put (async-nats) | raw Object Store get (async-nats) | native peak RSS MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [n, size] of ATTACHMENTS) {
    const bytes = n * size;
    const label = `${n} × ${size >= 1 << 20 ? `${size / (1 << 20)} MiB` : `${size / 1024} KiB`}`;
    const [push, pull] = ['ms', 'readMs'].map((f) => stat(`attachments/native/${n}/${size}`, f));
    const [put, get] = ['ms', 'readMs'].map((f) => stat(`attachments/raw/${n}/${size}`, f));
    t.push(`| ${label} | ${withRate(push, bytes)} | ${withRate(pull, bytes)} | ${withRate(put, bytes)} | ${withRate(get, bytes)} | ${fmt(push.peakRssMb)} |`);
  }
  tables.push(t.join('\n'));
}

const version = execFileSync(env.NATS_SERVER_BIN, ['--version']).toString().trim().replace('nats-server: ', '');
const machine = `${os.cpus().length} × ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, nats-server ${version}`;
const header = `Machine: ${machine}; ${new Date().toISOString().slice(0, 10)}; medians of ${RUNS} runs (min–max)${QUICK ? '; BENCH_QUICK' : ''}`;
const text = `${header}\n\n${tables.join('\n\n')}`;
console.log(text);
fs.mkdirSync(path.join(here, 'results'), { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const file = path.join(here, 'results', `${stamp}.json`);
fs.writeFileSync(file, JSON.stringify({ machine, quick: QUICK, only: ONLY || null, sizes: SIZES, batches: BATCHES, runs: RUNS, plan, text }, null, 2));
console.log(`\nresults: ${path.relative(process.cwd(), file)}`);

// The README's tables come from here, never by hand: a full run replaces its marked section.
if (!QUICK && !ONLY) {
  const readme = path.join(here, '..', 'README.md');
  const [start, end] = ['<!-- bench:start -->', '<!-- bench:end -->'];
  const current = fs.readFileSync(readme, 'utf8');
  const from = current.indexOf(start);
  const to = current.indexOf(end);
  if (from < 0 || to < from) throw new Error(`README.md has no ${start} … ${end} section to replace`);
  const section = `${start}\n<!-- written by npm run bench (${path.relative(path.join(here, '..'), file)}); do not edit by hand -->\n\n${text}\n\n`;
  fs.writeFileSync(readme, current.slice(0, from) + section + current.slice(to));
  console.log('README.md: benchmark section replaced');
}
