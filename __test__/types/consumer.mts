// A TypeScript ESM consumer: compiles under `tsc --strict` exactly when the public types are
// right. Each `@ts-expect-error` marks a mistake that must stay a type error.
import { createRxDatabase, type RxCollection } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import type { RxReplicationState } from 'rxdb/plugins/replication';
import {
  replicateNats,
  subjectFor,
  keyFor,
  RxNatsError,
  RxNatsReplicationState,
  type NatsCheckpointType,
  type NatsSyncOptions,
  type RxNatsErrorCode,
} from 'rxdb-nats-native';

type Person = { id: string; name: string; age?: number };
type Collections = { people: RxCollection<Person> };

const db = await createRxDatabase<Collections>({ name: 'types', storage: getRxStorageMemory() });
await db.addCollections({
  people: {
    schema: {
      version: 0,
      primaryKey: 'id',
      type: 'object',
      properties: { id: { type: 'string', maxLength: 100 }, name: { type: 'string' }, age: { type: 'integer' } },
      required: ['id', 'name'],
    },
  },
});

const base = {
  collection: db.people,
  replicationIdentifier: 'people-nats',
  streamName: 'people',
  subjectPrefix: 'app.people',
};

// The document type flows from the collection to the replication state and its observables.
const replication: RxReplicationState<Person, NatsCheckpointType> = replicateNats({
  ...base,
  connection: { servers: ['nats://127.0.0.1:4222'], name: 'app', user: 'u', pass: 'p', tls: { caFile: 'ca.pem' } },
  live: true,
  pull: { batchSize: 100, modifier: (doc) => ({ ...doc, name: doc.name.trim() }) },
  push: { batchSize: 50, modifier: (doc) => doc, waitBeforePersist: () => Promise.resolve() },
  retryTime: 1000,
  streamConfig: { replicas: 1, storage: 'memory', allowDirect: true },
  attachments: { bucket: 'people-files', inlineMaxBytes: 64 * 1024 },
});
const natsState: RxNatsReplicationState<Person> = replication as RxNatsReplicationState<Person>;
replication.received$.subscribe((doc) => {
  const name: string = doc.name;
  const deleted: boolean = doc._deleted;
  // @ts-expect-error Person has no email
  doc.email;
  void [name, deleted];
});
replication.sent$.subscribe((doc) => doc.age?.toFixed());
replication.error$.subscribe((err) => {
  const inner: unknown = err instanceof RxNatsError ? err : err.parameters?.errors?.[0];
  if (inner instanceof RxNatsError) {
    const code: RxNatsErrorCode = inner.code;
    const where: string | undefined = inner.subject ?? inner.documentId ?? inner.attachmentId;
    // @ts-expect-error not an error code of rxdb-nats-native
    if (inner.code === 'NATS_NO_SUCH_CODE') void 0;
    void [code, where];
  }
});
await replication.awaitInitialReplication();
await natsState.cancel();
const subject: string = subjectFor('app.people', 'a.b');
const cleanup = await natsState.removeUnreferencedAttachments({ olderThanMs: 0 });
const removed: number = cleanup.removed + cleanup.removedBytes + cleanup.incompleteUploads;
const attachmentBytes: number = (await natsState.stats()).attachmentBytesPulled;
natsState.liveTimings$.subscribe((t) => {
  const inNativeCode: number = t.sentAt - t.receivedAt + (t.handedAt - t.takenAt) / t.documents;
});
// @ts-expect-error olderThanMs is a number of milliseconds
natsState.removeUnreferencedAttachments({ olderThanMs: '1h' });

// @ts-expect-error the state of another document type
const other: RxReplicationState<{ sku: number }, NatsCheckpointType> = replicateNats(base);

// The KV layout: a bucket instead of a stream.
const kvState: RxReplicationState<Person, NatsCheckpointType> = replicateNats({
  collection: db.people,
  replicationIdentifier: 'people-kv',
  kv: { bucket: 'people', history: 5, create: false },
  push: {},
});
const key: string = keyFor('a b');
void [kvState, key];
// @ts-expect-error kv replaces streamName and subjectPrefix
replicateNats({ ...base, kv: { bucket: 'people' } });
// @ts-expect-error a stream needs its subjectPrefix
replicateNats({ collection: db.people, replicationIdentifier: 'x', streamName: 'people' });
// @ts-expect-error kv.history is a number of revisions
replicateNats({ collection: db.people, replicationIdentifier: 'x', kv: { bucket: 'people', history: '5' } });
// @ts-expect-error unknown option
replicateNats({ ...base, subjects: ['x'] });
// @ts-expect-error unknown connection option (nats.js authenticators are not supported)
replicateNats({ ...base, connection: { servers: 'nats://127.0.0.1:4222', authenticator: () => undefined } });
// @ts-expect-error streamName must be a string
replicateNats({ ...base, streamName: 42 });
// @ts-expect-error pull.batchSize must be a number
replicateNats({ ...base, pull: { batchSize: '100' } });
// @ts-expect-error attachments.inlineMaxBytes is a number of bytes
replicateNats({ ...base, attachments: { inlineMaxBytes: '256k' } });
// @ts-expect-error unknown attachments option
replicateNats({ ...base, attachments: { bukket: 'files' } });
// @ts-expect-error a storage JetStream does not have
replicateNats({ ...base, streamConfig: { storage: 'disk' } });
// @ts-expect-error subjectPrefix is required
replicateNats({ collection: db.people, replicationIdentifier: 'x', streamName: 'people' });
// @ts-expect-error the push modifier gets a Person, which has no sku
replicateNats({ ...base, push: { modifier: (doc) => doc.sku } });
// @ts-expect-error the pull modifier must return a Person
replicateNats({ ...base, pull: { modifier: () => ({ sku: 1 }) } });

const typedOptions: NatsSyncOptions<Person> = base;
void [subject, other, typedOptions, removed, attachmentBytes];
