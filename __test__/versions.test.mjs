// Each suite of `npm test` (scripts/test-js.mjs) says what it runs on: this checks that it does,
// so a suite cannot quietly run on the wrong RxDB or nats-server. In the RxDB 16 suite the files
// run in a project that installed the packed package; there this must be the installed copy.
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { RXDB_VERSION } from 'rxdb';
import { natsServerVersion } from './harness/nats-server.mjs';

const require = createRequire(import.meta.url);
const { PINNED_VERSION } = require('../scripts/nats-server.cjs');

test('the suite runs on the RxDB it names', () => {
  const expected = process.env.RXDB_NATS_EXPECT_RXDB;
  if (expected) {
    assert.equal(RXDB_VERSION.split('.')[0], expected, `RxDB ${RXDB_VERSION}`);
  } else {
    // The repository's own suites: the RxDB of package.json's devDependencies.
    const wanted = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')).devDependencies.rxdb;
    assert.equal(RXDB_VERSION, wanted);
  }
});

test('the suite runs on the nats-server it names', () => {
  const version = natsServerVersion();
  const expected = process.env.RXDB_NATS_EXPECT_SERVER;
  if (expected) {
    assert.equal(version, expected);
  } else {
    // A nats-server of the developer's own ($NATS_SERVER_BIN or PATH): one we support.
    const [major, minor] = version.split('.').map(Number);
    assert.ok(major > 2 || (major === 2 && minor >= 9), `nats-server ${version} is older than 2.9 (pinned: ${PINNED_VERSION})`);
  }
});

test('rxdb-nats-native is the copy the suite means: the installed package or the repository', () => {
  const lib = fs.realpathSync(require.resolve('rxdb-nats-native'));
  const cwd = fs.realpathSync(process.cwd());
  if (process.env.RXDB_NATS_EXPECT_INSTALLED) {
    assert.ok(lib.startsWith(path.join(cwd, 'node_modules', 'rxdb-nats-native') + path.sep), `from the project's node_modules: ${lib}`);
  } else {
    assert.equal(lib, path.join(fs.realpathSync(new URL('..', import.meta.url)), 'js', 'index.cjs'));
  }
});
