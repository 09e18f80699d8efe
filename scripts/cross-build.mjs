// Release builds of the Linux platform packages' binaries with `napi build --cross-compile`, which
// links through cargo-zigbuild and zig (pinned, from PyPI, in .cache/: scripts/py-tools.mjs); the
// Rust target comes from `rustup target add`. Each writes <binary>.<platform>.node to the repository
// root, where `napi build` puts the host's, and is checked by its ELF headers (scripts/elf.mjs).
// glibc builds ask zig for glibc 2.17, so they load on every glibc distribution Node 20 runs on.
// `node scripts/cross-build.mjs <platform>...` (e.g. linux-arm64-musl) builds those.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkElf, describeElf } from './elf.mjs';
import { pyTool } from './py-tools.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The `--target` of each Linux platform package (cargo-zigbuild reads the glibc version after the dot). */
export const LINUX_TARGETS = {
  'linux-x64-gnu': 'x86_64-unknown-linux-gnu.2.17',
  'linux-x64-musl': 'x86_64-unknown-linux-musl',
  'linux-arm64-gnu': 'aarch64-unknown-linux-gnu.2.17',
  'linux-arm64-musl': 'aarch64-unknown-linux-musl',
};

function binaryName() {
  return JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).napi.binaryName;
}

/** `rustup target add` for the Rust targets not installed yet (a no-op without rustup: cargo then says what is missing). */
export function addRustTargets(triples) {
  let installed;
  try {
    installed = execFileSync('rustup', ['target', 'list', '--installed'], { encoding: 'utf8' }).split('\n');
  } catch {
    return;
  }
  const missing = [...new Set(triples.map((t) => t.split('.')[0]))].filter((t) => !installed.includes(t));
  if (missing.length) execFileSync('rustup', ['target', 'add', ...missing], { stdio: 'inherit' });
}

/** Builds the binary of one Linux platform package; returns its path after checking its ELF headers. */
export function crossBuild(platform) {
  const target = LINUX_TARGETS[platform];
  if (!target) throw new Error(`no cross build for ${platform}: one of ${Object.keys(LINUX_TARGETS).join(', ')}`);
  addRustTargets([target]);
  const { env } = pyTool('zig');
  const started = Date.now();
  // --no-js and a throwaway .d.ts: the committed native.js/native.d.ts are the host build's.
  execFileSync(
    'npx',
    ['napi', 'build', '--platform', '--release', '--target', target, '--cross-compile', '--no-js',
      '--dts', path.join('target', `napi-cross-${platform}.d.ts`)],
    { cwd: root, env, stdio: 'inherit' }
  );
  const file = path.join(root, `${binaryName()}.${platform}.node`);
  if (!fs.existsSync(file)) throw new Error(`napi build --target ${target} did not write ${file}`);
  console.error(`${platform}: built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  console.error(describeElf(checkElf(file, platform)));
  return file;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const platforms = process.argv.slice(2);
  if (!platforms.length) {
    console.error(`usage: node scripts/cross-build.mjs <platform>... (${Object.keys(LINUX_TARGETS).join(', ')})`);
    process.exit(2);
  }
  for (const platform of platforms) crossBuild(platform);
}
