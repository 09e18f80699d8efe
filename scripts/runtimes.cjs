'use strict';
/**
 * Bun and Deno, pinned, fetched once from the npm registry (the packages `bun` and `@deno/<platform>`)
 * into .cache/, as nats-server is: the smoke test runs the addon under both. Run directly
 * (`node scripts/runtimes.cjs`) it provisions them and prints their paths and versions.
 */
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const BUN_VERSION = '1.4.4';
const DENO_VERSION = '2.9.6';
const CACHE = path.join(__dirname, '..', '.cache', 'runtimes');

/** The npm package that carries the Deno binary for this machine. */
function denoPackage() {
  const arch = { x64: 'x64', arm64: 'arm64' }[process.arch];
  if (!arch) throw new Error(`no Deno package for ${process.arch}`);
  if (process.platform === 'linux') return `@deno/linux-${arch}-glibc`;
  if (process.platform === 'darwin') return `@deno/darwin-${arch}`;
  if (process.platform === 'win32') return `@deno/win32-${arch}`;
  throw new Error(`no Deno package for ${process.platform}`);
}

/** Installs `pkg@version` into its own folder under .cache/runtimes once; returns the folder. */
function installed(name, pkg, version) {
  const dir = path.join(CACHE, `${name}-${version}`);
  const done = path.join(dir, '.installed');
  if (!fs.existsSync(done)) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    // npm is a .cmd file on Windows, which only a shell starts.
    execFileSync('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--prefix', dir, `${pkg}@${version}`], {
      stdio: ['ignore', 'ignore', 'inherit'],
      shell: process.platform === 'win32',
    });
    fs.writeFileSync(done, `${pkg}@${version}\n`);
  }
  return dir;
}

function bunBin() {
  const dir = installed('bun', 'bun', BUN_VERSION);
  // The package's own binary (named bun.exe on every platform), not the .bin shim.
  return path.join(dir, 'node_modules', 'bun', 'bin', 'bun.exe');
}

function denoBin() {
  const pkg = denoPackage();
  const dir = installed('deno', pkg, DENO_VERSION);
  return path.join(dir, 'node_modules', ...pkg.split('/'), process.platform === 'win32' ? 'deno.exe' : 'deno');
}

/** How to run a script under each pinned runtime: `{ name, version, command(): [bin, args] }`. */
const RUNTIMES = [
  { name: 'Bun', version: BUN_VERSION, command: () => [bunBin(), []] },
  { name: 'Deno', version: DENO_VERSION, command: () => [denoBin(), ['run', '-A']] },
];

module.exports = { bunBin, denoBin, BUN_VERSION, DENO_VERSION, RUNTIMES };

if (require.main === module) {
  for (const bin of [bunBin(), denoBin()]) {
    console.log(`${bin} (${execFileSync(bin, ['--version']).toString().split('\n')[0].trim()})`);
  }
}
