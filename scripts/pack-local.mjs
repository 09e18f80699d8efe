// `npm run pack:local -- [--cross | --all] [<dir>]`: the tarballs a release publishes, written to
// `dist/` or <dir>, without publishing:
//   rxdb-nats-native-<version>.tgz  the main package, packed from a staged copy whose package.json
//                                   lists every platform package as an optional dependency (what
//                                   `napi prepublish` adds; the repository's package.json has none,
//                                   so that `npm ci` works from its lock file)
//   and platform packages (rxdb-nats-native-<platform>-<version>.tgz), each with its .node file:
//   (default)  this machine's, with the binary of `npm run build`;
//   --cross    the four Linux ones, built now with zig as the release workflow builds them (glibc
//              2.17 and musl; scripts/cross-build.mjs), each checked by its ELF headers;
//   --all      every target in napi.targets, from the .node files in the repository root (where
//              the release workflow downloads the binaries its build jobs made).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkElf, describeElf } from './elf.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));

/** The npm/<dir> of this machine's platform package, as `napi create-npm-dirs` names them. */
export function hostPlatformDir() {
  const { platform, arch } = process;
  let abi = '';
  if (platform === 'linux') {
    const report = process.report.getReport();
    abi = report.header && report.header.glibcVersionRuntime ? '-gnu' : '-musl';
  } else if (platform === 'win32') {
    abi = '-msvc';
  }
  return `${platform}-${arch}${abi}`;
}

/** Every platform package: `{ dir, name }` per folder under npm/ (one per napi.targets entry). */
export function platformPackages() {
  const { name, napi } = readJson(path.join(root, 'package.json'));
  const dirs = fs.readdirSync(path.join(root, 'npm')).filter((d) => fs.existsSync(path.join(root, 'npm', d, 'package.json'))).sort();
  if (dirs.length !== napi.targets.length) {
    throw new Error(`npm/ has ${dirs.length} platform packages for ${napi.targets.length} napi.targets: run npx napi create-npm-dirs`);
  }
  return dirs.map((dir) => {
    const manifest = readJson(path.join(root, 'npm', dir, 'package.json'));
    if (manifest.name !== `${name}-${dir}`) throw new Error(`npm/${dir}/package.json is named ${manifest.name}, not ${name}-${dir}`);
    return { dir, name: manifest.name };
  });
}

function npmPack(dir, outDir) {
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', outDir], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return path.join(outDir, JSON.parse(out)[0].filename);
}

/** The main package as published: the files `npm pack` takes, package.json with the optional dependencies added. */
function packMain(outDir, stage) {
  const listing = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const { path: file } of JSON.parse(listing)[0].files) {
    fs.mkdirSync(path.dirname(path.join(stage, file)), { recursive: true });
    fs.copyFileSync(path.join(root, file), path.join(stage, file));
  }
  const manifest = readJson(path.join(root, 'package.json'));
  manifest.optionalDependencies = Object.fromEntries(platformPackages().map(({ name }) => [name, manifest.version]));
  fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return npmPack(stage, outDir);
}

/** One platform package with its binary (and the LICENSE), staged so that npm/<dir> keeps no build output. */
function packPlatform(dir, binary, outDir, stage) {
  fs.mkdirSync(stage);
  for (const file of fs.readdirSync(path.join(root, 'npm', dir))) fs.copyFileSync(path.join(root, 'npm', dir, file), path.join(stage, file));
  fs.copyFileSync(path.join(root, 'LICENSE'), path.join(stage, 'LICENSE'));
  const { main } = readJson(path.join(stage, 'package.json'));
  if (path.basename(binary) !== main) throw new Error(`npm/${dir} expects ${main}, got ${binary}`);
  fs.copyFileSync(binary, path.join(stage, main));
  return npmPack(stage, outDir);
}

/**
 * Packs the main package and the platform packages `dirs` (default: this machine's) into `outDir`,
 * taking each binary from the repository root. Linux binaries must pass the ELF check. Returns
 * `{ main, platforms: [{ dir, name, tarball, binary }] }` and, for the first platform, the fields
 * `platform` (tarball), `platformName` and `platformDir`.
 */
export function packLocal(outDir = path.join(root, 'dist'), dirs = [hostPlatformDir()]) {
  const { napi } = readJson(path.join(root, 'package.json'));
  const known = new Map(platformPackages().map((p) => [p.dir, p]));
  const chosen = dirs.map((dir) => {
    if (!known.has(dir)) throw new Error(`no npm/${dir} package: add its target to napi.targets in package.json and run npx napi create-npm-dirs`);
    const binary = path.join(root, `${napi.binaryName}.${dir}.node`);
    if (!fs.existsSync(binary)) {
      throw new Error(`${path.basename(binary)} is missing: run npm run build${dir === hostPlatformDir() ? '' : ` (or npm run pack:local -- --cross for Linux)`} first`);
    }
    if (dir.startsWith('linux-')) checkElf(binary, dir);
    return { ...known.get(dir), binary };
  });
  fs.mkdirSync(outDir, { recursive: true });
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'rxdb-nats-pack-'));
  try {
    const main = packMain(outDir, path.join(stage, 'main'));
    const platforms = chosen.map((p) => ({ ...p, tarball: packPlatform(p.dir, p.binary, outDir, path.join(stage, p.dir)) }));
    return { main, platforms, platform: platforms[0]?.tarball, platformName: platforms[0]?.name, platformDir: platforms[0]?.dir };
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

/** The four Linux platform packages, each built now through zig as the release workflow builds them. */
async function packCross(outDir) {
  const { ensureDeps } = await import('./deps.mjs');
  const { crossBuild, LINUX_TARGETS } = await import('./cross-build.mjs');
  ensureDeps();
  const timings = [];
  for (const dir of Object.keys(LINUX_TARGETS)) {
    const started = Date.now();
    crossBuild(dir);
    timings.push(`${dir} ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  console.error(`build times: ${timings.join(', ')}`);
  return packLocal(outDir, Object.keys(LINUX_TARGETS));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const mode = args.find((a) => a.startsWith('--'));
  const dirArg = args.find((a) => !a.startsWith('--'));
  if (mode && !['--cross', '--all'].includes(mode)) {
    console.error('usage: npm run pack:local -- [--cross | --all] [<dir>]');
    process.exit(2);
  }
  const outDir = path.resolve(dirArg || path.join(root, 'dist'));
  let packed;
  if (mode === '--cross') packed = await packCross(outDir);
  else if (mode === '--all') packed = packLocal(outDir, platformPackages().map((p) => p.dir));
  else packed = packLocal(outDir);
  for (const p of packed.platforms) if (p.dir.startsWith('linux-')) console.error(describeElf(checkElf(p.binary, p.dir)));
  console.log([packed.main, ...packed.platforms.map((p) => p.tarball)].join('\n'));
}
