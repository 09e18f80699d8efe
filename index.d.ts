/**
 * rxdb-nats-native: NATS JetStream replication for RxDB, with the replication loop in Rust.
 * A drop-in for `replicateNats()` from `rxdb/plugins/replication-nats`.
 */
import type {
  RxCollection,
  ReplicationPullOptions,
  ReplicationPushOptions,
  WithDeleted,
} from 'rxdb';
import type { RxReplicationState } from 'rxdb/plugins/replication';
import type { Observable } from 'rxjs';

/** The checkpoint: the stream sequence of the last message taken. */
export type NatsCheckpointType = {
  sequence: number;
};

/** TLS files, nats.js names. Inline PEM (`ca`, `cert`, `key`) is not supported: use files. */
export interface NatsTlsOptions {
  /** CA certificate(s) that sign the server certificate (PEM file). */
  caFile?: string;
  /** Client certificate for mutual TLS (PEM file); needs `keyFile`. */
  certFile?: string;
  /** Client key for mutual TLS (PEM file); needs `certFile`. */
  keyFile?: string;
}

/**
 * How to reach NATS: the nats.js `ConnectionOptions` names for what a server needs.
 * Times are in milliseconds. Unknown keys are an error.
 */
export interface NatsConnectionOptions {
  /** One URL or a list, e.g. `nats://127.0.0.1:4222` (the default). */
  servers?: string | string[];
  /** Connection name shown by the server. */
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** An nkey seed (`SU...`), what nats.js `nkeyAuthenticator` takes. */
  nkeySeed?: string;
  /** Path of a `.creds` file (JWT and nkey seed), what nats.js `credsAuthenticator` reads. */
  credsFile?: string;
  /** Connect timeout (default 20000). */
  timeout?: number;
  /** Reconnect attempts; -1 (the default) reconnects forever. */
  maxReconnectAttempts?: number;
  /** Wait between reconnect attempts. */
  reconnectTimeWait?: number;
  /** Keep trying the first connect instead of failing it. */
  waitOnFirstConnect?: boolean;
  /**
   * With `maxPingOut`: a link that sends nothing back for `pingInterval` × `maxPingOut` ms is
   * dead (a network partition closes no socket); it is reported on `error$` and the client
   * reconnects. Default 10000.
   */
  pingInterval?: number;
  /** How many ping intervals a link may stay silent before it is dead (default 2, as nats.js). */
  maxPingOut?: number;
  tls?: NatsTlsOptions;
  /**
   * Where replies are received (default `_INBOX`), as nats.js `inboxPrefix`. With
   * `tenant: true` it is set to the tenant's inbox; another value is an error.
   */
  inboxPrefix?: string;
}

/** Settings used when this library creates the stream; an existing stream is used as it is. */
export interface NatsStreamConfig {
  /** Replicas in a JetStream cluster (default 1). */
  replicas?: number;
  /** `'file'` (default) or `'memory'`. */
  storage?: 'file' | 'memory';
  /**
   * Let replicas answer reads: enables one-request conflict checks per push batch on
   * nats-server >= 2.11 (default false: the official plugin cannot open a stream whose config
   * differs from its own).
   */
  allowDirect?: boolean;
  /**
   * Revisions of each document the stream keeps (`max_msgs_per_subject`, like a KV bucket's
   * `history`): an integer >= 1; unlimited by default. The oldest go first; the newest revision
   * of every document, a deletion too, always stays.
   */
  maxMsgsPerSubject?: number;
  /**
   * Let deletions expire (nats-server >= 2.11): a deletion replaces the document's earlier
   * revisions and leaves the stream this many milliseconds later (an integer >= 1000, rounded up
   * to whole seconds), so no message of a deleted document stays. In the KV layout a deletion is
   * then a purge marker with that TTL. See "Deletions that leave the stream" in the README.
   */
  tombstoneTtl?: number;
  /**
   * The stream's subjects (default `[subjectPrefix + '.*']`, the official plugin's): one must
   * cover `<subjectPrefix>.*`. A stream shared by tenants: `['app.>']` for prefixes `app.<tenant>`.
   * Not with `kv`.
   */
  subjects?: string[];
}

/**
 * Where attachment data goes (see "Attachments" in the README). A collection with
 * `attachments: {}` in its schema replicates its attachments' content: small ones base64 in the
 * message, the others in a JetStream Object Store bucket, referenced by the message.
 */
export interface NatsAttachmentOptions {
  /**
   * The Object Store bucket for attachments that do not go in the message (default
   * `<streamName>_attachments`; letters, digits, `-` and `_`). Every replication of a stream
   * must use the same bucket.
   */
  bucket?: string;
  /**
   * Attachments up to this many bytes go in the message as base64, as long as the message stays
   * under the server's `max_payload` (and `maxDocumentBytes`); larger ones go to the bucket.
   * Default 262144 (256 KiB); 0 sends every attachment to the bucket.
   */
  inlineMaxBytes?: number;
}

/**
 * The KV layout: the documents are the entries of a NATS KV bucket (stream `KV_<bucket>`,
 * subjects `$KV.<bucket>.<key>`), so every NATS service reads and writes them with `kv.get`,
 * `kv.put`, `kv.delete` and `kv.watch`. Key = `keyFor(id)`, value = the document's JSON
 * without RxDB's fields; a deleted document is a KV delete marker.
 */
export interface NatsKvOptions {
  /** The bucket (letters, digits, `-` and `_`). */
  bucket: string;
  /** Revisions per key of a bucket this library creates (default 1, at most 64), as in KV. */
  history?: number;
  /** Create the bucket when it is missing (default true); false requires it to exist. */
  create?: boolean;
}

/** Where the documents are: a stream and its subjects (the official plugin's layout), or a KV bucket. */
export type NatsLayoutOptions =
  | { streamName: string; subjectPrefix: string; kv?: undefined }
  | { kv: NatsKvOptions; streamName?: undefined; subjectPrefix?: undefined };

/** What `removeUnreferencedAttachments()` did. */
export interface NatsAttachmentCleanup {
  /** Objects in the bucket before. */
  objects: number;
  /** Of those, objects the newest message of some document references (kept). */
  referenced: number;
  /** Objects removed. */
  removed: number;
  /** Their bytes. */
  removedBytes: number;
  /** Uploads that never finished (chunks without an object, e.g. after a crash), purged. */
  incompleteUploads: number;
}

export type NatsSyncPullOptions<RxDocType> = Omit<
  ReplicationPullOptions<RxDocType, NatsCheckpointType>,
  'handler' | 'stream$'
>;

export type NatsSyncPushOptions<RxDocType> = Omit<ReplicationPushOptions<RxDocType>, 'handler'>;

/** The options of `replicateNats()`, those of the official plugin. */
export interface NatsSyncOptions<RxDocType> {
  /**
   * The collection to replicate; its document type becomes the replication's. (`any` for the
   * static methods would make the whole intersection `any` and lose that type.)
   */
  collection: RxCollection<RxDocType, any, {}, any, any>;
  /** Identifies the replication, so RxDB resumes it from its checkpoint after a restart. */
  replicationIdentifier: string;
  /**
   * The JetStream stream; created with subjects `[subjectPrefix + '.*']` when missing. Required,
   * unless `kv` is given instead.
   */
  streamName?: string;
  /** Document `alice` lives on subject `<subjectPrefix>.alice`. Required, unless `kv` is given. */
  subjectPrefix?: string;
  /**
   * Replicate with a NATS KV bucket instead of `streamName` + `subjectPrefix` (see "KV layout" in
   * the README). Not an option of the official plugin.
   */
  kv?: NatsKvOptions;
  connection?: NatsConnectionOptions;
  /** Keep replicating changes as they happen (default true). */
  live?: boolean;
  pull?: NatsSyncPullOptions<RxDocType>;
  push?: NatsSyncPushOptions<RxDocType>;
  /**
   * Boolean field that marks deleted documents in the messages (default `_deleted`). With
   * another field, a message whose `_deleted` is a boolean is read by it (the official plugin
   * ignores this option and writes `_deleted`).
   */
  deletedField?: '_deleted' | string;
  /**
   * With a custom `deletedField`, also write `_deleted` (default true), the flag the official
   * plugin reads, so official-plugin clients sharing the stream see deletes. Not an option of
   * the official plugin.
   */
  officialDeletedFlag?: boolean;
  /** Wait after a failed request before retrying, in ms (default 5000). */
  retryTime?: number;
  /** Start at once (default true); otherwise call `start()`. */
  autoStart?: boolean;
  /** With a multi-instance database, replicate only in the leader (default true). */
  waitForLeadership?: boolean;
  toggleOnDocumentVisible?: boolean;
  /** Settings for a stream this library creates. */
  streamConfig?: NatsStreamConfig;
  /**
   * The user has `tenantPermissions()` for this `subjectPrefix` (or `kv.bucket`): receive on the
   * tenant's own inbox and make only the requests those permissions grant (see "Tenants" in the
   * README; default false). The tenant's stream must exist. Not an option of the official plugin.
   */
  tenant?: boolean;
  /**
   * Largest document in bytes of JSON (default: only the server's `max_payload` limits it).
   * Larger messages on the stream are skipped and reported (`NATS_DOCUMENT_TOO_LARGE`); larger
   * local documents are not pushed. Not an option of the official plugin.
   */
  maxDocumentBytes?: number;
  /** Where attachment data goes. Not an option of the official plugin. */
  attachments?: NatsAttachmentOptions;
}

/** What a replication has done since it was created; `replication.stats()` resolves it. */
export interface RxNatsReplicationStats {
  /**
   * Documents handed to RxDB by pulls and the live feed (newest revision per batch); a pull
   * reads ahead of RxDB's batches (at most two reads of up to 10,000 documents) and counts them
   * when read.
   */
  documentsPulled: number;
  /** Bytes of their JSON. */
  bytesPulled: number;
  /** Documents written to the stream. */
  documentsPushed: number;
  /** Bytes of their JSON. */
  bytesPushed: number;
  /** Pushed documents that met a different server state and went to the conflict handler. */
  conflicts: number;
  /** Local documents the server would not take (e.g. larger than max_payload), each on `error$`. */
  documentsRejected: number;
  /** Messages on the stream that are not valid documents: skipped, each reported once on `error$`. */
  malformedSkipped: number;
  /** Bytes of attachment content read: in the messages handed to RxDB, and objects fetched. */
  attachmentBytesPulled: number;
  /** Bytes of attachment content written: in the messages written, and objects uploaded. */
  attachmentBytesPushed: number;
  /** Times the NATS connection came back after a disconnect. */
  reconnects: number;
  /**
   * Times a pull found messages after its checkpoint removed unread (tombstones expired,
   * compacted or purged; stream limits) and the replication reconciled: local documents the
   * stream no longer holds were deleted through RxDB.
   */
  resyncs: number;
  /** The highest stream sequence read for RxDB (by a pull, up to two reads of at most 10,000 documents ahead of its batches). */
  checkpoint: number;
  /** The stream's last sequence now; `null` when the server could not be asked within 2 s. */
  streamLastSequence: number | null;
  /** Stream sequences not yet handed to RxDB (`streamLastSequence - checkpoint`); `null` without pull or server. */
  lag: number | null;
  /** Revisions of each document the stream keeps (its `max_msgs_per_subject`); `null` when unlimited or unknown. */
  maxMsgsPerSubject: number | null;
}

/** The replication state: RxDB's `RxReplicationState` with the NATS checkpoint type. */
export declare class RxNatsReplicationState<RxDocType> extends RxReplicationState<
  RxDocType,
  NatsCheckpointType
> {
  /** Counters and lag; never rejects (after `cancel()` the last counters, lag `null`). */
  stats(): Promise<RxNatsReplicationStats>;
  /**
   * Removes the attachment objects that the newest revision of no document in the stream
   * references and that are older than `olderThanMs` (default one hour: longer than any push
   * takes from upload to message), and the leftovers of uploads that never finished.
   * Rejects with an `RxNatsError`.
   */
  removeUnreferencedAttachments(options?: { olderThanMs?: number }): Promise<NatsAttachmentCleanup>;
  /**
   * One event per live batch handed to RxDB, while observed (nothing is timed otherwise): where
   * a live change spends its time before RxDB writes it. See "Observing a replication" in the README.
   */
  readonly liveTimings$: Observable<NatsLiveTiming>;
}

/**
 * The moments of one live batch on its way to RxDB, in milliseconds since the epoch
 * (`performance.timeOrigin + performance.now()`, sub-millisecond).
 */
export type NatsLiveTiming = {
  /** Documents in the batch. */
  documents: number;
  /** Its first message reached the native client. */
  receivedAt: number;
  /** Native code wrote it as JSON for the JavaScript thread. */
  sentAt: number;
  /** The JavaScript thread took it. */
  takenAt: number;
  /** Decoded (JSON, attachments, `pull.modifier`): handed to RxDB's `pull.stream$` now. */
  handedAt: number;
};

/** Starts replicating `options.collection` with a NATS JetStream stream (or a KV bucket: `kv`). */
export declare function replicateNats<RxDocType>(
  options: NatsSyncOptions<RxDocType> & NatsLayoutOptions
): RxNatsReplicationState<RxDocType>;

/** Stable error codes on `RxNatsError.code`. */
export type RxNatsErrorCode =
  | 'NATS_INVALID_OPTION'
  | 'NATS_CONNECT_FAILED'
  | 'NATS_AUTH_FAILED'
  | 'NATS_TLS_FAILED'
  | 'NATS_JETSTREAM_UNAVAILABLE'
  | 'NATS_STREAM_MISMATCH'
  | 'NATS_PERMISSION_DENIED'
  | 'NATS_MALFORMED_MESSAGE'
  | 'NATS_INVALID_DOCUMENT'
  | 'NATS_DOCUMENT_TOO_LARGE'
  /** `pull.modifier` or `push.modifier` threw for a document, which was skipped. */
  | 'NATS_MODIFIER_FAILED'
  | 'NATS_UNAVAILABLE'
  | 'NATS_CLOSED'
  /** An attachment's data is neither in the message nor in the Object Store (the document is skipped). */
  | 'NATS_ATTACHMENT_MISSING'
  /** An attachment's data does not match its size or SHA-256 (the document is skipped). */
  | 'NATS_ATTACHMENT_CORRUPT'
  /** The KV bucket of option `kv` does not exist and `kv.create` is false. */
  | 'NATS_BUCKET_NOT_FOUND'
  /**
   * The stream's own limits (`max_age`, `max_msgs`, `max_bytes`) removed messages this
   * replication had not read; it reconciled instead of skipping them (reported once).
   */
  | 'NATS_HISTORY_REMOVED'
  /** The NATS server is older than an option needs (the message names the version). */
  | 'NATS_UNSUPPORTED_SERVER'
  /**
   * The running RxDB lacks an internal the race guards rely on (named in the message, with the
   * RxDB version): replication goes on without them.
   */
  | 'NATS_RXDB_UNSUPPORTED'
  /** A bug in rxdb-nats-native's native code (a panic), caught: the message says where. */
  | 'NATS_INTERNAL'
  /** Thrown when the package loads and the platform package with the binary is missing. */
  | 'NATS_NATIVE_MISSING';

/** An error of rxdb-nats-native. Errors of pull/push handlers reach `error$` wrapped by RxDB. */
export declare class RxNatsError extends Error {
  readonly code: RxNatsErrorCode;
  /** The subject of the message at fault, if any. */
  readonly subject?: string;
  /** The stream sequence of the message at fault, if any. */
  readonly sequence?: number;
  /** The document at fault, if any. */
  readonly documentId?: string;
  /** The attachment (of `documentId`) at fault, if any. */
  readonly attachmentId?: string;
}

/** The subject that stores document `id` under `prefix` (see "Data layout" in the README). */
export declare function subjectFor(prefix: string, id: string): string;

/**
 * The KV key of document `id` in the KV layout: the id itself when it is a valid key that does
 * not start with `=`, else `=` + base64url of its UTF-8 bytes (reversible).
 */
export declare function keyFor(id: string): string;

/** The options of `compactStream()`. */
export interface NatsCompactOptions {
  /** The stream to compact. */
  streamName: string;
  connection?: NatsConnectionOptions;
  /** Revisions kept per document, an integer >= 1 (default 1). */
  maxMsgsPerSubject?: number;
  /**
   * Also set the stream's `max_msgs_per_subject`, so it stays bounded (default false). The
   * official plugin cannot open a stream whose config differs from its own: leave this off while
   * official-plugin clients use the stream.
   */
  limitStream?: boolean;
  /**
   * Also remove every tombstone (deleted document) older than this many milliseconds, 0: all,
   * with the earlier revisions of its document. Clients that had not read a removed tombstone
   * reconcile when they next pull (`stats().resyncs`). Not given: tombstones stay.
   */
  tombstonesOlderThan?: number;
  /** The `deletedField` of the replications of the stream (default `_deleted`). */
  deletedField?: string;
}

/** What `compactStream()` did. */
export interface NatsCompactResult {
  messagesBefore: number;
  messagesAfter: number;
  /** The stream's `max_msgs_per_subject` now; `null`: unlimited. */
  maxMsgsPerSubject: number | null;
  /** Tombstones removed by `tombstonesOlderThan`, each with the earlier revisions of its document. */
  tombstonesRemoved: number;
}

/**
 * Shrinks a stream that grew to the newest `maxMsgsPerSubject` revisions of each document (every
 * document and every deletion stays); with `limitStream`, bounds it there from now on.
 * Replications may keep running. Rejects with an `RxNatsError` (`NATS_INVALID_OPTION`,
 * `NATS_CONNECT_FAILED`, ...).
 */
export declare function compactStream(options: NatsCompactOptions): Promise<NatsCompactResult>;

/** A tenant: a prefix on a stream shared with other tenants, or a KV bucket of its own. */
export type NatsTenant =
  | {
      streamName: string;
      subjectPrefix: string;
      /** The tenant's own attachments bucket (its replications' `attachments.bucket`). */
      attachments?: { bucket: string };
    }
  | { kv: { bucket: string } };

/** NATS user permissions, as in a nats-server config `permissions` block. */
export interface NatsUserPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

/**
 * The permissions that let a replication with `tenant: true` replicate exactly this tenant's
 * documents (live, pull, push, conflicts, attachments) on nats-server >= 2.10, and read or write no other
 * tenant's (see "Tenants" in the README). Throws an `RxNatsError` (`NATS_INVALID_OPTION`).
 */
export declare function tenantPermissions(tenant: NatsTenant): NatsUserPermissions;

export type { WithDeleted };
