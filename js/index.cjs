'use strict';
// CommonJS entry: uses RxDB's CJS build.
const { RxReplicationState, startReplicationOnLeaderShip } = require('rxdb/plugins/replication');
const { RxDBLeaderElectionPlugin } = require('rxdb/plugins/leader-election');
const { addRxPlugin, RXDB_VERSION } = require('rxdb');
const { Subject } = require('rxjs');
const { createReplicateNats, RxNatsError, subjectFor, compactStream } = require('./replicate.cjs');

const { replicateNats, RxNatsReplicationState } = createReplicateNats({
  RxReplicationState,
  startReplicationOnLeaderShip,
  addRxPlugin,
  RxDBLeaderElectionPlugin,
  Subject,
  RXDB_VERSION,
});

module.exports = { replicateNats, RxNatsReplicationState, RxNatsError, subjectFor, compactStream };
