// The package as a user gets it: the tarballs of `npm run pack:local`, installed with
// `npm install --offline` into a fresh project on a machine without Rust, used from ESM and
// CommonJS against a real nats-server.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNatsServer } from './harness/nats-server.mjs';
import { installConsumer, packedManifest } from './harness/package.mjs';

let server;
let consumer;
before(async () => {
  server = await startNatsServer();
  consumer = installConsumer({ rxdb: 'node_modules/rxdb', rxjs: 'node_modules/rxjs' });
  fs.cpSync(fileURLToPath(new URL('./fixtures/consumer', import.meta.url)), consumer.dir, { recursive: true });
});
after(async () => {
  await server?.destroy();
  consumer?.remove();
});

/** Runs `node <args>` in the consumer project, with the consumer's environment (no Rust). */
function node(args) {
  return spawnSync('node', args, { cwd: consumer.dir, env: consumer.env, encoding: 'utf8', timeout: 60000 });
}

const tarballFiles = (tarball) => execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).trim().split('\n');

test('the packed packages install offline into a fresh project without Rust', () => {
  const probe = spawnSync('sh', ['-c', 'command -v cargo || command -v rustc'], { env: consumer.env, encoding: 'utf8' });
  assert.notEqual(probe.status, 0, `no Rust on the consumer's PATH, found ${probe.stdout}`);
  assert.equal(consumer.env.CARGO_HOME, undefined);

  const main = tarballFiles(consumer.packed.main);
  for (const file of ['package/native.js', 'package/index.d.ts', 'package/js/index.mjs', 'package/js/index.cjs']) {
    assert.ok(main.includes(file), `${file} is in the main package`);
  }
  assert.deepEqual(main.filter((f) => f.endsWith('.node')), [], 'the main package carries no binary');
  assert.ok(main.includes('package/LICENSE'), 'the main package carries the LICENSE');
  // The repository's package.json has no optionalDependencies (npm ci needs a lock that has them all);
  // the published one names every platform package, at the same version.
  const manifest = packedManifest(consumer.packed.main);
  const platforms = fs.readdirSync(new URL('../npm', import.meta.url)).map((dir) => `rxdb-nats-native-${dir}`).sort();
  assert.deepEqual(manifest.optionalDependencies, Object.fromEntries(platforms.map((name) => [name, manifest.version])));
  assert.ok(tarballFiles(consumer.packed.platform).includes('package/LICENSE'), 'the platform package carries the LICENSE');
  const binary = `package/rxdb-nats-native.${consumer.packed.platformDir}.node`;
  assert.ok(tarballFiles(consumer.packed.platform).includes(binary), `${binary} is in the platform package`);

  const installed = fs.readdirSync(path.join(consumer.dir, 'node_modules')).filter((n) => n.startsWith('rxdb-nats-native'));
  // npm skipped the other platforms' optional dependencies instead of failing the install.
  assert.deepEqual(installed.sort(), ['rxdb-nats-native', consumer.packed.platformName]);
});

for (const program of ['replicate.mjs', 'replicate.cjs']) {
  test(`${program === 'replicate.mjs' ? 'import' : 'require()'} of the installed package replicates a document between two databases`, () => {
    const streamName = `consumer${program.endsWith('.mjs') ? 'esm' : 'cjs'}${process.pid}`;
    const run = node([program, server.url, streamName]);
    assert.equal(run.status, 0, `${program} failed:\n${run.stderr}`);
    const { doc, entry, loaded } = JSON.parse(run.stdout.trim().split('\n').pop());
    assert.deepEqual(doc, { id: 'alice', name: `Alice via ${streamName}` });
    const nodeModules = fs.realpathSync(path.join(consumer.dir, 'node_modules')) + path.sep;
    assert.ok(entry.startsWith(nodeModules), `rxdb-nats-native resolves into the consumer: ${entry}`);
    const binaries = loaded.filter((f) => f.endsWith('.node'));
    assert.deepEqual(binaries, [path.join(nodeModules, consumer.packed.platformName, `rxdb-nats-native.${consumer.packed.platformDir}.node`)]);
  });
}

test('without its platform package, loading names the package to install', () => {
  const platformPackage = path.join(consumer.dir, 'node_modules', consumer.packed.platformName);
  const aside = `${platformPackage}.aside`;
  fs.renameSync(platformPackage, aside);
  try {
    const version = JSON.parse(fs.readFileSync(path.join(consumer.dir, 'node_modules/rxdb-nats-native/package.json'), 'utf8')).version;
    for (const args of [['-e', 'require("rxdb-nats-native")'], ['--input-type=module', '-e', 'await import("rxdb-nats-native")']]) {
      const run = node(args);
      assert.notEqual(run.status, 0, `${args.join(' ')} failed`);
      assert.match(run.stderr, new RegExp(`package ${consumer.packed.platformName}@${version.replace(/\./g, '\\.')}\\) is not installed`));
      assert.match(run.stderr, new RegExp(`npm install ${consumer.packed.platformName}@`));
      assert.match(run.stderr, /NATS_NATIVE_MISSING/);
    }
  } finally {
    fs.renameSync(aside, platformPackage);
  }
});
