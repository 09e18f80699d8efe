// Consumer projects: rxdb-nats-native installed from its packed tarballs into a fresh temporary
// project with npm, offline, and no Rust toolchain on PATH, as a user of the published package
// would have it.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packLocal } from '../../scripts/pack-local.mjs';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The environment of a machine without Rust: PATH without any folder holding cargo or rustc,
 * no CARGO_HOME/RUSTUP_HOME, and nothing that points the loader at another binary. `node` stays
 * reachable through a folder of its own, in case it shared one with cargo.
 */
export function envWithoutRust(binDir) {
  const env = { ...process.env };
  for (const key of ['CARGO_HOME', 'RUSTUP_HOME', 'RUSTUP_TOOLCHAIN', 'NAPI_RS_NATIVE_LIBRARY_PATH', 'NODE_PATH', 'NODE_TEST_CONTEXT']) {
    delete env[key];
  }
  for (const key of Object.keys(env)) if (/^npm_(package|lifecycle)_/.test(key)) delete env[key];
  const hasRust = (dir) => ['cargo', 'rustc', 'cargo.exe', 'rustc.exe'].some((f) => fs.existsSync(path.join(dir, f)));
  fs.mkdirSync(binDir, { recursive: true });
  const node = path.join(binDir, path.basename(process.execPath));
  if (!fs.existsSync(node)) fs.symlinkSync(process.execPath, node);
  const npm = whichNpm();
  const dirs = (process.env.PATH || '').split(path.delimiter).filter((d) => d && !hasRust(d));
  env.PATH = [binDir, path.dirname(npm), ...dirs].filter((d, i, all) => !hasRust(d) && all.indexOf(d) === i).join(path.delimiter);
  return env;
}

/** The npm that runs this test (a folder with cargo in it cannot hide it). */
function whichNpm() {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const candidate = path.join(dir, process.platform === 'win32' ? 'npm.cmd' : 'npm');
    if (dir && fs.existsSync(candidate)) return candidate;
  }
  throw new Error('npm is not on PATH');
}

/**
 * The part of the repository's package-lock that installs `roots` ({ name: lock path }, e.g.
 * `{ rxdb: 'node_modules/rxdb-16' }`) at `node_modules/<name>`, with everything they need at the
 * same place as in the repository. npm installs from such a lock with `--offline`: it fetches
 * each tarball from its cache by integrity, where the repository's own `npm install` put it (that
 * install, from a lock, leaves no registry metadata in the cache for a plain `npm install rxdb`).
 */
function lockFor(roots, registry) {
  const source = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')).packages;
  const resolve = (from, name) => {
    for (let at = from; ; ) {
      const candidate = `${at ? `${at}/` : ''}node_modules/${name}`;
      if (source[candidate]) return candidate;
      if (!at) return null;
      const i = at.lastIndexOf('/node_modules/');
      at = i < 0 ? '' : at.slice(0, i);
    }
  };
  const target = (sourcePath) => {
    for (const [name, rootPath] of Object.entries(roots)) {
      if (sourcePath === rootPath || sourcePath.startsWith(`${rootPath}/`)) {
        return `node_modules/${name}${sourcePath.slice(rootPath.length)}`;
      }
    }
    return sourcePath;
  };
  const packages = {};
  const queue = Object.values(roots);
  while (queue.length > 0) {
    const sourcePath = queue.shift();
    const to = target(sourcePath);
    if (packages[to]) continue;
    const entry = { ...source[sourcePath] };
    if (!entry.integrity) throw new Error(`${sourcePath} in package-lock.json has no integrity`);
    // The repository's lock may omit registry URLs (omit-lockfile-registry-resolved); npm reads
    // a cached tarball only when it knows both its URL and its integrity.
    const realName = entry.name || sourcePath.slice(sourcePath.lastIndexOf('node_modules/') + 'node_modules/'.length);
    entry.resolved ||= `${registry.replace(/\/$/, '')}/${realName}/-/${realName.split('/').pop()}-${entry.version}.tgz`;
    for (const flag of ['dev', 'devOptional', 'peer', 'optional']) delete entry[flag];
    delete entry.name; // an npm alias (rxdb-16) is the real package here
    packages[to] = entry;
    const needs = { ...entry.dependencies, ...entry.optionalDependencies, ...entry.peerDependencies };
    for (const name of Object.keys(needs)) {
      const found = resolve(sourcePath, name);
      if (found) queue.push(found);
      else if (!(entry.optionalDependencies && name in entry.optionalDependencies) &&
        !(entry.peerDependenciesMeta && entry.peerDependenciesMeta[name]?.optional)) {
        throw new Error(`${name}, needed by ${sourcePath}, is not in package-lock.json`);
      }
    }
  }
  return packages;
}

/** The package.json inside a packed tarball (the published one: pack-local adds the optionalDependencies). */
export function packedManifest(tarball) {
  return JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' }));
}

/** The lock entry of a packed tarball, so that npm trusts the lock and resolves nothing. */
function tarballEntry(project, tarball) {
  const manifest = packedManifest(tarball);
  const entry = {
    version: manifest.version,
    resolved: `file:${path.relative(project, tarball).split(path.sep).join('/')}`,
    integrity: `sha512-${crypto.createHash('sha512').update(fs.readFileSync(tarball)).digest('base64')}`,
  };
  for (const key of ['license', 'cpu', 'os', 'libc', 'engines', 'optionalDependencies', 'peerDependencies']) {
    if (manifest[key] !== undefined) entry[key] = manifest[key];
  }
  return entry;
}

/**
 * A fresh project in a temporary folder with rxdb-nats-native and this machine's platform
 * package installed from tarballs packed now, plus `deps` ({ name: lock path in the repository })
 * from npm's cache. Returns `{ dir, env, packed, remove() }`; `env` has no Rust on PATH.
 */
export function installConsumer(deps = { rxdb: 'node_modules/rxdb', rxjs: 'node_modules/rxjs' }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rxdb-nats-consumer-'));
  const project = path.join(dir, 'project');
  fs.mkdirSync(project);
  const env = envWithoutRust(path.join(dir, 'bin'));
  const packed = packLocal(path.join(dir, 'tarballs'));
  const registry = execFileSync('npm', ['config', 'get', 'registry'], { cwd: project, env, encoding: 'utf8' }).trim();
  const lockPackages = lockFor(deps, registry);
  lockPackages['node_modules/rxdb-nats-native'] = tarballEntry(project, packed.main);
  lockPackages[`node_modules/${packed.platformName}`] = tarballEntry(project, packed.platform);
  const dependencies = {
    'rxdb-nats-native': `file:${packed.main}`,
    [packed.platformName]: `file:${packed.platform}`,
  };
  for (const name of Object.keys(deps)) dependencies[name] = lockPackages[`node_modules/${name}`].version;
  const pkg = { name: 'consumer', version: '1.0.0', private: true, dependencies };
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify(pkg, null, 2));
  fs.writeFileSync(
    path.join(project, 'package-lock.json'),
    JSON.stringify({ name: 'consumer', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': pkg, ...lockPackages } }, null, 2)
  );
  try {
    execFileSync('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: project,
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    throw new Error(
      `npm install --offline failed in ${project}; it takes ${Object.keys(deps).join(', ')} from npm's cache, ` +
        `where the repository's own npm install (with the same cache) puts them:\n${err.stderr}`
    );
  }
  return { dir: project, env, packed, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
