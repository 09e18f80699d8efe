// The compatibility run on the oldest supported server: Debian bookworm's nats-server 2.9.10
// (no batch direct get, older JetStream API): the Rust test of the batch direct get (it asserts
// "unsupported" before 2.11), then, unless `--rust`, the JS suite `nats-2.9` of
// scripts/test-js.mjs (the files it leaves out, and why, are listed there: NOT_ON_2_9).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { runSuites } from './test-js.mjs';

const require = createRequire(import.meta.url);
const { debianNatsServerBin } = require('./nats-server.cjs');

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = debianNatsServerBin();
const version = spawnSync(bin, ['--version']).stdout.toString().trim();
console.log(`compatibility run on ${version} (${bin})`);
const cargo = spawnSync('cargo', ['test', '--quiet', 'direct::'], { cwd: root, env: { ...process.env, NATS_SERVER_BIN: bin }, stdio: 'inherit' });
if (cargo.status !== 0) process.exit(cargo.status ?? 1);
if (!process.argv.includes('--rust')) process.exit((await runSuites(['--suite', 'nats-2.9', ...process.argv.slice(2).filter((a) => a !== '--rust')])) ? 0 : 1);
