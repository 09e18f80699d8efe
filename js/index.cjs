'use strict';
// CommonJS entry: uses RxDB's CJS build.
const { createReplicateNats, RxNatsError, subjectFor, keyFor, compactStream, tenantPermissions } = require('./replicate.cjs');

const { replicateNats, RxNatsReplicationState } = createReplicateNats({
  rxdb: require('rxdb'),
  replication: require('rxdb/plugins/replication'),
  leaderElection: require('rxdb/plugins/leader-election'),
  rxjs: require('rxjs'),
});

module.exports = { replicateNats, RxNatsReplicationState, RxNatsError, subjectFor, keyFor, compactStream, tenantPermissions };
