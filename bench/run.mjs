// npm run bench: every scenario against rxdb-nats-native and rxdb/plugins/replication-nats in
// one run, each in its own process on a fresh nats-server; prints a table and writes
// bench/results/<timestamp>.json. Timings are only compared within this run.
//
// BENCH_SIZES=1000,10000 BENCH_BATCHES=100 npm run bench   (defaults: 1000,10000,100000 and 100,1000)
// BENCH_ATTACHMENTS=100x102400,10x5242880 (documents x bytes per attachment, the default; empty: none);
// BENCH_ONLY=attachments runs only those rows.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
// Benchmarks run on the pinned nats-server unless NATS_SERVER_BIN says otherwise.
const require = createRequire(import.meta.url);
process.env.NATS_SERVER_BIN ||= require('../scripts/nats-server.cjs').pinnedNatsServerBin();
const list = (v, d) => (v ? v.split(',').map(Number) : d);
const SIZES = list(process.env.BENCH_SIZES, [1000, 10000, 100000]);
const BATCHES = list(process.env.BENCH_BATCHES, [100, 1000]);
const LIMIT_MS = Number(process.env.BENCH_LIMIT_MS || 60000);
// The official plugin needs minutes per scenario at 100,000 (when it finishes at all).
const OFFICIAL_MAX_N = Number(process.env.BENCH_OFFICIAL_MAX_N || 10000);
const ATTACHMENTS = (process.env.BENCH_ATTACHMENTS ?? '100x102400,10x5242880')
  .split(',')
  .filter(Boolean)
  .map((row) => row.split('x').map(Number));
const ONLY_ATTACHMENTS = process.env.BENCH_ONLY === 'attachments';

function run(impl, scenario, n, batch, size) {
  const out = execFileSync(
    process.execPath,
    [path.join(here, 'scenario.mjs'), impl, scenario, String(n), String(batch), String(LIMIT_MS), String(size || 0)],
    { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 }
  ).toString();
  const result = JSON.parse(out.trim().split('\n').pop());
  process.stderr.write(`  ${impl} ${scenario} N=${n} batch=${batch}: ${summary(result)}\n`);
  return result;
}

function summary(r) {
  if (r.error) return `error: ${r.error}`;
  const base = r.complete ? `${r.ms.toFixed(0)} ms` : `INCOMPLETE after ${r.ms.toFixed(0)} ms at ${r.reached}`;
  return r.p50 !== undefined ? `${base}, p50 ${r.p50.toFixed(2)} p95 ${r.p95.toFixed(2)} max ${r.max.toFixed(2)} ms` : base;
}

// The raw Object Store example (npm run bench builds raw_limit; this one is built here).
if (ATTACHMENTS.length > 0) {
  execFileSync('cargo', ['build', '--release', '--example', 'raw_objects'], { cwd: path.join(here, '..'), stdio: 'inherit' });
}
const results = [];
for (const n of ONLY_ATTACHMENTS ? [] : SIZES) {
  const floor = run('floor', 'floor', n, 100);
  const raw = run('raw', 'raw', n, 100);
  results.push(floor, raw);
  for (const batch of BATCHES) {
    results.push(run('noop', 'noop', n, batch));
    for (const scenario of ['push', 'pull']) {
      const native = run('native', scenario, n, batch);
      const official = n <= OFFICIAL_MAX_N ? run('official', scenario, n, batch) : null;
      results.push(native);
      if (official) results.push(official);
    }
  }
}
const latencyN = 10000;
if (!ONLY_ATTACHMENTS) {
  for (const impl of ['native', 'official']) results.push(run(impl, 'latency', latencyN, 100));
  for (const impl of ['native', 'official']) results.push(run(impl, 'conflicts', 1000, 100));
}
// Attachments: the official plugin loses their data, so there is nothing to compare it with.
for (const [n, size] of ATTACHMENTS) {
  results.push({ ...run('native', 'attachments', n, 100, size), size });
  results.push({ ...run('raw', 'rawobjects', n, 100, size), size });
}

// ---- the table -------------------------------------------------------------------------
const find = (impl, scenario, n, batch) =>
  results.find((r) => r.impl === impl && r.scenario === scenario && r.N === n && (batch === undefined || r.batch === batch));
const fmt = (x, d = 0) => (x === undefined || x === null || Number.isNaN(x) ? '–' : x.toFixed(d));
const rate = (r) => (r && r.complete ? (r.N / r.ms) * 1000 : undefined);
const lines = [];
const mbs = (bytes, ms) => (bytes / 1e6) / (ms / 1000);
const withRate = (ms, bytes) => `${fmt(ms)} ms (${fmt(mbs(bytes, ms), 1)} MB/s)`;
const attachmentLines = ['| attachments | native push | native pull | raw Object Store put (async-nats) | raw Object Store get (async-nats) | native peak RSS MB |', '| --- | ---: | ---: | ---: | ---: | ---: |'];
for (const [n, size] of ATTACHMENTS) {
  const nat = results.find((r) => r.scenario === 'attachments' && r.N === n && r.size === size);
  const raw = results.find((r) => r.scenario === 'rawobjects' && r.N === n && r.size === size);
  const label = `${n} × ${size >= 1 << 20 ? `${size / (1 << 20)} MiB` : `${size / 1024} KiB`}`;
  const natText = nat.complete ? [withRate(nat.ms, nat.bytes), withRate(nat.readMs, nat.bytes)] : [`incomplete (${nat.error || nat.reached})`, '–'];
  attachmentLines.push(`| ${label} | ${natText[0]} | ${natText[1]} | ${withRate(raw.ms, raw.bytes)} | ${withRate(raw.readMs, raw.bytes)} | ${fmt(nat.peakRssMb)} |`);
}
// The document tables (not with BENCH_ONLY=attachments).
if (!ONLY_ATTACHMENTS) {
  lines.push('| scenario | N | batch | native ms | native docs/s | official ms | native ÷ official (speed-up) | native vs raw limit (net of RxDB floor) | RxDB push with a no-op handler | native peak RSS MB |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const n of SIZES) {
    const floor = find('floor', 'floor', n);
    const raw = find('raw', 'raw', n);
    for (const batch of BATCHES) {
      for (const scenario of ['push', 'pull']) {
        const nat = find('native', scenario, n, batch);
        const off = find('official', scenario, n, batch);
        const rawMs = scenario === 'push' ? raw.ms : raw.readMs;
        const net = nat && nat.complete ? rawMs / Math.max(1, nat.ms - floor.ms) : undefined;
        const offText = !off ? 'skipped' : off.complete ? fmt(off.ms) : `incomplete (${off.reached}/${n} in ${fmt(off.ms)})`;
        const speedup = off && nat && nat.complete ? (off.complete ? `${fmt(off.ms / nat.ms, 1)}×` : `> ${fmt(off.ms / nat.ms, 1)}×`) : '–';
        const noop = scenario === 'push' ? `${fmt(find('noop', 'noop', n, batch).ms)} ms` : '–';
        lines.push(`| ${scenario} | ${n} | ${batch} | ${nat.complete ? fmt(nat.ms) : 'incomplete'} | ${fmt(rate(nat))} | ${offText} | ${speedup} | ${net === undefined ? '–' : `${fmt(net * 100)} %`} | ${noop} | ${fmt(nat.peakRssMb)} |`);
      }
    }
  }
  const lat = (impl) => find(impl, 'latency', latencyN, 100);
  const conf = (impl) => find(impl, 'conflicts', 1000, 100);
  const latText = (r) => (r.complete ? `p50 ${fmt(r.p50, 2)} / p95 ${fmt(r.p95, 2)} / max ${fmt(r.max, 2)} ms` : `incomplete (${r.reached}/200)`);
  const confText = (r) => (r.complete ? `converged in ${fmt(r.ms)} ms` : `did not converge in ${fmt(r.ms)} ms`);
  lines.push('');
  lines.push('| scenario | native | official |');
  lines.push('| --- | --- | --- |');
  lines.push(`| live latency (200 single writes) | ${latText(lat('native'))} | ${latText(lat('official'))} |`);
  lines.push(`| conflict storm (2 clients × 1,000 docs) | ${confText(conf('native'))} | ${confText(conf('official'))} |`);
  lines.push('');
  lines.push('| N | raw limit: async-nats publish / ordered read | RxDB floor: bulkInsert |');
  lines.push('| ---: | --- | --- |');
  for (const n of SIZES) {
    const raw = find('raw', 'raw', n);
    const floor = find('floor', 'floor', n);
    lines.push(`| ${n} | ${fmt(raw.ms)} ms / ${fmt(raw.readMs)} ms | ${fmt(floor.ms)} ms |`);
  }
}
const machine = `${os.cpus().length} × ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, nats-server ${execFileSync(process.env.NATS_SERVER_BIN, ['--version']).toString().trim().replace('nats-server: ', '')}`;
const tables = ONLY_ATTACHMENTS ? attachmentLines : [...lines, '', ...attachmentLines];
const table = `Machine: ${machine}; ${new Date().toISOString().slice(0, 10)}\n\n${tables.join('\n')}`;
console.log(table);
fs.mkdirSync(path.join(here, 'results'), { recursive: true });
const file = path.join(here, 'results', `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
fs.writeFileSync(file, JSON.stringify({ machine, sizes: SIZES, batches: BATCHES, results, table }, null, 2));
console.log(`\nresults: ${path.relative(process.cwd(), file)}`);
