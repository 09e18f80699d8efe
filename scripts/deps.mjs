// `node scripts/deps.mjs`: installs the dependencies with `npm ci` (exactly package-lock.json),
// unless node_modules already holds an install of this very lock file. `npm test` and `npm run
// demo` start with it, so a clean clone installs what the lock says and a developer's repeated
// `npm test` does not reinstall every time.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Written after a successful `npm ci`: the lock's hash and the Node.js major it was installed with. */
const STAMP = path.join(root, 'node_modules', '.rxdb-nats-native-ci-stamp');

function wanted() {
  const lock = crypto.createHash('sha256').update(fs.readFileSync(path.join(root, 'package-lock.json'))).digest('hex');
  return `${lock} node${process.versions.node.split('.')[0]}\n`;
}

/** Runs `npm ci` when node_modules is missing or was installed from another lock; returns whether it did. */
export function ensureDeps() {
  const stamp = wanted();
  let found = null;
  try {
    found = fs.readFileSync(STAMP, 'utf8');
  } catch {}
  if (found === stamp) return false;
  console.log(found === null ? 'npm ci: no install of package-lock.json yet' : 'npm ci: package-lock.json changed since the last install');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  fs.writeFileSync(STAMP, stamp);
  return true;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (!ensureDeps()) console.log('node_modules matches package-lock.json (npm ci skipped)');
}
