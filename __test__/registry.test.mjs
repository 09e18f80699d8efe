// The package as users get it from a registry: the tarballs a release publishes go to a real npm
// registry on 127.0.0.1 (verdaccio, harness/registry.mjs), and `npm install rxdb-nats-native` by
// name, with npm's --os/--cpu/--libc for each Linux target, must install exactly that target's
// platform package. On this machine (linux-x64, glibc) the installed package loads and replicates
// through a real nats-server; installed for musl here, it must fail naming the glibc package.
//
// Binaries: the four Linux binaries are built through zig only by `npm run pack:local -- --cross
// <dir>` (4-8 minutes each here, too long for `npm test`). With RXDB_NATS_TARBALLS=<dir> this test
// publishes those tarballs, checks each installed binary's ELF headers and replicates with the
// linux-x64-gnu one (`npm run test:cross`). Without it, linux-x64-gnu is this machine's `npm run
// build` and the other three platform packages are published with package.json and README only,
// which tests npm's choice but no binary (the test names say which).
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNatsServer } from './harness/nats-server.mjs';
import { envWithoutRust, packedManifest, repoRoot } from './harness/package.mjs';
import { startRegistry } from './harness/registry.mjs';
import { packLocal } from '../scripts/pack-local.mjs';
import { checkElf } from '../scripts/elf.mjs';

const { version, napi } = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
const lock = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')).packages;
/** What a user on each Linux target has, as npm's --os/--cpu/--libc spell it. */
const LINUX = {
  'linux-x64-gnu': { cpu: 'x64', libc: 'glibc' },
  'linux-x64-musl': { cpu: 'x64', libc: 'musl' },
  'linux-arm64-gnu': { cpu: 'arm64', libc: 'glibc' },
  'linux-arm64-musl': { cpu: 'arm64', libc: 'musl' },
};
const HOST = 'linux-x64-gnu';
const CROSS_DIR = process.env.RXDB_NATS_TARBALLS ? path.resolve(process.env.RXDB_NATS_TARBALLS) : null;

let work;
let registry;
let server;
let env;
/** dir -> { tarball, real } for every Linux platform package published. */
const published = {};
/** dir -> the consumer project installed for that target. */
const projects = {};

/** A platform package with its package.json and README only, for a target whose binary is not built here. */
function manifestOnlyTarball(dir, outDir) {
  const stage = fs.mkdtempSync(path.join(work, `${dir}-`));
  for (const file of ['package.json', 'README.md']) fs.copyFileSync(path.join(repoRoot, 'npm', dir, file), path.join(stage, file));
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', outDir], { cwd: stage, encoding: 'utf8' });
  return path.join(outDir, JSON.parse(out)[0].filename);
}

/** The tarballs to publish: from RXDB_NATS_TARBALLS (pack:local --cross), else packed now. */
function tarballs() {
  const outDir = path.join(work, 'tarballs');
  fs.mkdirSync(outDir);
  if (CROSS_DIR) {
    const byName = {};
    for (const file of fs.readdirSync(CROSS_DIR).filter((f) => f.endsWith('.tgz'))) {
      const manifest = packedManifest(path.join(CROSS_DIR, file));
      if (manifest.version === version) byName[manifest.name] = path.join(CROSS_DIR, file);
    }
    const main = byName['rxdb-nats-native'];
    assert.ok(main, `RXDB_NATS_TARBALLS=${CROSS_DIR} holds rxdb-nats-native-${version}.tgz`);
    for (const dir of Object.keys(LINUX)) {
      const tarball = byName[`rxdb-nats-native-${dir}`];
      assert.ok(tarball, `RXDB_NATS_TARBALLS=${CROSS_DIR} holds the ${dir} package (npm run pack:local -- --cross ${CROSS_DIR})`);
      published[dir] = { tarball, real: true };
    }
    return main;
  }
  const packed = packLocal(outDir, [HOST]);
  published[HOST] = { tarball: packed.platform, real: true };
  for (const dir of Object.keys(LINUX)) {
    if (dir !== HOST) published[dir] = { tarball: manifestOnlyTarball(dir, outDir), real: false };
  }
  return packed.main;
}

/** `npm install <args>` by name from the local registry into a fresh project (no Rust on PATH). */
function install(name, args) {
  const project = path.join(work, `project-${name}`);
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: `consumer-${name}`, version: '1.0.0', private: true }, null, 2));
  // An npm cache of this run's own (the user's would keep ~100 MB of packuments per run, keyed by
  // this registry's random port); --prefer-offline: what the first install fetched serves the next.
  registry.npm(['install', ...args, '--cache', path.join(work, 'npm-cache'), '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund'], {
    cwd: project,
    env,
  });
  return project;
}

const installedPlatformPackages = (project) =>
  fs.readdirSync(path.join(project, 'node_modules')).filter((n) => n.startsWith('rxdb-nats-native-')).sort();

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'rxdb-nats-registry-test-'));
  env = envWithoutRust(path.join(work, 'bin'));
  [server, registry] = await Promise.all([startNatsServer(), startRegistry()]);
  const main = tarballs();
  // As the release workflow does: the platform packages first, so that the main package never
  // names one that is not there yet.
  for (const dir of Object.keys(LINUX)) registry.npm(['publish', published[dir].tarball, '--ignore-scripts'], { cwd: work });
  registry.npm(['publish', main, '--ignore-scripts'], { cwd: work });
});
after(async () => {
  await server?.destroy();
  await registry?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('the registry serves rxdb-nats-native naming every platform package, and each Linux package with its os, cpu and libc', async () => {
  const manifest = async (name) => {
    const { status, body } = await registry.get(`${name}/${version}`);
    assert.equal(status, 200, `the registry has ${name}@${version}`);
    return body;
  };
  const platforms = fs.readdirSync(path.join(repoRoot, 'npm')).map((dir) => `rxdb-nats-native-${dir}`).sort();
  const main = await manifest('rxdb-nats-native');
  assert.deepEqual(main.optionalDependencies, Object.fromEntries(platforms.map((n) => [n, version])));
  assert.deepEqual(main.peerDependencies, { rxdb: '^16.0.0 || ^17.0.0', rxjs: '^7.8.0' });
  for (const [dir, { cpu, libc }] of Object.entries(LINUX)) {
    const { os: osField, cpu: cpuField, libc: libcField } = await manifest(`rxdb-nats-native-${dir}`);
    assert.deepEqual([osField, cpuField, libcField], [['linux'], [cpu], [libc]], `${dir}: os, cpu, libc`);
  }
});

for (const [dir, { cpu, libc }] of Object.entries(LINUX)) {
  const binary = CROSS_DIR ? 'binary built through zig' : dir === HOST ? 'binary of npm run build' : 'package.json only, no RXDB_NATS_TARBALLS';
  test(`npm install rxdb-nats-native --os linux --cpu ${cpu} --libc ${libc} installs rxdb-nats-native-${dir} and no other platform package (${binary})`, () => {
    // The linux-x64-gnu project replicates below, so it gets RxDB as a user installs it; the others
    // skip unpacking RxDB (20 s and 11,000 files each) with --omit=peer.
    const args = dir === HOST
      ? [`rxdb-nats-native@${version}`, `rxdb@${lock['node_modules/rxdb'].version}`, `rxjs@${lock['node_modules/rxjs'].version}`]
      : [`rxdb-nats-native@${version}`, '--omit=peer'];
    const project = install(dir, [...args, '--os', 'linux', '--cpu', cpu, '--libc', libc]);
    projects[dir] = project;
    assert.deepEqual(installedPlatformPackages(project), [`rxdb-nats-native-${dir}`]);
    const node = path.join(project, 'node_modules', `rxdb-nats-native-${dir}`, `${napi.binaryName}.${dir}.node`);
    if (published[dir].real) {
      assert.equal(checkElf(node, dir).platform, dir);
    } else {
      assert.ok(!fs.existsSync(node), 'a package published without its binary has none');
    }
  });
}

for (const program of ['replicate.mjs', 'replicate.cjs']) {
  test(`on linux-x64 glibc, the package installed by name from the registry replicates through nats-server (${program === 'replicate.mjs' ? 'import' : 'require()'})`, () => {
    const project = projects[HOST];
    assert.ok(project, 'the linux-x64-gnu install above succeeded');
    fs.cpSync(fileURLToPath(new URL('./fixtures/consumer', import.meta.url)), project, { recursive: true });
    const streamName = `registry${program.endsWith('.mjs') ? 'esm' : 'cjs'}${process.pid}`;
    const run = spawnSync('node', [program, server.url, streamName], { cwd: project, env, encoding: 'utf8', timeout: 60000 });
    assert.equal(run.status, 0, `${program} failed:\n${run.stderr}`);
    const { doc, loaded } = JSON.parse(run.stdout.trim().split('\n').pop());
    assert.deepEqual(doc, { id: 'alice', name: `Alice via ${streamName}` });
    const nodeModules = fs.realpathSync(path.join(project, 'node_modules'));
    assert.deepEqual(loaded.filter((f) => f.endsWith('.node')), [path.join(nodeModules, `rxdb-nats-native-${HOST}`, `${napi.binaryName}.${HOST}.node`)]);
  });
}

test('installed for musl on this glibc machine, loading fails with NATS_NATIVE_MISSING naming rxdb-nats-native-linux-x64-gnu', () => {
  const project = projects['linux-x64-musl'];
  assert.ok(project && projects[HOST], 'the linux-x64-musl and linux-x64-gnu installs above succeeded');
  // The entries load RxDB before the addon: the peers installed into the glibc project serve here.
  for (const peer of ['rxdb', 'rxjs']) fs.symlinkSync(path.join(projects[HOST], 'node_modules', peer), path.join(project, 'node_modules', peer));
  for (const args of [['-e', 'require("rxdb-nats-native")'], ['--input-type=module', '-e', 'await import("rxdb-nats-native")']]) {
    const run = spawnSync('node', args, { cwd: project, env, encoding: 'utf8', timeout: 60000 });
    assert.notEqual(run.status, 0, `node ${args.join(' ')} must fail`);
    assert.match(run.stderr, /NATS_NATIVE_MISSING/);
    assert.match(run.stderr, new RegExp(`package rxdb-nats-native-linux-x64-gnu@${version.replace(/\./g, '\\.')}\\) is not installed`));
    assert.match(run.stderr, new RegExp(`npm install rxdb-nats-native-linux-x64-gnu@${version.replace(/\./g, '\\.')}`));
    assert.doesNotMatch(run.stderr, /linux-x64-musl\.node/, 'the glibc loader never tries the musl binary');
  }
});
