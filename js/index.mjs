// ESM entry: uses RxDB's ESM build, so RxDB is not loaded twice next to an ESM application.
import { RxReplicationState, startReplicationOnLeaderShip } from 'rxdb/plugins/replication';
import { RxDBLeaderElectionPlugin } from 'rxdb/plugins/leader-election';
import { addRxPlugin } from 'rxdb';
import { Subject } from 'rxjs';
import glue from './replicate.cjs';

const { createReplicateNats, RxNatsError, subjectFor, compactStream } = glue;

export const { replicateNats, RxNatsReplicationState } = createReplicateNats({
  RxReplicationState,
  startReplicationOnLeaderShip,
  addRxPlugin,
  RxDBLeaderElectionPlugin,
  Subject,
});
export { RxNatsError, subjectFor, compactStream };
