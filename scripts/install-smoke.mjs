// `node scripts/install-smoke.mjs <tarball dir> [<platform>] [--runtimes]`: the release workflow's check on each platform it
// has a runner for. Installs the main tarball and this machine's platform tarball from <dir> (the
// output of `npm run pack:local`) with RxDB and rxjs into a fresh project, then replicates a document
// between two RxDB databases through a real nats-server (NATS_SERVER_BIN, else as the tests find
// it), from ESM and from CommonJS, and checks that the binary loaded is the platform package's.
// With <platform> (e.g. darwin-x64), it first checks that this Node.js is that platform's. With
// --runtimes it also runs __test__/fixtures/runtime-smoke.mjs against the installed package under
// the pinned Bun and Deno (scripts/runtimes.cjs fetches them from npm; not on musl).
// No Rust and no devDependency needed: it runs on a runner, or in a node:*-alpine container, that
// has only Node.js, npm and the nats-server binary.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { hostPlatformDir } from './pack-local.mjs';
import { startNatsServer } from './nats-server-process.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { name, version, napi } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8')).packages;

function fail(message) {
  console.error(`install-smoke: ${message}`);
  process.exit(1);
}

/** Runs a command; npm is a .cmd file on Windows, which only a shell starts. */
function run(cmd, args, cwd) {
  const result = spawnSync(cmd, args, { cwd, encoding: 'utf8', shell: process.platform === 'win32' && cmd === 'npm', timeout: 10 * 60 * 1000 });
  if (result.status !== 0) fail(`${cmd} ${args.join(' ')} failed (${result.status ?? result.error}):\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

const withRuntimes = process.argv.includes('--runtimes');
const [dirArg, platformArg] = process.argv.slice(2).filter((a) => a !== '--runtimes');
const dir = path.resolve(dirArg || fail('usage: node scripts/install-smoke.mjs <tarball dir> [<platform>] [--runtimes]'));
const platform = hostPlatformDir();
if (platformArg && platformArg !== platform) fail(`this Node.js runs on ${platform}, not ${platformArg}`);
const main = path.join(dir, `${name}-${version}.tgz`);
const binaryPackage = `${name}-${platform}`;
const platformTarball = path.join(dir, `${binaryPackage}-${version}.tgz`);
for (const file of [main, platformTarball]) if (!fs.existsSync(file)) fail(`${file} is missing`);

const project = fs.mkdtempSync(path.join(os.tmpdir(), 'rxdb-nats-smoke-'));
fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'smoke', version: '1.0.0', private: true }));
const rxdb = `rxdb@${lock['node_modules/rxdb'].version}`;
const rxjs = `rxjs@${lock['node_modules/rxjs'].version}`;
console.log(`installing ${path.basename(main)}, ${path.basename(platformTarball)}, ${rxdb}, ${rxjs} into ${project}`);
run('npm', ['install', main, platformTarball, rxdb, rxjs, '--no-audit', '--no-fund'], project);
fs.cpSync(path.join(root, '__test__', 'fixtures', 'consumer'), project, { recursive: true });

const installed = fs.readdirSync(path.join(project, 'node_modules')).filter((n) => n.startsWith(`${name}-`));
if (installed.join() !== binaryPackage) fail(`installed platform packages ${installed.join(', ') || 'none'}, expected ${binaryPackage}`);

const server = await startNatsServer();
try {
  const expectedBinary = fs.realpathSync(path.join(project, 'node_modules', binaryPackage, `${napi.binaryName}.${platform}.node`));
  for (const program of ['replicate.mjs', 'replicate.cjs']) {
    const streamName = `smoke${program.endsWith('.mjs') ? 'esm' : 'cjs'}`;
    const out = run(process.execPath, [program, server.url, streamName], project);
    const { doc, loaded } = JSON.parse(out.trim().split('\n').pop());
    if (JSON.stringify(doc) !== JSON.stringify({ id: 'alice', name: `Alice via ${streamName}` })) fail(`${program}: the document did not cross: ${JSON.stringify(doc)}`);
    const binaries = loaded.filter((f) => f.endsWith('.node')).map((f) => fs.realpathSync(f));
    if (binaries.join() !== expectedBinary) fail(`${program} loaded ${binaries.join(', ') || 'no binary'}, expected ${expectedBinary}`);
    console.log(`${program}: replicated through ${server.url} on ${platform}, Node ${process.versions.node}, with ${path.relative(project, expectedBinary)}`);
  }
  if (withRuntimes) {
    const { RUNTIMES } = createRequire(import.meta.url)('./runtimes.cjs');
    fs.copyFileSync(path.join(root, '__test__', 'fixtures', 'runtime-smoke.mjs'), path.join(project, 'runtime-smoke.mjs'));
    for (const { name, version, command } of RUNTIMES) {
      const runtime = `${name} ${version}`;
      const [cmd, args] = command();
      const result = spawnSync(cmd, [...args, 'runtime-smoke.mjs', server.url, `smoke${name.toLowerCase()}`], {
        cwd: project, encoding: 'utf8', timeout: 2 * 60 * 1000, env: { ...process.env, RXDB_NATS_SMOKE_INSTALLED: '1' },
      });
      if (result.status !== 0 || !/smoke ok/.test(result.stdout)) fail(`${runtime}: exited with ${result.status ?? result.error}:\n${result.stdout}\n${result.stderr}`);
      console.log(`${runtime}: replicated both ways and exited after cancel(), on ${platform}`);
    }
  }
} finally {
  await server.destroy();
  fs.rmSync(project, { recursive: true, force: true });
}
