// ESM entry: uses RxDB's ESM build, so RxDB is not loaded twice next to an ESM application.
import { RxReplicationState, startReplicationOnLeaderShip } from 'rxdb/plugins/replication';
import { RxDBLeaderElectionPlugin } from 'rxdb/plugins/leader-election';
import { addRxPlugin, RXDB_VERSION } from 'rxdb';
import { Subject } from 'rxjs';
import glue from './replicate.cjs';

const { createReplicateNats, RxNatsError, subjectFor, compactStream } = glue;

export const { replicateNats, RxNatsReplicationState } = createReplicateNats({
  RxReplicationState,
  startReplicationOnLeaderShip,
  addRxPlugin,
  RxDBLeaderElectionPlugin,
  Subject,
  RXDB_VERSION,
});
export { RxNatsError, subjectFor, compactStream };
