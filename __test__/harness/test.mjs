// node:test's `test`, plus what a failing test saw: every replication it made (its stats() and
// the errors on its error$) and every nats-server it started, stopped or killed (the events and
// the log of each run of the server, the killed one too). So a CI failure can be diagnosed from
// its output alone. Secrets the harness made (harness/secrets.mjs) are masked.
import { test as nodeTest } from 'node:test';
import { AsyncLocalStorage } from 'node:async_hooks';
import { NatsServer } from '../../scripts/nats-server-process.mjs';

export { before, after, beforeEach, afterEach, describe } from 'node:test';

/** What the running test made; outside a test (in `before`), the file's. */
const current = new AsyncLocalStorage();
const fileWide = { replications: [] };

/** Errors kept per replication (the newest); the count says how many came in all. */
const MAX_ERRORS = 30;
/** Log lines shown per run of a server. */
const LOG_LINES = 40;

/** Remembers `state` (an RxReplicationState) and collects its errors, for the report of a failure. */
export function watchReplication(state, label) {
  const watched = { label, state, errors: [], errorCount: 0 };
  state.error$.subscribe((e) => {
    watched.errorCount++;
    watched.errors.push(e);
    if (watched.errors.length > MAX_ERRORS) watched.errors.shift();
  });
  (current.getStore() || fileWide).replications.push(watched);
  return state;
}

const mask = (text) => {
  let out = String(text);
  for (const secret of globalThis.__rxdbNatsTestSecrets || []) out = out.split(secret).join('***');
  return out;
};

const codeOf = (e) => e?.code && String(e.code).startsWith('NATS_') ? e.code : e?.parameters?.errors?.[0]?.code ?? e?.code;
const messageOf = (e) => (e?.parameters?.errors?.[0] ?? e)?.message ?? String(e);

const withTimeout = (promise, ms) =>
  Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve('(no answer within 2 s)'), ms).unref())]);

async function describeReplication(w) {
  const lines = [`replication ${w.label}: ${w.state.isStopped() ? 'stopped' : 'running'}, ${w.errorCount} error(s) on error$`];
  const stats = await withTimeout(w.state.stats().catch((e) => `stats() failed: ${e.message}`), 2000);
  lines.push(`  stats(): ${typeof stats === 'string' ? stats : JSON.stringify(stats)}`);
  if (w.errorCount > w.errors.length) lines.push(`  (the last ${w.errors.length} errors)`);
  for (const e of w.errors) lines.push(`  ${codeOf(e)}: ${messageOf(e).slice(0, 400)}`);
  return lines.join('\n');
}

function describeServer(server, since) {
  const events = server.events.filter((e) => e.at >= since);
  const name = server.serverName || `port ${server.port}`;
  const lines = [`nats-server ${name} (${server.url}): ${server.proc ? 'running' : 'not running'}; events: ${events.map((e) => `${new Date(e.at).toISOString().slice(11, 23)} ${e.what}`).join(', ') || 'none during the test'}`];
  for (const run of server.runs.filter((r) => r.ended === null || r.ended >= since)) {
    // After its start-up banner: what the server said while the test ran (warnings before it too).
    const all = run.log.split('\n').filter(Boolean);
    const ready = all.findIndex((l) => l.includes('Server is ready'));
    const said = ready < 0 ? all : [...all.slice(0, ready).filter((l) => /\[(WRN|ERR|FTL)\]/.test(l)), ...all.slice(ready)];
    const tail = said.slice(-LOG_LINES);
    lines.push(`  --- log of the run started ${new Date(run.started).toISOString().slice(11, 23)}${run.how ? `, ended by ${run.how}` : ''} (last ${tail.length} lines):`);
    for (const line of tail) lines.push(`  | ${line}`);
  }
  return lines.join('\n');
}

/** The report of a failed test: what its replications and servers saw. */
async function report(t, seen, since, err) {
  const parts = [`what "${t.name}" saw when it failed (${err?.message?.split('\n')[0] ?? err}):`];
  for (const w of [...seen.replications, ...fileWide.replications]) parts.push(await describeReplication(w));
  // Servers that were stopped or killed during the test, or started by it.
  const touched = [...NatsServer.instances].filter((s) => s.events.some((e) => e.at >= since));
  for (const server of touched) parts.push(describeServer(server, since));
  if (touched.length === 0) {
    for (const server of [...NatsServer.instances].filter((s) => s.proc)) parts.push(describeServer(server, since));
  }
  // stderr: the test runner prints it with the file's output, failed or not.
  console.error(mask(parts.join('\n')).split('\n').map((l) => `# ${l}`).join('\n'));
}

/**
 * How long a test may run (`options.timeout` overrides it): one that hangs fails with its
 * report instead of holding the file until the runner kills it, reportless.
 */
const TEST_TIMEOUT_MS = 300000;

/** Rejects after `ms`, naming the test; `clear()` stops the timer. */
function deadline(name, ms) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`"${name}" did not end within ${ms} ms (it hung)`)), ms);
  });
  return { expired, clear: () => clearTimeout(timer) };
}

/** `test(name, [options], fn)`, as node:test's; on failure it prints what the test saw, then fails. */
export function test(name, options, fn) {
  if (typeof options === 'function') [options, fn] = [{}, options];
  const { timeout = TEST_TIMEOUT_MS, ...rest } = options;
  return nodeTest(name, rest, async (t) => {
    const seen = { replications: [] };
    const since = Date.now();
    const limit = deadline(name, timeout);
    try {
      return await Promise.race([current.run(seen, () => fn(t)), limit.expired]);
    } catch (err) {
      await report(t, seen, since, err).catch((e) => console.error(`# (the failure report failed: ${e.message})`));
      throw err;
    } finally {
      limit.clear();
    }
  });
}
