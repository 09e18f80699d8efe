// `node scripts/test-js.mjs [--suite <name>]... [--jobs N] [--repeat N] [files...]`: runs the JS
// test files, several at once, each in a `node --test` process of its own (each file starts its
// own nats-server processes on free ports, so files do not share state). Suites:
//   main      every file on the pinned nats-server (or $NATS_SERVER_BIN), RxDB from the repository
//   nats-2.9  the files that depend on the server version, on Debian's nats-server 2.9.10
//   rxdb16    the RxDB-facing files in a project that installed the packed package next to RxDB 16
// Without --suite, all three. A file's output is printed whole when it ends (never interleaved);
// at the end comes every file's duration, slowest first, and the failures. Exit status 1 when any
// file failed. TEST_JOBS sets --jobs (default: cores + 1: most files spend their time waiting on
// servers and timers); TEST_FILE_TIMEOUT_MS the time after which a hung file is killed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { natsServerBin, debianNatsServerBin, PINNED_VERSION, DEBIAN_VERSION } = require('./nats-server.cjs');

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const testDir = path.join(root, '__test__');
const DURATIONS = path.join(root, '.cache', 'test-durations.json');

/** Files the 2.9.10 run leaves out, each with why. */
export const NOT_ON_2_9 = {
  'outage.test.mjs': 'a minute-long outage; reconnect logic is client-side and runs on 2.15.1',
  'install.test.mjs': 'installs the packed package; no server-version behaviour',
  'registry.test.mjs': 'publishes and installs the packages through a local registry; no server-version behaviour',
  'release.test.mjs': 'package metadata and the release workflow; no server',
  'types.test.mjs': 'type-checks only',
  'soak.test.mjs': 'minutes of updates; memory and consumers do not depend on the server version',
  'partitions.test.mjs': 'dead-link detection is the client\'s pings; runs on 2.15.1',
  'runtimes.test.mjs': 'Bun and Deno load the addon; no server-version behaviour',
  'cluster.test.mjs': 'before 2.10.23 a killed stream leader can rejoin without acknowledged writes (seen here on 2.9.10: it led again with 4,941 of 5,001)',
};

/** Files the RxDB 16 run leaves out: packaging, the minute-long ones, and those about the server or the connection rather than RxDB. */
export const NOT_ON_RXDB16 = {
  'install.test.mjs': 'packaging', 'types.test.mjs': 'packaging', 'registry.test.mjs': 'packaging', 'release.test.mjs': 'packaging',
  'outage.test.mjs': 'minute-long, about the connection', 'soak.test.mjs': 'minutes of updates',
  'cluster.test.mjs': 'about the server', 'security.test.mjs': 'about the connection', 'partitions.test.mjs': 'about the connection', 'runtimes.test.mjs': 'runs the repository\'s build under Bun and Deno', 'secrets.test.mjs': 'about the connection',
  'attachments-rxdb16-17.test.mjs': 'runs RxDB 16 next to 17 by itself',
  'options.test.mjs': 'about the repository\'s files, not RxDB',
};

/** Known-slow files go first, so the run does not end waiting on one long file. */
const SLOW_FIRST = ['cluster.test.mjs', 'outage.test.mjs', 'partitions.test.mjs', 'attachments.test.mjs', 'registry.test.mjs', 'convergence.test.mjs', 'soak.test.mjs', 'security.test.mjs', 'install.test.mjs'];

const allFiles = () => fs.readdirSync(testDir).filter((f) => /\.test\.(mjs|cjs)$/.test(f)).sort();

function parseArgs(argv) {
  const args = { suites: [], jobs: Number(process.env.TEST_JOBS) || os.availableParallelism() + 1, repeat: 1, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--suite') args.suites.push(argv[++i]);
    else if (a === '--jobs') args.jobs = Number(argv[++i]);
    else if (a === '--repeat') args.repeat = Number(argv[++i]);
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else args.files.push(path.basename(a));
  }
  if (args.suites.length === 0) args.suites = ['main', 'nats-2.9', 'rxdb16'];
  for (const s of args.suites) if (!['main', 'nats-2.9', 'rxdb16'].includes(s)) throw new Error(`unknown suite ${s}`);
  if (!(args.jobs >= 1)) throw new Error('--jobs must be >= 1');
  return args;
}

/** Runs `node <args>` and resolves `{ status, output }`; output is stdout and stderr as they came. */
function run(cmd, args, { cwd, env, timeoutMs }) {
  return new Promise((resolve) => {
    // Its own process group: a kill on timeout takes its nats-servers along.
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, timeoutMs);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      // A test can leave a server behind in its group when it fails hard.
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
      if (timedOut) output += `\n# killed after ${timeoutMs} ms: the file hung\n`;
      resolve({ status: timedOut ? 'timeout' : status ?? signal, output });
    });
  });
}

/** Counts from the spec reporter's summary (`ℹ pass N`, `ℹ fail N`). */
function counts(output) {
  const n = (label) => Number((output.match(new RegExp(`ℹ ${label} (\\d+)`)) || [])[1] || 0);
  return { pass: n('pass'), fail: n('fail'), cancelled: n('cancelled'), skipped: n('skipped'), todo: n('todo') };
}

/** The RxDB 16 project: installed in a child process (it takes a while and must not block this one's pipes). */
async function installRxdb16Project(env) {
  const script = `
    import fs from 'node:fs';
    import path from 'node:path';
    import { installConsumer, repoRoot } from ${JSON.stringify(path.join(testDir, 'harness', 'package.mjs'))};
    const consumer = installConsumer({ rxdb: 'node_modules/rxdb-16', rxjs: 'node_modules/rxjs', nats: 'node_modules/nats' });
    fs.cpSync(path.join(repoRoot, '__test__'), path.join(consumer.dir, '__test__'), { recursive: true });
    fs.cpSync(path.join(repoRoot, 'scripts'), path.join(consumer.dir, 'scripts'), { recursive: true });
    console.log('CONSUMER ' + JSON.stringify({ dir: consumer.dir, env: consumer.env }));`;
  const started = Date.now();
  const { status, output } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env, timeoutMs: 10 * 60 * 1000 });
  const line = output.split('\n').find((l) => l.startsWith('CONSUMER '));
  if (status !== 0 || !line) throw new Error(`installing the RxDB 16 project failed (${status}):\n${output}`);
  const consumer = JSON.parse(line.slice('CONSUMER '.length));
  console.log(`# the RxDB 16 project is installed in ${consumer.dir} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return consumer;
}

function previousDurations() {
  try {
    return JSON.parse(fs.readFileSync(DURATIONS, 'utf8'));
  } catch {
    return {};
  }
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const minutes = (ms) => `${Math.floor(ms / 60000)}m${String(Math.round((ms % 60000) / 1000)).padStart(2, '0')}s`;

export async function runSuites(argv) {
  const args = parseArgs(argv);
  const started = Date.now();
  const known = previousDurations();
  const chosen = (exclude) => (args.files.length ? args.files : allFiles()).filter((f) => !(f in exclude));
  const timeoutMs = Number(process.env.TEST_FILE_TIMEOUT_MS) || 15 * 60 * 1000;
  const baseEnv = { ...process.env };
  delete baseEnv.NODE_TEST_CONTEXT; // set when this runs under `node --test`: a child would report to it
  // One nats-server per suite, found (or installed) once, before anything runs.
  const mainBin = natsServerBin();
  // The pinned release unless the developer brought another ($NATS_SERVER_BIN or PATH).
  const mainExpect = path.resolve(mainBin) === path.join(root, '.cache', `nats-server-${PINNED_VERSION}`, 'nats-server') ? { RXDB_NATS_EXPECT_SERVER: PINNED_VERSION } : {};
  const suites = {
    main: () => ({ files: chosen({}), env: { ...baseEnv, NATS_SERVER_BIN: mainBin, ...mainExpect }, cwd: root }),
    'nats-2.9': () => ({
      files: chosen(NOT_ON_2_9),
      env: { ...baseEnv, NATS_SERVER_BIN: debianNatsServerBin(), RXDB_NATS_EXPECT_SERVER: DEBIAN_VERSION },
      cwd: root,
    }),
  };
  const jobs = [];
  const results = [];
  const addJobs = (suite, { files, env, cwd }) => {
    for (let round = 1; round <= args.repeat; round++) {
      for (const file of files) jobs.push({ suite, file, env, cwd, round });
    }
  };
  for (const s of args.suites) if (suites[s]) addJobs(s, suites[s]());
  const weight = (job) => known[`${job.suite} ${job.file}`] ?? (SLOW_FIRST.includes(job.file) ? 1e9 - SLOW_FIRST.indexOf(job.file) : 0);
  const sortJobs = () => jobs.sort((a, b) => a.round - b.round || weight(b) - weight(a));
  sortJobs();
  console.log(`# ${jobs.length} test files${args.suites.includes('rxdb16') ? ' (and the RxDB 16 files once its project is installed)' : ''}, ${args.jobs} at a time; nats-server ${mainBin}`);

  let consumer = null;
  let waitingFor = 0; // jobs not queued yet (the RxDB 16 files, until the project is there)
  let setupFailure = null;
  const setups = [];
  if (args.suites.includes('rxdb16')) {
    waitingFor++;
    setups.push(
      installRxdb16Project(baseEnv).then(
        (c) => {
          consumer = c;
          addJobs('rxdb16', {
            files: chosen(NOT_ON_RXDB16),
            env: { ...c.env, NATS_SERVER_BIN: mainBin, ...mainExpect, RXDB_NATS_EXPECT_RXDB: '16', RXDB_NATS_EXPECT_INSTALLED: '1' },
            cwd: c.dir,
          });
          sortJobs();
        },
        (e) => (setupFailure = e)
      ).finally(() => waitingFor--)
    );
  }

  // Workers take the slowest job left; while a setup is under way, an idle worker waits for it.
  const setupsDone = Promise.all(setups);
  const worker = async () => {
    for (;;) {
      const job = jobs.shift();
      if (!job) {
        if (waitingFor === 0) return;
        await setupsDone;
        continue;
      }
      const t0 = Date.now();
      const { status, output } = await run(process.execPath, ['--test', '--test-reporter=spec', path.join('__test__', job.file)], {
        cwd: job.cwd,
        env: job.env,
        timeoutMs,
      });
      const ms = Date.now() - t0;
      const c = counts(output);
      const ok = status === 0 && c.fail === 0 && c.cancelled === 0 && c.pass > 0;
      results.push({ ...job, ms, ok, status, counts: c });
      const label = `${job.suite} ${job.file}${args.repeat > 1 ? ` (run ${job.round})` : ''}`;
      console.log(`\n${'='.repeat(100)}\n# ${ok ? 'ok' : 'FAILED'}  ${label}  ${seconds(ms)}  pass ${c.pass} fail ${c.fail}${status === 0 ? '' : ` (exit ${status})`}\n${'='.repeat(100)}`);
      process.stdout.write(output.endsWith('\n') ? output : `${output}\n`);
    }
  };
  await Promise.all(Array.from({ length: args.jobs }, worker));
  if (consumer) fs.rmSync(path.dirname(consumer.dir), { recursive: true, force: true });

  const wall = Date.now() - started;
  const sum = results.reduce((s, r) => s + r.ms, 0);
  console.log(`\n# test files, slowest first: ${results.length} files in ${minutes(wall)} (${minutes(sum)} of test time, ${args.jobs} at a time)`);
  for (const r of [...results].sort((a, b) => b.ms - a.ms)) {
    console.log(`#   ${seconds(r.ms).padStart(8)}  ${r.ok ? 'ok    ' : 'FAILED'}  ${r.suite.padEnd(8)}  ${r.file}${args.repeat > 1 ? ` #${r.round}` : ''}  (${r.counts.pass} passed${r.counts.fail ? `, ${r.counts.fail} failed` : ''})`);
  }
  const failed = results.filter((r) => !r.ok);
  if (setupFailure) console.log(`# the RxDB 16 project could not be installed: ${setupFailure.message}`);
  const tests = results.reduce((s, r) => s + r.counts.pass, 0);
  if (failed.length || setupFailure) {
    console.log(`# FAILED: ${failed.map((r) => `${r.suite} ${r.file}${args.repeat > 1 ? ` #${r.round}` : ''}`).join(', ') || 'setup'}; ${tests} tests passed`);
  } else {
    console.log(`# all ${results.length} files passed: ${tests} tests (suites: ${args.suites.join(', ')})`);
  }
  // The next run starts the slowest files first.
  const durations = { ...known };
  for (const r of results) durations[`${r.suite} ${r.file}`] = r.ms;
  fs.mkdirSync(path.dirname(DURATIONS), { recursive: true });
  fs.writeFileSync(DURATIONS, JSON.stringify(durations, null, 1));
  return failed.length === 0 && !setupFailure;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runSuites(process.argv.slice(2)).then(
    (ok) => process.exit(ok ? 0 : 1),
    (e) => {
      console.error(e);
      process.exit(1);
    }
  );
}
