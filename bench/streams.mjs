// What bench/scenario.mjs and the remote writer (bench/remote-writer.mjs) share: the documents'
// schema, the epoch clock both processes stamp with, and one RxDB database replicating streams
// bench0..bench<K-1> (subjects bench<k>.docs.*), one collection docs<k> each.
import { createRxDatabase } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { replicateNats as replicateNative } from 'rxdb-nats-native';
import { replicateNats as replicateOfficial } from 'rxdb/plugins/replication-nats';

export const schema = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 40 },
    name: { type: 'string' },
    age: { type: 'integer' },
    tags: { type: 'array', items: { type: 'string' } },
  },
  required: ['id', 'name', 'age', 'tags'],
};

/** Milliseconds since the epoch, sub-millisecond: comparable across processes of one machine. */
export const epochNow = () => performance.timeOrigin + performance.now();

/**
 * A database `name` with K collections docs<k>, each replicated live both ways with stream
 * bench<k> by `impl` (native or official). Resolves { db, replications }.
 */
export async function replicatedStreams({ name, impl, url, K, batchSize }) {
  const db = await createRxDatabase({ name, storage: getRxStorageMemory(), multiInstance: false });
  const collections = {};
  for (let k = 0; k < K; k++) collections[`docs${k}`] = { schema };
  await db.addCollections(collections);
  const replicateNats = impl === 'native' ? replicateNative : replicateOfficial;
  const replications = [];
  for (let k = 0; k < K; k++) {
    replications.push(
      replicateNats({
        collection: db[`docs${k}`], replicationIdentifier: `${name}-${k}`, streamName: `bench${k}`, subjectPrefix: `bench${k}.docs`,
        connection: impl === 'official' ? { servers: url, maxReconnectAttempts: 0 } : { servers: url },
        pull: { batchSize }, push: { batchSize }, live: true, retryTime: 1000,
      })
    );
  }
  return { db, replications };
}
