// RxDB 16 (peerDependencies say ^16 || ^17; the repository develops on 17): the replication test
// files run again in a project where rxdb-nats-native is installed from its tarballs next to
// RxDB 16 (the devDependency alias rxdb-16), offline, each file in its own `node --test`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { installConsumer, repoRoot } from './harness/package.mjs';

const require = createRequire(import.meta.url);
const { natsServerBin } = require('../scripts/nats-server.cjs');

// Everything but this file, the other packaging tests, the minute-long outage and soak, and the
// files about the server and the connection rather than RxDB (cluster, TLS/auth, secrets).
const SKIP = new Set([
  'rxdb16.test.mjs', 'install.test.mjs', 'types.test.mjs', 'registry.test.mjs', 'release.test.mjs', 'outage.test.mjs', 'soak.test.mjs',
  'cluster.test.mjs', 'security.test.mjs', 'secrets.test.mjs',
  'attachments-rxdb16-17.test.mjs', // runs RxDB 16 next to 17 by itself
  'options.test.mjs', // about the repository's files, not RxDB
]);
const files = fs.readdirSync(path.join(repoRoot, '__test__')).filter((f) => /\.test\.[cm]js$/.test(f) && !SKIP.has(f)).sort();

// A file takes under 30 s here; a hung one is killed so the run reports it.
const FILE_TIMEOUT_MS = 5 * 60 * 1000;
let consumer;
before(() => {
  consumer = installConsumer({ rxdb: 'node_modules/rxdb-16', rxjs: 'node_modules/rxjs', nats: 'node_modules/nats' });
  fs.cpSync(path.join(repoRoot, '__test__'), path.join(consumer.dir, '__test__'), { recursive: true });
  fs.cpSync(path.join(repoRoot, 'scripts'), path.join(consumer.dir, 'scripts'), { recursive: true });
  consumer.env.NATS_SERVER_BIN = natsServerBin();
});
after(() => consumer?.remove());

test('the project runs rxdb-nats-native from its tarball on RxDB 16', () => {
  const probe = `
    const lib = require.resolve('rxdb-nats-native');
    const rxdb = require('module').createRequire(lib).resolve('rxdb');
    const pkg = rxdb.slice(0, rxdb.lastIndexOf('/node_modules/rxdb/') + '/node_modules/rxdb/'.length) + 'package.json';
    console.log(JSON.stringify({ lib, version: require(pkg).version }));`;
  const run = spawnSync('node', ['-e', probe], { cwd: consumer.dir, env: consumer.env, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const { lib, version } = JSON.parse(run.stdout);
  assert.match(version, /^16\./);
  assert.ok(lib.startsWith(fs.realpathSync(consumer.dir)), `rxdb-nats-native from the consumer project: ${lib}`);
});

for (const file of files) {
  test(`with RxDB 16: __test__/${file} passes`, async () => {
    const child = spawn('node', ['--test', '--test-reporter=spec', `__test__/${file}`], {
      cwd: consumer.dir,
      env: consumer.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so a kill takes its nats-servers along
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    // A failed test can leave a replication open, which keeps its process alive.
    const timer = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), FILE_TIMEOUT_MS);
    const status = await new Promise((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    assert.equal(status, 0, `__test__/${file} failed with RxDB 16 (status ${status}):\n${output.slice(-6000)}`);
    assert.match(output, /ℹ pass [1-9]/);
    assert.match(output, /ℹ fail 0/);
  });
}
