'use strict';
/**
 * The RxDB glue: plugs the native handlers into RxDB's replication. It is written once and
 * handed RxDB's exports by index.cjs (RxDB's CJS build) or index.mjs (RxDB's ESM build), so a
 * process never loads two copies of RxDB.
 */
const native = require('./native.cjs');

/** An error of rxdb-nats-native; `code` is stable (see the README's error table). */
class RxNatsError extends Error {
  constructor(info) {
    super(info.message);
    this.name = 'RxNatsError';
    this.code = info.code;
    if (info.subject !== undefined) this.subject = info.subject;
    if (info.sequence !== undefined) this.sequence = info.sequence;
    if (info.documentId !== undefined) this.documentId = info.documentId;
  }
}

function invalidOption(message) {
  return new RxNatsError({ code: 'NATS_INVALID_OPTION', message });
}

/** Parses a native result `{ok}` / `{error}`; an error becomes a thrown RxNatsError. */
function unwrap(json) {
  const result = JSON.parse(json);
  if (result.error) throw new RxNatsError(result.error);
  return result.ok;
}

const TOP_LEVEL_OPTIONS = {
  collection: 'object',
  replicationIdentifier: 'string',
  streamName: 'string',
  subjectPrefix: 'string',
  connection: 'object',
  live: 'boolean',
  pull: 'object',
  push: 'object',
  deletedField: 'string',
  retryTime: 'number',
  autoStart: 'boolean',
  waitForLeadership: 'boolean',
  toggleOnDocumentVisible: 'boolean',
  streamConfig: 'object',
  maxDocumentBytes: 'number',
};
const PULL_OPTIONS = { batchSize: 'number', modifier: 'function', initialCheckpoint: 'any' };
const PUSH_OPTIONS = {
  batchSize: 'number',
  modifier: 'function',
  initialCheckpoint: 'any',
  waitBeforePersist: 'function',
};

function checkKeys(object, known, where) {
  for (const [key, value] of Object.entries(object)) {
    const type = known[key];
    if (!type) {
      throw invalidOption(
        `unknown option ${where}${key}: replicateNats() takes ${Object.keys(known).join(', ')}`
      );
    }
    if (value === undefined || type === 'any') continue;
    if (type === 'object' ? value === null || typeof value !== 'object' : typeof value !== type) {
      throw invalidOption(`option ${where}${key} must be a ${type}, got ${value === null ? 'null' : typeof value}`);
    }
  }
}

function checkBatchSize(options, where) {
  const size = options && options.batchSize;
  if (size !== undefined && !(Number.isInteger(size) && size >= 1)) {
    throw invalidOption(`option ${where}.batchSize must be a positive integer, got ${String(size)}`);
  }
}

/** Validates every option now, so mistakes fail at replicateNats() time, naming the option. */
function validate(options) {
  if (!options || typeof options !== 'object') throw invalidOption('replicateNats() needs an options object');
  checkKeys(options, TOP_LEVEL_OPTIONS, '');
  for (const required of ['collection', 'replicationIdentifier', 'streamName', 'subjectPrefix']) {
    if (options[required] === undefined) throw invalidOption(`option ${required} is required`);
  }
  if (!options.collection.schema || typeof options.collection.schema.primaryPath !== 'string') {
    throw invalidOption('option collection must be an RxCollection');
  }
  if (options.replicationIdentifier === '') throw invalidOption('option replicationIdentifier must not be empty');
  if (options.retryTime !== undefined && !(options.retryTime >= 0)) {
    throw invalidOption('option retryTime must be a number of milliseconds >= 0');
  }
  if (options.pull) checkKeys(options.pull, PULL_OPTIONS, 'pull.');
  if (options.push) checkKeys(options.push, PUSH_OPTIONS, 'push.');
  checkBatchSize(options.pull, 'pull');
  checkBatchSize(options.push, 'push');
  for (const [key, value] of Object.entries(options.connection || {})) {
    // JSON would drop these silently; nats.js authenticators have options of their own here.
    if (typeof value === 'function') {
      throw invalidOption(
        `option connection.${key} is a function, which rxdb-nats-native does not support: ` +
          'use connection.user/pass, token, nkeySeed or credsFile'
      );
    }
  }
  const nativeOptions = JSON.stringify({
    streamName: options.streamName,
    subjectPrefix: options.subjectPrefix,
    primaryPath: options.collection.schema.primaryPath,
    deletedField: options.deletedField === undefined ? '_deleted' : options.deletedField,
    connection: options.connection || {},
    streamConfig: options.streamConfig || {},
    maxDocumentBytes: options.maxDocumentBytes,
    collectionSchema: options.collection.schema.jsonSchema,
  });
  const problem = native.validateOptions(nativeOptions);
  if (problem) throw new RxNatsError(JSON.parse(problem));
  return nativeOptions;
}

/**
 * Builds `replicateNats` and `RxNatsReplicationState` on one RxDB build.
 * @param rx RxDB's `RxReplicationState`, `startReplicationOnLeaderShip`, `addRxPlugin`,
 *   `RxDBLeaderElectionPlugin` and rxjs `Subject`, all from the same module system.
 */
/** What a replication state keeps of its own, out of RxDB's way. */
const internals = new WeakMap();

function createReplicateNats(rx) {
  class RxNatsReplicationState extends rx.RxReplicationState {
    /** Counters and lag (see RxNatsReplicationStats in index.d.ts). */
    async stats() {
      const own = internals.get(this);
      const stats = JSON.parse(await own.native.stats());
      stats.conflicts = own.conflicts;
      if (!own.pulls) stats.lag = null;
      return stats;
    }
  }

  function replicateNats(options) {
    const nativeOptions = validate(options);
    const collection = options.collection;
    const primaryPath = collection.schema.primaryPath;
    const deletedField = options.deletedField === undefined ? '_deleted' : options.deletedField;
    const live = options.live === undefined ? true : options.live;
    const retryTime = options.retryTime === undefined ? 5000 : options.retryTime;
    const waitForLeadership = options.waitForLeadership === undefined ? true : options.waitForLeadership;
    rx.addRxPlugin(rx.RxDBLeaderElectionPlugin);

    const nat = new native.NativeReplication(nativeOptions, retryTime);
    const pullStream$ = new rx.Subject();
    let state;

    const emitError = (info) => {
      if (state && !state.isStopped()) state.subjects.error.next(new RxNatsError(info));
    };
    const reportSkipped = (skipped) => skipped.forEach(emitError);

    // RxDB compares documents in its own format: `_deleted` as a boolean.
    const toRxFormat = (doc) => {
      const copy = Object.assign({}, doc);
      if (deletedField !== '_deleted') {
        copy._deleted = !!copy[deletedField];
        delete copy[deletedField];
      } else {
        copy._deleted = !!copy._deleted;
      }
      return copy;
    };

    let pull;
    if (options.pull) {
      pull = {
        async handler(lastCheckpoint, batchSize) {
          const result = unwrap(await nat.pull(lastCheckpoint ? lastCheckpoint.sequence : 0, batchSize));
          reportSkipped(result.skipped);
          return { documents: result.documents, checkpoint: { sequence: result.checkpoint } };
        },
        batchSize: options.pull.batchSize,
        modifier: options.pull.modifier,
        initialCheckpoint: options.pull.initialCheckpoint,
        stream$: pullStream$.asObservable(),
      };
    }

    let push;
    if (options.push) {
      push = {
        async handler(rows) {
          const ids = rows.map((row) => row.newDocumentState[primaryPath]);
          // Only updates need the server state first. A create (no assumed master state) is
          // published expecting the subject to be empty: if it is not, the server rejects it
          // as a conflict and the state is read then, so the outcome is the same.
          const updates = [];
          rows.forEach((row, i) => row.assumedMasterState && updates.push(i));
          const current = new Array(rows.length).fill(null);
          if (updates.length > 0) {
            const states = unwrap(await nat.readCurrent(updates.map((i) => ids[i])));
            updates.forEach((i, k) => (current[i] = states[k]));
          }
          const conflicts = [];
          const write = { ids: [], bodies: [], expected: [] };
          rows.forEach((row, i) => {
            const server = current[i];
            if (row.assumedMasterState && server && server.document) {
              const same = collection.conflictHandler.isEqual(
                toRxFormat(server.document),
                toRxFormat(row.assumedMasterState),
                'replication-nats-push'
              );
              if (!same) {
                conflicts.push(server.document);
                return;
              }
            }
            // Expect the sequence the state was read at (0: must not exist); a broken message
            // there may be replaced.
            write.ids.push(ids[i]);
            write.bodies.push(JSON.stringify(row.newDocumentState));
            write.expected.push(server ? server.sequence : 0);
          });
          // A create can meet a message that is not a valid document (another writer's garbage):
          // it conflicts, and the write is retried once expecting that message's sequence.
          for (let round = 0; round < 2 && write.ids.length > 0; round++) {
            const outcomes = unwrap(await nat.publish(write.ids, write.bodies, write.expected));
            const again = { ids: [], bodies: [], expected: [] };
            outcomes.forEach((outcome, j) => {
              if (outcome.rejected) {
                emitError(outcome.rejected);
              } else if ('conflict' in outcome) {
                const state = outcome.conflict;
                if (state && state.document) {
                  conflicts.push(state.document);
                } else if (state && round === 0) {
                  again.ids.push(write.ids[j]);
                  again.bodies.push(write.bodies[j]);
                  again.expected.push(state.sequence);
                } else {
                  throw new RxNatsError({
                    code: 'NATS_UNAVAILABLE',
                    message: `document ${JSON.stringify(write.ids[j])} conflicted but its server state could not be read; the push is retried`,
                    documentId: write.ids[j],
                  });
                }
              }
            });
            Object.assign(write, again);
          }
          internals.get(state).conflicts += conflicts.length;
          return conflicts;
        },
        batchSize: options.push.batchSize,
        modifier: options.push.modifier,
        initialCheckpoint: options.push.initialCheckpoint,
        waitBeforePersist: options.push.waitBeforePersist,
      };
    }

    state = new RxNatsReplicationState(
      options.replicationIdentifier,
      collection,
      deletedField,
      pull,
      push,
      live,
      retryTime,
      options.autoStart === undefined ? true : options.autoStart,
      options.toggleOnDocumentVisible
    );

    // Live changes: one native feed while the replication runs; events are pulled one at a
    // time, so a slow RxDB slows the feed instead of filling memory.
    // Each start() begins a new feed generation; a loop of an older one ends at its next turn
    // (its pending nextLive() resolves null when its feed stops).
    let feedGeneration = 0;
    const runFeed = async (generation) => {
      while (generation === feedGeneration) {
        const json = await nat.nextLive();
        if (json === null) return;
        const event = JSON.parse(json);
        if (event.batch) {
          reportSkipped(event.batch.skipped);
          if (event.batch.documents.length > 0) {
            pullStream$.next({
              documents: event.batch.documents,
              checkpoint: { sequence: event.batch.checkpoint },
            });
          }
        } else if (event.error) {
          emitError(event.error);
        }
      }
    };
    // RxDB 16 takes push.waitBeforePersist but does not hand it to its replication protocol
    // (RxDB 17 does). The protocol reads it at each local change, so it is set once started.
    const waitBeforePersist = options.push && options.push.waitBeforePersist;
    if (waitBeforePersist) {
      const startWithout = state.start.bind(state);
      state.start = async function start() {
        await startWithout();
        const internal = state.internalReplicationState;
        if (internal && !internal.input.waitBeforePersist) internal.input.waitBeforePersist = waitBeforePersist;
      };
    }
    const batchSize = (options.pull && options.pull.batchSize) || 100;
    if (live && pull) {
      const startBefore = state.start.bind(state);
      const pauseBefore = state.pause.bind(state);
      state.start = function start() {
        if (!state.isStopped()) {
          nat.startLive(batchSize);
          runFeed(++feedGeneration);
        }
        return startBefore();
      };
      state.pause = function pause() {
        feedGeneration++;
        nat.stopLive();
        return pauseBefore();
      };
    }
    internals.set(state, { native: nat, conflicts: 0, pulls: !!pull });
    state.onCancel.push(() => nat.close());

    rx.startReplicationOnLeaderShip(waitForLeadership, state);
    return state;
  }

  return { replicateNats, RxNatsReplicationState };
}

module.exports = { createReplicateNats, RxNatsError, subjectFor: native.subjectFor };
