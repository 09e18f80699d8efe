'use strict';
/**
 * The RxDB glue: plugs the native handlers into RxDB's replication. It is written once and
 * handed RxDB's exports by index.cjs (RxDB's CJS build) or index.mjs (RxDB's ESM build), so a
 * process never loads two copies of RxDB.
 */
const native = require('./native.cjs');
const { createAttachmentCodec, attachmentDigests } = require('./attachments.cjs');

/** An error of rxdb-nats-native; `code` is stable (see the README's error table). */
class RxNatsError extends Error {
  constructor(info) {
    super(info.message);
    this.name = 'RxNatsError';
    this.code = info.code;
    if (info.subject !== undefined) this.subject = info.subject;
    if (info.sequence !== undefined) this.sequence = info.sequence;
    if (info.documentId !== undefined) this.documentId = info.documentId;
    if (info.attachmentId !== undefined) this.attachmentId = info.attachmentId;
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
  officialDeletedFlag: 'boolean',
  attachments: 'object',
};
const PULL_OPTIONS = { batchSize: 'number', modifier: 'function', initialCheckpoint: 'any' };
const ATTACHMENT_OPTIONS = { bucket: 'string', inlineMaxBytes: 'number' };
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

function checkConnection(connection) {
  for (const [key, value] of Object.entries(connection || {})) {
    // JSON would drop these silently; nats.js authenticators have options of their own here.
    if (typeof value === 'function') {
      throw invalidOption(
        `option connection.${key} is a function, which rxdb-nats-native does not support: ` +
          'use connection.user/pass, token, nkeySeed or credsFile'
      );
    }
  }
}

/**
 * Shrinks stream `streamName` to the newest `maxMsgsPerSubject` (default 1) revisions of each
 * document (with `limitStream`, bounds it there from now on); replications may keep running.
 * Resolves `{ messagesBefore, messagesAfter, maxMsgsPerSubject }`.
 */
async function compactStream(options) {
  if (!options || typeof options !== 'object') throw invalidOption('compactStream() needs an options object');
  checkConnection(options.connection);
  return unwrap(await native.compactStream(JSON.stringify(options)));
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
  if (options.attachments) {
    checkKeys(options.attachments, ATTACHMENT_OPTIONS, 'attachments.');
    const max = options.attachments.inlineMaxBytes;
    if (max !== undefined && !(Number.isInteger(max) && max >= 0)) {
      throw invalidOption(`option attachments.inlineMaxBytes must be an integer >= 0 (bytes), got ${String(max)}`);
    }
  }
  checkConnection(options.connection);
  const nativeOptions = JSON.stringify({
    streamName: options.streamName,
    subjectPrefix: options.subjectPrefix,
    primaryPath: options.collection.schema.primaryPath,
    deletedField: options.deletedField === undefined ? '_deleted' : options.deletedField,
    connection: options.connection || {},
    streamConfig: options.streamConfig || {},
    maxDocumentBytes: options.maxDocumentBytes,
    collectionSchema: options.collection.schema.jsonSchema,
    pullModifier: !!(options.pull && options.pull.modifier),
    attachments: options.attachments || {},
  });
  const problem = native.validateOptions(nativeOptions);
  if (problem) throw new RxNatsError(JSON.parse(problem));
  return nativeOptions;
}

/**
 * Builds `replicateNats` and `RxNatsReplicationState` on one RxDB build.
 * @param rx RxDB's `RxReplicationState`, `startReplicationOnLeaderShip`, `addRxPlugin`,
 *   `RxDBLeaderElectionPlugin`, `RXDB_VERSION` (it tells how RxDB holds attachment data) and
 *   rxjs `Subject`, all from the same module system.
 */
/** What a replication state keeps of its own, out of RxDB's way. */
const internals = new WeakMap();

/** How many documents' newest server states a replication remembers (the most recent ones). */
const KNOWN_STATES = 10000;

/** Structural equality of JSON values (key order does not matter). */
function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  const keys = Object.keys(a).filter((k) => a[k] !== undefined);
  if (keys.length !== Object.keys(b).filter((k) => b[k] !== undefined).length) return false;
  return keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
}

/**
 * A document's content, without what RxDB keeps beside it. Attachments count by their digests:
 * their data is carried in different shapes on each side (Blob, base64, Object Store).
 */
function content(doc) {
  const { _meta, _rev, _attachments, _attachments_data, _attachments_refs, ...rest } = doc;
  const digests = attachmentDigests(_attachments, rest._deleted);
  if (digests) rest._attachments = digests;
  return rest;
}

/** The message of whatever a user's function threw. */
function causeOf(err) {
  return err instanceof Error ? err.message : String(err);
}

/** `JSON.stringify(doc)`, or why it cannot be JSON (BigInt, cycles, a function for a document). */
function toJson(doc) {
  try {
    const json = JSON.stringify(doc);
    return typeof json === 'string' ? { json } : { problem: `JSON.stringify() gives ${json}` };
  } catch (err) {
    return { problem: causeOf(err) };
  }
}

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

    /**
     * Removes the attachment objects that no document's newest revision references (see the
     * README's Attachments section). Resolves what it did; rejects with an RxNatsError.
     */
    async removeUnreferencedAttachments({ olderThanMs = 3600000 } = {}) {
      if (!(Number.isFinite(olderThanMs) && olderThanMs >= 0)) {
        throw invalidOption(`option olderThanMs must be a number of milliseconds >= 0, got ${String(olderThanMs)}`);
      }
      return unwrap(await internals.get(this).native.removeUnreferencedAttachments(olderThanMs));
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
    const attachments = createAttachmentCodec({
      nat,
      collection,
      deletedField,
      rxdbVersion: rx.RXDB_VERSION,
      unwrap,
      newError: (info) => new RxNatsError(info),
    });

    // With a custom deletedField, also write `_deleted`, the flag the official plugin reads and
    // writes (it ignores deletedField), unless told not to.
    const officialFlag = deletedField !== '_deleted' && options.officialDeletedFlag !== false;

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

    // Whether a document in RxDB's format has the content of one in the server's format.
    const sameContent = (rxDoc, serverDoc) => jsonEqual(content(rxDoc), content(toRxFormat(serverDoc)));

    // The newest server state known of recently seen documents: handed to RxDB, written or
    // read, by stream sequence. RxDB applies what it is handed later, after its own pushes; a
    // state older than one known here is stale (see guardDownstream).
    const known = new Map();
    const remember = (id, sequence, doc) => {
      const before = known.get(id);
      if (before && before.sequence >= sequence) return;
      known.delete(id);
      known.set(id, { sequence, doc: attachments.comparable(doc) });
      if (known.size > KNOWN_STATES) known.delete(known.keys().next().value);
    };
    const rememberBatch = (documents, sequences) =>
      documents.forEach((doc, i) => remember(doc[primaryPath], sequences[i], doc));

    // Both guards compare documents as the server holds them: a modifier changes them on the
    // way, so each guard is on only without the modifier of its direction.
    const checkPushedRows = !!options.push && !options.push.modifier;
    const guardPulled = !!options.pull && !options.pull.modifier;

    /**
     * RxDB pushes rows built from a snapshot of the local documents (when it starts and on every
     * resync it pushes all of them) but reads each one's assumed master state later. When the
     * downstream replaced a document in between, the row pairs the newer master state with the
     * older document, and writing it would overwrite the newer server state with content that
     * was never based on it: an accepted write would vanish. Such a row is recognised by the
     * local document now holding the assumed master state, not the row's content.
     * Returns the indexes of those rows.
     */
    async function supersededRows(rows, ids) {
      const withMaster = rows.map((row, i) => i).filter((i) => rows[i].assumedMasterState);
      if (withMaster.length === 0) return new Set();
      const local = await collection.storageInstance.findDocumentsById(
        withMaster.map((i) => ids[i]),
        true
      );
      const byId = new Map(local.map((doc) => [doc[primaryPath], doc]));
      return new Set(
        withMaster.filter((i) => {
          const now = byId.get(ids[i]);
          return (
            now !== undefined &&
            sameContent(now, rows[i].assumedMasterState) &&
            !sameContent(now, rows[i].newDocumentState)
          );
        })
      );
    }

    /**
     * RxDB's downstream applies a handed-over master state only after its upstream is idle, so
     * our own newer write (or a newer state handed over meanwhile) may be on the server by then;
     * applying the older state would roll the local document back, and the next local edit,
     * made on that old state, would then lose against the server. RxDB decides whether to write
     * a master state to the local document by asking the conflict handler whether the two are
     * equal ('downstream-check-if-equal-1'): for a state older than the newest known, the answer
     * is "equal", so the local document stays as it is (the newer state arrives on its own).
     */
    function guardDownstream(internal) {
      const handler = internal.input.conflictHandler;
      if (!guardPulled || !handler || handler.natsGuarded) return;
      internal.input.conflictHandler = {
        natsGuarded: true,
        isEqual(a, b, context) {
          if (context === 'downstream-check-if-equal-1') {
            const newest = known.get(a[primaryPath]);
            if (newest && !sameContent(a, newest.doc)) return true;
          }
          return handler.isEqual(a, b, context);
        },
        resolve: (input, context) => handler.resolve(input, context),
      };
    }

    // The inverse of toRxFormat: the deleted flag where the server keeps it.
    const toServerFormat = (doc) => {
      if (deletedField === '_deleted') return doc;
      const copy = Object.assign({}, doc);
      copy[deletedField] = !!copy._deleted;
      delete copy._deleted;
      return copy;
    };

    /**
     * With a pull.modifier, the glue applies it to each pulled document (RxDB would, but only
     * after the handler, too late for the schema check) and the native side checks its output
     * against the schema, so a modifier can repair documents that older writers left short of
     * the schema. A document the modifier throws for, or whose output still does not fit, is
     * skipped (and its report returned); the batch goes on. Resolves the documents (and their
     * sequences) as RxDB should get them.
     */
    const pullModifier = options.pull && options.pull.modifier;
    async function modifyPulled(pulledDocuments, pulledSequences) {
      const batch = { documents: pulledDocuments, sequences: pulledSequences };
      if (!pullModifier || batch.documents.length === 0) return { ...batch, skipped: [] };
      const failures = [];
      const outputs = await Promise.all(
        batch.documents.map(async (doc, i) => {
          failures[i] = null;
          try {
            return await pullModifier(toRxFormat(doc));
          } catch (err) {
            failures[i] = { threw: causeOf(err) };
            return null;
          }
        })
      );
      const texts = outputs.map((out, i) => {
        if (failures[i]) return 'null';
        const { json, problem } = toJson(out);
        if (problem === undefined) return json;
        failures[i] = { notJson: problem };
        return 'null';
      });
      const screened = unwrap(
        nat.screenModified(
          `{"documents":[${texts.join(',')}],"ids":${JSON.stringify(batch.documents.map((d) => d[primaryPath]))},` +
            `"sequences":${JSON.stringify(batch.sequences)},"failures":${JSON.stringify(failures)}}`
        )
      );
      const documents = [];
      const sequences = [];
      outputs.forEach((out, i) => {
        if (!screened.keep[i]) return;
        documents.push(toServerFormat(out));
        sequences.push(batch.sequences[i]);
      });
      return { documents, sequences, skipped: screened.skipped };
    }

    let pull;
    if (options.pull) {
      pull = {
        async handler(lastCheckpoint, batchSize) {
          let checkpoint = lastCheckpoint ? lastCheckpoint.sequence : 0;
          const documents = [];
          for (;;) {
            const want = batchSize - documents.length;
            const result = unwrap(await nat.pull(checkpoint, want));
            reportSkipped(result.skipped);
            // Attachments: data in RxDB's form (from the message, the local copy or the Object
            // Store); then the pull.modifier, if any. A document whose attachment cannot be read,
            // or that the modifier rejects, is reported and left out; then pull on, as a short
            // batch tells RxDB the stream is exhausted.
            const decoded = await attachments.decodeIncoming(result.documents, result.sequences, emitError);
            const pulled = await modifyPulled(decoded.documents, decoded.sequences);
            reportSkipped(pulled.skipped);
            rememberBatch(pulled.documents, pulled.sequences);
            documents.push(...pulled.documents);
            checkpoint = result.checkpoint;
            if (pulled.documents.length === result.documents.length || result.documents.length < want) break;
          }
          return { documents, checkpoint: { sequence: checkpoint } };
        },
        batchSize: options.pull.batchSize,
        // Applied by modifyPulled: RxDB must not apply it a second time.
        modifier: undefined,
        initialCheckpoint: options.pull.initialCheckpoint,
        stream$: pullStream$.asObservable(),
      };
    }

    /**
     * push.modifier is user code that RxDB calls outside its retry loop: a throw there would
     * stop the push. Each document it throws for is reported and not pushed (RxDB skips a row
     * whose modified state is null); the rest of the batch goes on. Outputs remember the id of
     * the document they came from, so a later error can name it even when the output lost it.
     */
    const pushModifier = options.push && options.push.modifier;
    const modifiedFrom = new WeakMap();
    const guardedPushModifier =
      pushModifier &&
      (async (doc) => {
        let out;
        try {
          out = await pushModifier(doc);
        } catch (err) {
          emitError({
            code: 'NATS_MODIFIER_FAILED',
            message: `push.modifier threw for document ${JSON.stringify(doc[primaryPath])} (${causeOf(err)}); the document was not pushed and the others were. Fix the modifier: the document is pushed with its next change`,
            documentId: doc[primaryPath],
          });
          return null;
        }
        if (out !== null && typeof out === 'object') modifiedFrom.set(out, doc[primaryPath]);
        return out;
      });

    /**
     * The body of a pushed document, or the error that says why it cannot be one: what
     * push.modifier returns is not checked by RxDB, and the message must be a JSON object with
     * its string primary key (readers skip anything else).
     */
    function bodyOf(doc) {
      const id = doc !== null && typeof doc === 'object' ? doc[primaryPath] : undefined;
      const origin = (doc !== null && typeof doc === 'object' && modifiedFrom.get(doc)) || id;
      const refuse = (what) => ({
        error: {
          code: 'NATS_INVALID_DOCUMENT',
          message: `document ${JSON.stringify(origin)} was not pushed: ${what}; the other documents were pushed. ${pushModifier ? 'Fix push.modifier' : 'Fix the document'}: it is pushed with its next change`,
          documentId: typeof origin === 'string' ? origin : undefined,
        },
      });
      if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return refuse('it is not an object');
      if (typeof id !== 'string' || id === '') {
        return refuse(`it has no string primary key ${JSON.stringify(primaryPath)}${pushModifier ? ' after push.modifier' : ''}`);
      }
      const written = officialFlag ? { ...doc, _deleted: !!doc[deletedField] } : doc;
      const { json, problem } = toJson(written);
      if (problem !== undefined) return refuse(`it cannot be written as JSON (${problem})`);
      return { id, json, written };
    }

    let push;
    if (options.push) {
      push = {
        async handler(allRows) {
          const bodies = allRows.map((row) => bodyOf(row.newDocumentState));
          bodies.forEach((body) => body.error && emitError(body.error));
          const rows = allRows.filter((row, i) => !bodies[i].error);
          const written = bodies.filter((body) => !body.error);
          const ids = rows.map((row) => row.newDocumentState[primaryPath]);
          const stale = checkPushedRows ? await supersededRows(rows, ids) : new Set();
          // Only updates need the server state first. A create (no assumed master state) is
          // published expecting the subject to be empty: if it is not, the server rejects it
          // as a conflict and the state is read then, so the outcome is the same.
          const updates = [];
          rows.forEach((row, i) => row.assumedMasterState && updates.push(i));
          const current = new Array(rows.length).fill(null);
          if (updates.length > 0) {
            const states = unwrap(await nat.readCurrent(updates.map((i) => ids[i])));
            updates.forEach((i, k) => {
              current[i] = states[k];
              if (states[k] && states[k].document) remember(ids[i], states[k].sequence, states[k].document);
            });
          }
          const conflicts = [];
          let superseded = 0;
          const write = { ids: [], bodies: [], docs: [], expected: [] };
          rows.forEach((row, i) => {
            const server = current[i];
            if (stale.has(i)) {
              // Answered as a conflict: RxDB's resolution of it changes nothing, as the local
              // document moved on, and the row is not recorded as the server's state.
              conflicts.push(server && server.document ? server.document : row.assumedMasterState);
              superseded++;
              return;
            }
            if (row.assumedMasterState && server && server.document) {
              const same = collection.conflictHandler.isEqual(
                toRxFormat(attachments.comparable(server.document)),
                toRxFormat(attachments.comparable(row.assumedMasterState)),
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
            write.bodies.push(written[i].json);
            write.docs.push(written[i].written);
            write.expected.push(server ? server.sequence : 0);
          });
          // Attachments: data into the message or the Object Store (unchanged ones from the server state).
          await attachments.encodeWrites(write, current.map((s) => s && s.document), emitError);
          // A create can meet a message that is not a valid document (another writer's garbage):
          // it conflicts, and the write is retried once expecting that message's sequence.
          for (let round = 0; round < 2 && write.ids.length > 0; round++) {
            const outcomes = unwrap(await nat.publish(write.ids, write.bodies, write.expected));
            const again = { ids: [], bodies: [], docs: [], expected: [] };
            outcomes.forEach((outcome, j) => {
              if (outcome.rejected) {
                emitError(outcome.rejected);
              } else if ('conflict' in outcome) {
                const state = outcome.conflict;
                if (state && state.document) {
                  remember(write.ids[j], state.sequence, state.document);
                  conflicts.push(state.document);
                } else if (state && round === 0) {
                  again.ids.push(write.ids[j]);
                  again.bodies.push(write.bodies[j]);
                  again.docs.push(write.docs[j]);
                  again.expected.push(state.sequence);
                } else {
                  throw new RxNatsError({
                    code: 'NATS_UNAVAILABLE',
                    message: `document ${JSON.stringify(write.ids[j])} conflicted but its server state could not be read; the push is retried`,
                    documentId: write.ids[j],
                  });
                }
              } else {
                remember(write.ids[j], outcome.written, write.docs[j]);
              }
            });
            Object.assign(write, again);
          }
          internals.get(state).conflicts += conflicts.length - superseded;
          // Attachments: RxDB writes the resolution to the local document, so it needs the data.
          return attachments.decodeConflicts(conflicts);
        },
        batchSize: options.push.batchSize,
        modifier: guardedPushModifier || undefined,
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
          // Attachments: data in RxDB's form; an outage of the Object Store is waited out here.
          const decoded = await decodeLive(event.batch, generation);
          if (!decoded) return;
          const batch = await modifyPulled(decoded.documents, decoded.sequences);
          reportSkipped(batch.skipped);
          rememberBatch(batch.documents, batch.sequences);
          if (batch.documents.length > 0) {
            pullStream$.next({
              documents: batch.documents,
              checkpoint: { sequence: event.batch.checkpoint },
            });
          }
        } else if (event.error) {
          emitError(event.error);
        }
      }
    };
    // A live batch's documents for RxDB, retried every retryTime while the Object Store is
    // unreachable (the feed waits meanwhile); null once this feed generation is over. cancel()
    // ends a wait at once, so no timer outlives the replication.
    const waits = new Set();
    const wait = (ms) =>
      new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waits.delete(done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        waits.add(done);
      });
    const decodeLive = async (batch, generation) => {
      for (;;) {
        try {
          return await attachments.decodeIncoming(batch.documents, batch.sequences, emitError);
        } catch (err) {
          emitError(err);
          await wait(retryTime);
          if (generation !== feedGeneration || state.isStopped()) return null;
        }
      }
    };
    // Settings of RxDB's replication protocol that it reads at each use, so they are set once it
    // started. RxDB 16 takes push.waitBeforePersist but does not hand it to the protocol (RxDB 17
    // does).
    const waitBeforePersist = options.push && options.push.waitBeforePersist;
    const startWithout = state.start.bind(state);
    state.start = async function start() {
      await startWithout();
      const internal = state.internalReplicationState;
      if (!internal) return;
      if (waitBeforePersist && !internal.input.waitBeforePersist) internal.input.waitBeforePersist = waitBeforePersist;
      guardDownstream(internal);
    };
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
    state.onCancel.push(() => [...waits].forEach((done) => done()));

    rx.startReplicationOnLeaderShip(waitForLeadership, state);
    return state;
  }

  return { replicateNats, RxNatsReplicationState };
}

module.exports = { createReplicateNats, RxNatsError, subjectFor: native.subjectFor, compactStream };
