'use strict';
/**
 * Every RxDB internal rxdb-nats-native touches, in one place. The race guards (see
 * race-guards.cjs) work only if these exist as in RxDB 16 and 17; a future RxDB that renames
 * one would otherwise make them do nothing, silently, and writes could be lost to the races
 * they exist for. So each hook is checked when a replication starts, and a missing one is
 * reported on error$ as NATS_RXDB_UNSUPPORTED, naming the RxDB version and the hook.
 */

/**
 * The context in which RxDB's downstream asks the conflict handler whether a master state
 * equals the local document before writing it (replication-protocol/downstream.ts).
 */
const DOWNSTREAM_EQUALITY_CHECK = 'downstream-check-if-equal-1';
/** The other contexts of that family RxDB 16 and 17 use; an unknown one means a change. */
const KNOWN_DOWNSTREAM_CONTEXTS = new Set(['downstream-check-if-equal-0', DOWNSTREAM_EQUALITY_CHECK]);

/** RxDB's own fields of a stored document: not part of its content. */
function withoutRxdbFields(doc) {
  const { _meta, _rev, ...rest } = doc;
  return rest;
}

/** What a started replication must offer; each entry: [name, present?]. */
function hooksOf(state) {
  const internal = state.internalReplicationState;
  const input = internal && internal.input;
  const handler = input && input.conflictHandler;
  const storage = state.collection && state.collection.storageInstance;
  return [
    ['RxReplicationState.internalReplicationState', !!internal],
    ['internalReplicationState.input', !!input && typeof input === 'object'],
    [
      'internalReplicationState.input.conflictHandler (isEqual, resolve)',
      !!handler && typeof handler.isEqual === 'function' && typeof handler.resolve === 'function',
    ],
    ['collection.storageInstance.findDocumentsById', !!storage && typeof storage.findDocumentsById === 'function'],
  ];
}

/** The hooks missing in a started replication (empty when all are there). */
function missingHooks(state) {
  return hooksOf(state)
    .filter(([, present]) => !present)
    .map(([name]) => name);
}

/**
 * Lets `isStale(masterState)` veto RxDB's downstream writing a master state to the local
 * document: for a stale one, the equality check answers "equal", so nothing is written (the
 * newer state arrives on its own). `onUnknownContext(context)` hears of a downstream equality
 * context this module does not know (RxDB changed). Idempotent.
 */
function guardDownstream(state, isStale, onUnknownContext) {
  const input = state.internalReplicationState.input;
  const handler = input.conflictHandler;
  if (handler.natsGuarded) return;
  input.conflictHandler = {
    natsGuarded: true,
    isEqual(a, b, context) {
      if (context === DOWNSTREAM_EQUALITY_CHECK) {
        if (isStale(a)) return true;
      } else if (typeof context === 'string' && context.startsWith('downstream-check-if-equal') && !KNOWN_DOWNSTREAM_CONTEXTS.has(context)) {
        onUnknownContext(context);
      }
      return handler.isEqual(a, b, context);
    },
    resolve: (input, context) => handler.resolve(input, context),
  };
}

/** RxDB 16 takes push.waitBeforePersist but does not hand it to its protocol (RxDB 17 does). */
function applyWaitBeforePersist(state, waitBeforePersist) {
  const input = state.internalReplicationState.input;
  if (waitBeforePersist && !input.waitBeforePersist) input.waitBeforePersist = waitBeforePersist;
}

/** The local documents of `ids` as stored (deleted ones too). */
function localDocuments(collection, ids) {
  return collection.storageInstance.findDocumentsById(ids, true);
}

/** The data of a stored attachment. */
function storedAttachmentData(collection, documentId, attachmentId, digest) {
  return collection.storageInstance.getAttachmentData(documentId, attachmentId, digest);
}

module.exports = {
  missingHooks,
  guardDownstream,
  applyWaitBeforePersist,
  localDocuments,
  storedAttachmentData,
  withoutRxdbFields,
};
