// `npm run pack:local [-- <dir>]`: installable tarballs of rxdb-nats-native and of the platform
// package for this machine (carrying the .node file of `npm run build`), written to `dist/` or
// <dir>; what `napi prepublish` + `npm publish` would put on the registry, without publishing.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

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

function npmPack(dir, outDir) {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', outDir], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return path.join(outDir, JSON.parse(out)[0].filename);
}

/**
 * Packs both packages into `outDir`; returns `{ main, platform, platformName, platformDir }` (tarball
 * paths, the platform package's name and its folder under npm/). Fails when the addon for this machine is not built.
 */
export function packLocal(outDir = path.join(root, 'dist')) {
  const { napi } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const triple = hostPlatformDir();
  const platformDir = path.join(root, 'npm', triple);
  const binary = `${napi.binaryName}.${triple}.node`;
  if (!fs.existsSync(platformDir)) {
    throw new Error(`no npm/${triple} package: add its target to napi.targets in package.json and run npx napi create-npm-dirs`);
  }
  if (!fs.existsSync(path.join(root, binary))) {
    throw new Error(`${binary} is missing: run npm run build first`);
  }
  fs.mkdirSync(outDir, { recursive: true });
  // What `napi artifacts` does for a CI build: the .node file goes into its platform package.
  fs.copyFileSync(path.join(root, binary), path.join(platformDir, binary));
  const platformName = JSON.parse(fs.readFileSync(path.join(platformDir, 'package.json'), 'utf8')).name;
  return {
    main: npmPack(root, outDir),
    platform: npmPack(platformDir, outDir),
    platformName,
    platformDir: triple,
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = path.resolve(process.argv[2] || path.join(root, 'dist'));
  const packed = packLocal(outDir);
  console.log(`${packed.main}\n${packed.platform}`);
}
