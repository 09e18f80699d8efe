// RXDB_NATS_LOG: off by default; when set, what the native side does (connection, stream,
// consumers, pulls and pushes) goes to stderr. That it never shows a credential is checked with
// the provoked failures of secrets.test.mjs.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startNatsServer } from './harness/nats-server.mjs';
import { uniqueName } from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

/** Runs the two-client fixture with `RXDB_NATS_LOG` set to `level` (unset: undefined). */
async function run(level) {
  const env = { ...process.env };
  delete env.RXDB_NATS_LOG;
  if (level !== undefined) env.RXDB_NATS_LOG = level;
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL('./fixtures/two-clients.mjs', import.meta.url)), server.url, uniqueName('log')],
    { env, stdio: ['ignore', 'pipe', 'pipe'] }
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, stderr);
  assert.match(stdout, /replicated/);
  return stderr;
}

test('without RXDB_NATS_LOG the native side writes nothing', async () => {
  assert.equal(await run(undefined), '');
  assert.equal(await run('off'), '');
});

test('RXDB_NATS_LOG=debug shows the connection, stream, consumers, pulls and pushes', async () => {
  const log = await run('debug');
  for (const event of [
    /INFO rxdb_nats_native::connection: connecting servers=nats:\/\/127\.0\.0\.1:\d+/,
    /INFO rxdb_nats_native::connection: connected servers=\S+ server=\S+ version=2\.\d+\.\d+/,
    /DEBUG rxdb_nats_native::connection: sharing the connection/,
    /INFO rxdb_nats_native::stream: created the stream stream=log\S+ subjects=log\S+\.people\.\*/,
    /DEBUG rxdb_nats_native::pull: created the pull consumer consumer=\S+ after=0/,
    /DEBUG rxdb_nats_native::pull: pulled a batch after=\d+ checkpoint=\d+ documents=\d+ skipped=0 caught_up=true/,
    /DEBUG rxdb_nats_native::replication: pushed a batch documents=1 written=1 conflicts=0/,
    /DEBUG rxdb_nats_native::live: created the live consumer/,
    /DEBUG rxdb_nats_native::live: live batch after=\d+ checkpoint=\d+ documents=[12]/,
    /DEBUG rxdb_nats_native::live: live feed stopped/,
    /INFO rxdb_nats_native::connection: closing the connection/,
  ]) {
    assert.match(log, event);
  }
  assert.doesNotMatch(log, /TRACE/);
});

test('RXDB_NATS_LOG takes tracing directives; a value it cannot read is said once and logs nothing', async () => {
  const log = await run('rxdb_nats_native::stream=debug');
  assert.match(log, /rxdb_nats_native::stream: created the stream/);
  assert.doesNotMatch(log, /rxdb_nats_native::(connection|pull|live)/);
  const bad = await run('loud=very');
  assert.equal(bad.trim().split('\n').length, 1, bad);
  assert.match(bad, /RXDB_NATS_LOG="loud=very" is not a log level \(error, warn, info, debug, trace\)/);
});
