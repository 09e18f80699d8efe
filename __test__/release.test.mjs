// What a release promises besides the code: one version in every package, the metadata npm shows
// (license, repository, engines), platform packages whose os/cpu/libc npm can choose by, a release
// workflow that builds and tests every one of them, and an ELF check that rejects a wrong binary.
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { repoRoot } from './harness/package.mjs';
import { syncVersions, SHARED_FIELDS } from '../scripts/version-sync.mjs';
import { checkElf } from '../scripts/elf.mjs';

const require = createRequire(import.meta.url);
const readJson = (...parts) => JSON.parse(fs.readFileSync(path.join(repoRoot, ...parts), 'utf8'));
const pkg = readJson('package.json');
const platformDirs = fs.readdirSync(path.join(repoRoot, 'npm')).sort();
const workflow = fs.readFileSync(path.join(repoRoot, '.github', 'workflows', 'release.yml'), 'utf8');

test('package.json, every npm/* package, Cargo.toml and Cargo.lock have one version, and version:sync brings a drifted one back', () => {
  assert.deepEqual(syncVersions(), [], 'npm run version:sync -- --check');
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'rxdb-nats-version-'));
  try {
    for (const file of ['package.json', 'npm', 'Cargo.toml', 'Cargo.lock', 'native.js']) {
      fs.cpSync(path.join(repoRoot, file), path.join(copy, file), { recursive: true });
    }
    const arm = path.join(copy, 'npm', 'linux-arm64-gnu', 'package.json');
    fs.writeFileSync(arm, JSON.stringify({ ...JSON.parse(fs.readFileSync(arm, 'utf8')), version: '9.9.9' }, null, 2));
    const toml = path.join(copy, 'Cargo.toml');
    fs.writeFileSync(toml, fs.readFileSync(toml, 'utf8').replace(/^version = ".*"$/m, 'version = "9.9.9"'));
    assert.deepEqual(syncVersions({ root: copy }).map((d) => d.file), ['npm/linux-arm64-gnu/package.json', 'Cargo.toml']);
    syncVersions({ root: copy, write: true });
    assert.deepEqual(syncVersions({ root: copy }), []);
    assert.equal(JSON.parse(fs.readFileSync(arm, 'utf8')).version, pkg.version);
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
  assert.match(pkg.scripts.version, /^node scripts\/version-sync\.mjs && npm run build && git add /, 'npm version runs the sync');
});

test('the MIT LICENSE and the metadata npm shows are in every package', () => {
  const license = fs.readFileSync(path.join(repoRoot, 'LICENSE'), 'utf8');
  assert.match(license, /^MIT License\n\nCopyright \(c\) 2026 rxdb-nats-native contributors\n/);
  assert.equal(pkg.license, 'MIT');
  assert.match(pkg.repository.url, /^git\+https:\/\/github\.com\/[^/]+\/rxdb-nats-native\.git$/);
  assert.equal(pkg.homepage, `${pkg.repository.url.replace(/^git\+/, '').replace(/\.git$/, '')}#readme`);
  assert.equal(pkg.bugs.url, `${pkg.repository.url.replace(/^git\+/, '').replace(/\.git$/, '')}/issues`);
  assert.ok(pkg.keywords.includes('rxdb') && pkg.keywords.includes('nats'));
  for (const dir of platformDirs) {
    const manifest = readJson('npm', dir, 'package.json');
    for (const key of SHARED_FIELDS) assert.deepEqual(manifest[key], pkg[key], `npm/${dir} ${key}`);
  }
});

test('each platform package names the os, cpu and libc npm chooses it by', () => {
  assert.equal(platformDirs.length, pkg.napi.targets.length, 'one npm/ package per napi target');
  for (const dir of platformDirs) {
    const [osName, cpu, abi] = dir.split('-');
    const manifest = readJson('npm', dir, 'package.json');
    assert.equal(manifest.name, `rxdb-nats-native-${dir}`);
    assert.deepEqual(manifest.os, [osName], `npm/${dir} os`);
    assert.deepEqual(manifest.cpu, [cpu], `npm/${dir} cpu`);
    // Without libc, npm would install a glibc and a musl package side by side.
    assert.deepEqual(manifest.libc, osName === 'linux' ? [{ gnu: 'glibc', musl: 'musl' }[abi]] : undefined, `npm/${dir} libc`);
    assert.deepEqual(manifest.files, [`${pkg.napi.binaryName}.${dir}.node`]);
    assert.equal(manifest.main, `${pkg.napi.binaryName}.${dir}.node`);
  }
});

test('engines.node is the oldest Node.js the release workflow tests, and not older than RxDB 17 needs', () => {
  const tested = [...workflow.matchAll(/^\s+node: \[([^\]]+)\]$/gm)].flatMap((m) => m[1].split(',').map((v) => Number(v.trim().replace(/'/g, ''))));
  assert.ok(tested.length >= 4, `the test jobs name their Node.js versions (${tested})`);
  const oldest = Math.min(...tested);
  assert.equal(pkg.engines.node, `>= ${oldest}`);
  for (const dir of platformDirs) assert.deepEqual(readJson('npm', dir, 'package.json').engines, pkg.engines);
  const rxdb17 = require('rxdb/package.json').engines.node;
  assert.match(rxdb17, /^>=\s*(\d+)$/);
  assert.ok(oldest >= Number(/(\d+)/.exec(rxdb17)[1]), `RxDB 17 needs Node ${rxdb17}`);
  assert.ok(process.versions.node.split('.')[0] >= oldest, 'npm test runs on a supported Node.js');
});

test('the release workflow builds every platform package, tests each on a runner, and pins the tests\' nats-server', () => {
  const section = (job) => {
    const start = workflow.indexOf(`\n  ${job}:\n`);
    assert.ok(start >= 0, `job ${job}`);
    const end = workflow.slice(start + 1).search(/\n  [a-z-]+:\n/);
    return end < 0 ? workflow.slice(start) : workflow.slice(start, start + 1 + end);
  };
  const platformsIn = (text) => new Set([...text.matchAll(/platform: (\S+)$/gm)].map((m) => m[1]));
  assert.deepEqual([...platformsIn(section('build'))].sort(), platformDirs);
  assert.deepEqual([...platformsIn(section('test')), ...platformsIn(section('test-alpine'))].sort(), platformDirs);
  for (const target of pkg.napi.targets) assert.match(section('build'), new RegExp(`target: ${target}$`, 'm'));
  assert.match(section('test-alpine'), /node:\$NODE-alpine/);
  assert.match(section('publish'), /id-token: write/);
  assert.match(section('publish'), /npm publish "dist\/\$1" --provenance/);
  const { PINNED_VERSION } = require('../scripts/nats-server.cjs');
  assert.match(workflow, new RegExp(`NATS_SERVER_VERSION: '${PINNED_VERSION.replace(/\./g, '\\.')}'`));
});

test('the ELF check takes this machine\'s binary for linux-x64-gnu and rejects it for another architecture or C library', () => {
  const binary = path.join(repoRoot, `${pkg.napi.binaryName}.linux-x64-gnu.node`);
  assert.ok(fs.existsSync(binary), 'npm run build made the binary');
  const ok = checkElf(binary, 'linux-x64-gnu');
  assert.ok(ok.needed.includes('libc.so.6'));
  assert.throws(() => checkElf(binary, 'linux-arm64-gnu'), /is not a linux-arm64-gnu binary: machine Advanced Micro Devices X86-64, not AArch64/);
  assert.throws(() => checkElf(binary, 'linux-x64-musl'), /does not link musl .*; links glibc's .*libc\.so\.6.*; needs GLIBC_ symbol versions/);
  assert.throws(() => checkElf(path.join(repoRoot, 'package.json'), 'linux-x64-gnu'), /readelf -h .* failed/);
});
