// ESM entry: uses RxDB's ESM build, so RxDB is not loaded twice next to an ESM application.
import * as rxdb from 'rxdb';
import * as replication from 'rxdb/plugins/replication';
import * as leaderElection from 'rxdb/plugins/leader-election';
import * as rxjs from 'rxjs';
import glue from './replicate.cjs';

const { createReplicateNats, RxNatsError, subjectFor, keyFor, compactStream, tenantPermissions } = glue;

export const { replicateNats, RxNatsReplicationState } = createReplicateNats({ rxdb, replication, leaderElection, rxjs });
export { RxNatsError, subjectFor, keyFor, compactStream, tenantPermissions };
