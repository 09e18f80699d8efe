// The CommonJS entry: require() works and builds on RxDB's CommonJS build.
const { test } = require('node:test');
const assert = require('node:assert/strict');

test('require("rxdb-nats-native") gives replicateNats on RxDB\'s CommonJS build', () => {
  const lib = require('rxdb-nats-native');
  const { RxReplicationState } = require('rxdb/plugins/replication');
  assert.equal(typeof lib.replicateNats, 'function');
  assert.ok(lib.RxNatsReplicationState.prototype instanceof RxReplicationState);
  assert.equal(lib.subjectFor('app.people', 'alice'), 'app.people.alice');
});

test('the ESM entry builds on RxDB\'s ESM build', async () => {
  const lib = await import('rxdb-nats-native');
  const esm = await import('rxdb/plugins/replication');
  const cjs = require('rxdb/plugins/replication');
  assert.notEqual(esm.RxReplicationState, cjs.RxReplicationState, 'RxDB ESM and CJS builds are separate');
  assert.ok(lib.RxNatsReplicationState.prototype instanceof esm.RxReplicationState);
  assert.ok(!(lib.RxNatsReplicationState.prototype instanceof cjs.RxReplicationState));
});
