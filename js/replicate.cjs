'use strict';
/**
 * The RxDB glue: plugs the native handlers into RxDB's replication. It is written once and
 * handed RxDB's exports by index.cjs (RxDB's CJS build) or index.mjs (RxDB's ESM build), so a
 * process never loads two copies of RxDB. Everything about NATS happens in native code; this
 * maps RxDB's calls onto it, and keeps what needs RxDB's JavaScript objects: documents in RxDB's
 * form (attachments, modifiers, the conflict handler) and the race guards.
 */
const timers = require('node:timers');
const native = require('./native.cjs');
const { RxNatsError, invalidOption, unwrap, causeOf } = require('./errors.cjs');
const { settingsOf, checkConnection } = require('./options.cjs');
const { createAttachmentCodec } = require('./attachments.cjs');
const { createRaceGuards } = require('./race-guards.cjs');
const rxdbInternals = require('./rxdb-internals.cjs');

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

/** `JSON.stringify(doc)`, or why it cannot be JSON (BigInt, cycles, a function for a document). */
function toJson(doc) {
  try {
    const json = JSON.stringify(doc);
    return typeof json === 'string' ? { json } : { problem: `JSON.stringify() gives ${json}` };
  } catch (err) {
    return { problem: causeOf(err) };
  }
}

/**
 * A document as RxDB compares it (`_deleted`, a boolean) and as the server holds it
 * (`deletedField`). Where the server keeps only the id of a deleted document (the native layout
 * says so: KV delete markers), every deleted revision of a document compares as that.
 */
function documentFormats(deletedField, { tombstonesHoldOnlyTheId, primaryPath }) {
  return {
    toRxFormat(doc) {
      if (tombstonesHoldOnlyTheId && doc._deleted) return { [primaryPath]: doc[primaryPath], _deleted: true };
      const copy = Object.assign({}, doc);
      if (deletedField !== '_deleted') {
        copy._deleted = !!copy[deletedField];
        delete copy[deletedField];
      } else {
        copy._deleted = !!copy._deleted;
      }
      return copy;
    },
    toServerFormat(doc) {
      if (deletedField === '_deleted') return doc;
      const copy = Object.assign({}, doc);
      copy[deletedField] = !!copy._deleted;
      delete copy._deleted;
      return copy;
    },
  };
}

/**
 * With a pull.modifier, the glue applies it to each pulled document (RxDB would, but only after
 * the handler, too late for the schema check) and the native side checks its output against
 * the schema, so a modifier can repair documents that older writers left short of the schema.
 * A document the modifier throws for, or whose output still does not fit, is left out (its
 * report returned); the batch goes on. Returns `(documents, sequences)` => `{documents,
 * sequences, skipped}`, the documents as RxDB should get them.
 */
function pullModifierOf({ modifier, nat, primaryPath, formats }) {
  return async function modifyPulled(documents, sequences) {
    if (!modifier || documents.length === 0) return { documents, sequences, skipped: [] };
    const failures = documents.map(() => null);
    const outputs = await Promise.all(
      documents.map(async (doc, i) => {
        try {
          return await modifier(formats.toRxFormat(doc));
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
        `{"documents":[${texts.join(',')}],"ids":${JSON.stringify(documents.map((d) => d[primaryPath]))},` +
          `"sequences":${JSON.stringify(sequences)},"failures":${JSON.stringify(failures)}}`
      )
    );
    const kept = { documents: [], sequences: [], skipped: screened.skipped };
    outputs.forEach((out, i) => {
      if (!screened.keep[i]) return;
      kept.documents.push(formats.toServerFormat(out));
      kept.sequences.push(sequences[i]);
    });
    return kept;
  };
}

/**
 * What goes on the stream for a pushed document. push.modifier is user code that RxDB calls
 * outside its retry loop, where a throw would stop the push: each document it throws for is
 * reported and not pushed (RxDB skips a row whose modified state is null). Its outputs remember
 * the id of the document they came from, so an error can name it even when the output lost it.
 * `bodyOf(doc)` is `{id, json, written}` or `{error}`: the message must be a JSON object with its
 * string primary key (readers skip anything else). The native layout makes the message of it
 * (the official plugin's `_deleted` beside a custom deletedField, a KV value or delete marker).
 */
function pushBodies({ modifier, primaryPath, emitError }) {
  const modifiedFrom = new WeakMap();
  const guardedModifier =
    modifier &&
    (async (doc) => {
      let out;
      try {
        out = await modifier(doc);
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
  function bodyOf(doc) {
    const id = doc !== null && typeof doc === 'object' ? doc[primaryPath] : undefined;
    const origin = (doc !== null && typeof doc === 'object' && modifiedFrom.get(doc)) || id;
    const refuse = (what) => ({
      error: {
        code: 'NATS_INVALID_DOCUMENT',
        message: `document ${JSON.stringify(origin)} was not pushed: ${what}; the other documents were pushed. ${modifier ? 'Fix push.modifier' : 'Fix the document'}: it is pushed with its next change`,
        documentId: typeof origin === 'string' ? origin : undefined,
      },
    });
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return refuse('it is not an object');
    if (typeof id !== 'string' || id === '') {
      return refuse(`it has no string primary key ${JSON.stringify(primaryPath)}${modifier ? ' after push.modifier' : ''}`);
    }
    const { json, problem } = toJson(doc);
    if (problem !== undefined) return refuse(`it cannot be written as JSON (${problem})`);
    return { id, json, written: doc };
  }
  return { modifier: guardedModifier || undefined, bodyOf };
}

/**
 * Documents one native pull reads for the pull handler to hand out, batch by batch: the first
 * read of a run PULL_AHEAD, each further one twice the one before, up to PULL_AHEAD_MAX.
 */
const PULL_AHEAD = 1000;
const PULL_AHEAD_MAX = 10000;

/**
 * RxDB's pull handler: a batch after the checkpoint, attachments decoded, pull.modifier applied.
 * A document whose attachment cannot be read, or that the modifier rejects, is reported and
 * left out; then it pulls on, as a short batch tells RxDB the stream is exhausted.
 *
 * One native pull reads ahead (see PULL_AHEAD); the batches after the first are handed out
 * from here, without waiting on native code. RxDB merges the writes of batches that arrive
 * while it is still writing, which it can only do for a handler that answers at once (a
 * handler that waits once per batch makes it write each batch alone, and each write to its
 * storage costs more as the collection grows). A batch's checkpoint is the sequence of its last
 * document: the documents are in stream order and each is its newest revision in the read, so
 * every message up to it was handed out, superseded or reported. The read-ahead is dropped when
 * RxDB asks from another checkpoint (a restart, a resync). Reads grow from PULL_AHEAD: the first
 * batch comes as soon as with one small read, and a long pull makes RxDB wait less often (at
 * 100,000 documents its writes then merge more: 4.9 instead of 5.3-6.0 s here).
 *
 * While a read's documents are handed out, the next read is already under way (only after a
 * full read: a short one means the stream ended there, and RxDB then stops asking), so the
 * stream is read while RxDB writes instead of between its writes. At most two reads are held.
 */
function pullHandlerOf({ nat, attachments, modifyPulled, guards, report, reconcile }) {
  let ahead = null;
  // Set when a pull saw messages after its checkpoint removed unread; cleared once the
  // documents the stream no longer has are handed out as deleted (kept across checkpoints, as
  // RxDB may ask from another one before the run is caught up).
  let removedSeen = false;
  let gone = [];
  // One read of `want` documents after `from`, decoded and modified. What it left out is
  // reported when the read is taken: a read dropped unused is read again, and reported then.
  async function read(from, want) {
    const result = unwrap(await nat.pull(from, want));
    const skipped = [...result.skipped];
    const decoded = await attachments.decodeIncoming(result.documents, result.sequences, (err) => skipped.push(err));
    const pulled = await modifyPulled(decoded.documents, decoded.sequences);
    skipped.push(...pulled.skipped);
    return { ...pulled, skipped, removed: !!result.removed, checkpoint: result.checkpoint, exhausted: result.documents.length < want };
  }
  function readNext(run, batchSize) {
    const want = Math.max(batchSize, Math.min(PULL_AHEAD * 2 ** run.reads++, PULL_AHEAD_MAX));
    run.next = read(run.checkpoint, want);
    // Awaited when taken; one dropped with its run fails unseen (the run reads again).
    run.next.catch(() => {});
  }
  return async function handler(lastCheckpoint, batchSize) {
    const from = lastCheckpoint ? lastCheckpoint.sequence : 0;
    if (!ahead || ahead.after !== from) ahead = { after: from, documents: [], sequences: [], checkpoint: from, exhausted: false, reads: 0, next: null };
    const run = ahead;
    while (run.documents.length < batchSize && !run.exhausted) {
      if (!run.next) readNext(run, batchSize);
      let taken;
      try {
        taken = await run.next;
      } catch (err) {
        // RxDB retries from its checkpoint, with a fresh run.
        if (ahead === run) ahead = null;
        throw err;
      }
      run.next = null;
      taken.skipped.forEach(report);
      removedSeen = removedSeen || taken.removed;
      run.documents.push(...taken.documents);
      run.sequences.push(...taken.sequences);
      run.checkpoint = taken.checkpoint;
      run.exhausted = taken.exhausted;
    }
    if (run.exhausted && removedSeen) {
      removedSeen = false;
      gone = gone.concat(await reconcile());
    }
    const documents = run.documents.splice(0, batchSize);
    const sequences = run.sequences.splice(0, batchSize);
    const checkpoint = run.documents.length > 0 ? sequences[sequences.length - 1] : run.checkpoint;
    if (run.documents.length === 0 && documents.length < batchSize && gone.length > 0) {
      // After every document read, so the checkpoint stays where the read ended.
      const more = gone.splice(0, batchSize - documents.length);
      documents.push(...more.map((g) => g.document));
      sequences.push(...more.map((g) => g.sequence));
    }
    guards.rememberBatch(documents, sequences);
    run.after = checkpoint;
    if (!run.exhausted && !run.next) readNext(run, batchSize);
    // Handed out to the end of a short read: the next call reads the stream again.
    if (run.documents.length === 0) run.exhausted = false;
    return { documents, checkpoint: { sequence: checkpoint } };
  };
}

/**
 * After removed messages: the local documents the stream holds no message of any more, as
 * deleted documents for the pull to hand out (see "Deletions that expire" in the README). The
 * local ids are read before the stream is asked, so a document pushed meanwhile is either on
 * the stream or pushed after the stream's last sequence, which the race guards then know as
 * newer than the deleted state handed out; RxDB's downstream leaves alone a document with a
 * local write it has not pushed yet (its push then goes to the conflict handler).
 */
function reconcilerOf({ nat, collection, primaryPath, formats }) {
  return async function reconcile() {
    const local = await collection.find().exec();
    const ids = local.map((doc) => doc.primary);
    const { missing, sequence } = unwrap(await nat.missingOnStream(ids));
    return missing.map((id) => ({ document: formats.toServerFormat({ [primaryPath]: id, _deleted: true }), sequence: sequence + 1 }));
  };
}

/**
 * RxDB's push handler: reads the server state of updates, decides conflicts with the
 * collection's conflict handler, and hands the writes to native code, which publishes them
 * expecting each document's sequence (a create expects none) and counts what happened.
 */
function pushHandlerOf({ nat, collection, bodyOf, guards, checkPushedRows, attachments, formats, emitError }) {
  const primaryPath = collection.schema.primaryPath;
  const comparable = (doc) => formats.toRxFormat(attachments.comparable(doc));
  return async function handler(allRows) {
    const bodies = allRows.map((row) => bodyOf(row.newDocumentState));
    bodies.forEach((body) => body.error && emitError(body.error));
    const rows = allRows.filter((row, i) => !bodies[i].error);
    const written = bodies.filter((body) => !body.error);
    const ids = rows.map((row) => row.newDocumentState[primaryPath]);
    const stale = checkPushedRows ? await guards.supersededRows(rows, ids) : new Set();
    // Only updates need the server state first. A create (no assumed master state) is
    // published expecting the subject to be empty: if it is not, the server rejects it as a
    // conflict and the state is read then, so the outcome is the same.
    const updates = [];
    rows.forEach((row, i) => row.assumedMasterState && updates.push(i));
    const current = new Array(rows.length).fill(null);
    if (updates.length > 0) {
      const states = unwrap(await nat.readCurrent(updates.map((i) => ids[i])));
      updates.forEach((i, k) => {
        current[i] = states[k];
        if (states[k] && states[k].document) guards.remember(ids[i], states[k].sequence, states[k].document);
      });
    }
    const conflicts = [];
    let decided = 0;
    const write = { ids: [], bodies: [], docs: [], expected: [] };
    rows.forEach((row, i) => {
      const server = current[i];
      if (stale.has(i)) {
        // Answered as a conflict: RxDB's resolution of it changes nothing, as the local
        // document moved on; not counted, and the row is not recorded as the server's state.
        conflicts.push(server && server.document ? server.document : row.assumedMasterState);
        return;
      }
      if (row.assumedMasterState && !server && !row.assumedMasterState._deleted) {
        // The server has no message of a document this client knew live: it was deleted and its
        // tombstone expired or was compacted away. Decided as the deletion it was, so the
        // document does not come back (an update of it goes to the conflict handler).
        conflicts.push(formats.toServerFormat({ [primaryPath]: ids[i], _deleted: true }));
        decided++;
        return;
      }
      if (row.assumedMasterState && server && server.document) {
        const same = collection.conflictHandler.isEqual(comparable(server.document), comparable(row.assumedMasterState), 'replication-nats-push');
        if (!same) {
          conflicts.push(server.document);
          decided++;
          return;
        }
      }
      // Expect the sequence the state was read at (0: must not exist); a broken message there
      // may be replaced.
      write.ids.push(ids[i]);
      write.bodies.push(written[i].json);
      write.docs.push(written[i].written);
      write.expected.push(server ? server.sequence : 0);
    });
    // Attachments: data into the message or the Object Store (unchanged ones from the server state).
    await attachments.encodeWrites(write, current.map((s) => s && s.document), emitError);
    if (write.ids.length > 0 || decided > 0) {
      const outcomes = unwrap(await nat.publish(write.ids, write.bodies, write.expected, decided));
      outcomes.forEach((outcome, j) => {
        if (outcome.rejected) {
          emitError(outcome.rejected);
        } else if (outcome.conflict) {
          guards.remember(write.ids[j], outcome.conflict.sequence, outcome.conflict.document);
          conflicts.push(outcome.conflict.document);
        } else {
          guards.remember(write.ids[j], outcome.written, write.docs[j]);
        }
      });
    }
    // Attachments: RxDB writes the resolution to the local document, so it needs the data.
    return attachments.decodeConflicts(conflicts);
  };
}

/** Resolves after the microtasks queued so far and the current turn of the event loop. */
const nextTurn = () => new Promise((resolve) => timers.setImmediate(resolve));

/** Milliseconds since the epoch, sub-millisecond: the clock the native side stamps with. */
const epochMs = () => performance.timeOrigin + performance.now();

/**
 * Live changes: one native feed while the replication runs; events are pulled one at a time,
 * so a slow RxDB slows the feed instead of filling memory. Each start() begins a new feed
 * generation; a loop of an older one ends at its next turn (its pending nextLive() resolves
 * null when its feed stops). While `liveTimings$` is observed, each batch handed to RxDB reports
 * the moments of its way there.
 */
function liveFeedOf({ nat, batchSize, retryTime, attachments, modifyPulled, guards, emitError, report, pullStream$, timings$, isStopped }) {
  let generation = 0;
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
  const decodeLive = async (batch, mine) => {
    for (;;) {
      try {
        return await attachments.decodeIncoming(batch.documents, batch.sequences, report);
      } catch (err) {
        emitError(err);
        await wait(retryTime);
        if (mine !== generation || isStopped()) return null;
      }
    }
  };
  const run = async (mine) => {
    while (mine === generation) {
      const json = await nat.nextLive();
      const takenAt = epochMs();
      if (json === null) return;
      const event = JSON.parse(json);
      if (event.error) {
        report(event.error);
        continue;
      }
      event.batch.skipped.forEach(report);
      const decoded = await decodeLive(event.batch, mine);
      if (!decoded) return;
      const batch = await modifyPulled(decoded.documents, decoded.sequences);
      batch.skipped.forEach(report);
      guards.rememberBatch(batch.documents, batch.sequences);
      if (batch.documents.length > 0) {
        if (timings$.observed) {
          const { receivedAt, sentAt } = event;
          timings$.next({ documents: batch.documents.length, receivedAt, sentAt, takenAt, handedAt: epochMs() });
        }
        pullStream$.next({ documents: batch.documents, checkpoint: { sequence: event.batch.checkpoint } });
        // Ask for the next batch only after RxDB's microtasks for this one ran: the native call
        // costs the JS thread tens of microseconds (napi sets up a promise and wakes a tokio
        // worker, which competes for the CPU) and would delay this batch's insert. The next
        // batch waits in native code meanwhile. Remote live latency here: p50 0.73-0.89 ->
        // 0.61-0.64 ms, p95 2.35-3.68 -> 1.63-2.23 ms (3 runs each).
        await nextTurn();
      }
    }
  };
  return {
    start() {
      nat.startLive(batchSize);
      run(++generation);
    },
    stop() {
      generation++;
      nat.stopLive();
    },
    cancel() {
      [...waits].forEach((done) => done());
    },
  };
}

/**
 * Builds `replicateNats` and `RxNatsReplicationState` on one RxDB build: the modules `rxdb`,
 * `rxdb/plugins/replication`, `rxdb/plugins/leader-election` and `rxjs`, all from the same
 * module system (CJS or ESM).
 */
function createReplicateNats({ rxdb, replication, leaderElection, rxjs }) {
  const rx = {
    RxReplicationState: replication.RxReplicationState,
    startReplicationOnLeaderShip: replication.startReplicationOnLeaderShip,
    addRxPlugin: rxdb.addRxPlugin,
    RxDBLeaderElectionPlugin: leaderElection.RxDBLeaderElectionPlugin,
    // It tells how RxDB holds attachment data.
    RXDB_VERSION: rxdb.RXDB_VERSION,
    Subject: rxjs.Subject,
  };
  class RxNatsReplicationState extends rx.RxReplicationState {
    #own;

    /** `own`: what this library keeps of the replication; the rest are RxDB's arguments. */
    constructor(own, ...rxdbArguments) {
      super(...rxdbArguments);
      this.#own = own;
    }

    /** Starts the live feed (it begins where RxDB's first pull catches up), then RxDB's side. */
    async start() {
      const own = this.#own;
      if (own.feed && !this.isStopped()) own.feed.start();
      await super.start();
      own.started(this);
    }

    pause() {
      if (this.#own.feed) this.#own.feed.stop();
      return super.pause();
    }

    /** Counters and lag (see RxNatsReplicationStats in index.d.ts). */
    async stats() {
      return JSON.parse(await this.#own.nat.stats());
    }

    /**
     * Removes the attachment objects that no document's newest revision references (see the
     * README's Attachments section). Resolves what it did; rejects with an RxNatsError.
     */
    async removeUnreferencedAttachments({ olderThanMs = 3600000 } = {}) {
      if (!(Number.isFinite(olderThanMs) && olderThanMs >= 0)) {
        throw invalidOption(`option olderThanMs must be a number of milliseconds >= 0, got ${String(olderThanMs)}`);
      }
      return unwrap(await this.#own.nat.removeUnreferencedAttachments(olderThanMs));
    }
  }

  function replicateNats(options) {
    const settings = settingsOf(options, native);
    const { collection, primaryPath, deletedField } = settings;
    rx.addRxPlugin(rx.RxDBLeaderElectionPlugin);
    const nat = new native.NativeReplication(settings.nativeOptions, settings.retryTime);
    const own = { nat, feed: null, state: null, started: () => {} };
    const emitError = (info) => {
      const state = own.state;
      if (state && !state.isStopped()) state.subjects.error.next(info instanceof Error ? info : new RxNatsError(info));
    };
    const formats = documentFormats(deletedField, { tombstonesHoldOnlyTheId: nat.tombstonesHoldOnlyTheId(), primaryPath });
    const attachments = createAttachmentCodec({
      nat,
      collection,
      deletedField,
      rxdbVersion: rx.RXDB_VERSION,
      unwrap,
      newError: (info) => new RxNatsError(info),
    });
    const guards = createRaceGuards({ collection, toRxFormat: formats.toRxFormat, comparable: attachments.comparable });
    const modifyPulled = pullModifierOf({ modifier: settings.pull && settings.pull.modifier, nat, primaryPath, formats });

    const pullStream$ = new rx.Subject();
    const timings$ = new rx.Subject();
    const pull = settings.pull && {
      handler: pullHandlerOf({ nat, attachments, modifyPulled, guards, report: emitError, reconcile: reconcilerOf({ nat, collection, primaryPath, formats }) }),
      batchSize: settings.pull.batchSize,
      // Applied by modifyPulled: RxDB must not apply it a second time.
      modifier: undefined,
      initialCheckpoint: settings.pull.initialCheckpoint,
      stream$: pullStream$.asObservable(),
    };
    const bodies = pushBodies({
      modifier: settings.push && settings.push.modifier,
      primaryPath,
      emitError,
    });
    const push = settings.push && {
      // The snapshot-row guard compares documents as the server holds them, which push.modifier changes.
      handler: pushHandlerOf({ nat, collection, bodyOf: bodies.bodyOf, guards, checkPushedRows: !settings.push.modifier, attachments, formats, emitError }),
      batchSize: settings.push.batchSize,
      modifier: bodies.modifier,
      initialCheckpoint: settings.push.initialCheckpoint,
      waitBeforePersist: settings.push.waitBeforePersist,
    };

    if (settings.live && pull) {
      own.feed = liveFeedOf({
        nat,
        batchSize: settings.pull.batchSize,
        retryTime: settings.retryTime,
        attachments,
        modifyPulled,
        guards,
        emitError,
        report: emitError,
        pullStream$,
        timings$,
        isStopped: () => own.state.isStopped(),
      });
    }
    own.started = startedWith({ settings, guards, emitError, rxdbVersion: rx.RXDB_VERSION });

    const state = new RxNatsReplicationState(
      own,
      settings.replicationIdentifier,
      collection,
      deletedField,
      pull,
      push,
      settings.live,
      settings.retryTime,
      settings.autoStart,
      settings.toggleOnDocumentVisible
    );
    own.state = state;
    state.liveTimings$ = timings$.asObservable();
    state.onCancel.push(() => timings$.complete());
    state.onCancel.push(() => nat.close());
    if (own.feed) state.onCancel.push(() => own.feed.cancel());
    rx.startReplicationOnLeaderShip(settings.waitForLeadership, state);
    return state;
  }

  return { replicateNats, RxNatsReplicationState };
}

/**
 * What to do once RxDB's side of a replication started: check the RxDB internals the race
 * guards need, then plug the guards in (the stale-state guard compares documents as the server
 * holds them, which pull.modifier changes, so it is off with one) and apply settings RxDB reads
 * at each use. A missing internal is reported once, never skipped silently.
 */
function startedWith({ settings, guards, emitError, rxdbVersion }) {
  let reported = false;
  const unsupported = (what) => {
    if (reported) return;
    reported = true;
    emitError({
      code: 'NATS_RXDB_UNSUPPORTED',
      message: `RxDB ${rxdbVersion} does not have what rxdb-nats-native's race guards rely on (${what}). Replication goes on, but without the guards a write can be lost to the races they prevent (see "Races inside RxDB" in the README): use RxDB 16 or 17, or a release of rxdb-nats-native that supports RxDB ${rxdbVersion}`,
    });
  };
  return (state) => {
    if (state.isStopped()) return;
    const missing = rxdbInternals.missingHooks(state);
    if (missing.length > 0) {
      unsupported(`missing: ${missing.join(', ')}`);
      return;
    }
    if (settings.pull && !settings.pull.modifier) {
      rxdbInternals.guardDownstream(state, guards.isStale, (context) => unsupported(`an unknown conflict-handler context ${JSON.stringify(context)}`));
    }
    rxdbInternals.applyWaitBeforePersist(state, settings.push && settings.push.waitBeforePersist);
  };
}

/**
 * The NATS user permissions (a nats-server config `permissions` block) that let a replication
 * with `tenant: true` replicate one tenant's documents and nothing else (see "Tenants" in the
 * README): `{ streamName, subjectPrefix }` for a prefix on a shared stream, `{ kv: { bucket } }`
 * for a tenant's own bucket.
 */
function tenantPermissions(of) {
  if (!of || typeof of !== 'object') throw invalidOption('tenantPermissions() needs { streamName, subjectPrefix } or { kv: { bucket } }');
  return unwrap(native.tenantPermissions(JSON.stringify(of)));
}

module.exports = { createReplicateNats, RxNatsError, subjectFor: native.subjectFor, keyFor: native.keyFor, compactStream, tenantPermissions };
