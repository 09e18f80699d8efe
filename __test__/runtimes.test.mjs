// The addon under the other Node-compatible runtimes: Bun and Deno (pinned, fetched by
// scripts/runtimes.cjs from npm). Thread-safe functions are where they differ from Node, so each
// runs the smoke fixture: two databases replicate both ways through a local nats-server, a live
// update arrives, cancel() lets the process exit by itself. Node runs it too, as the baseline.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { startNatsServer } from './harness/nats-server.mjs';
import { uniqueName } from './harness/rxdb.mjs';

const require = createRequire(import.meta.url);
const { RUNTIMES } = require('../scripts/runtimes.cjs');
const fixture = fileURLToPath(new URL('./fixtures/runtime-smoke.mjs', import.meta.url));
const root = fileURLToPath(new URL('..', import.meta.url));

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

/** Runs `cmd args` in the repository; resolves its exit code and output, or fails after `ms`. */
function run(cmd, args, ms = 60000) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} did not exit within ${ms} ms (stdout: ${stdout.trim()}; stderr: ${stderr.trim().slice(-2000)})`));
    }, ms);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const runtimes = [{ name: 'Node.js', version: process.version, command: () => [process.execPath, []] }, ...RUNTIMES];

for (const { name, command, version } of runtimes) {
  test(`${name} ${version}: two databases replicate both ways, live, and the process exits after cancel()`, { timeout: 600000 }, async (t) => {
    // The first run fetches the runtime (tens of MB); it is kept in .cache/.
    const [cmd, args] = command();
    const started = Date.now();
    const result = await run(cmd, [...args, fixture, server.url, uniqueName('smoke')]);
    t.diagnostic(`${name}: exited with ${result.code} after ${Date.now() - started} ms`);
    assert.equal(result.code, 0, `${name} exited with ${result.code ?? result.signal}: ${result.stderr.slice(-2000)}`);
    assert.match(result.stdout, /smoke ok/);
    assert.doesNotMatch(result.stderr, /error\$:/, 'no error on error$');
  });
}
