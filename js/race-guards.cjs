'use strict';
/**
 * Guards against two races inside RxDB's replication that lose writes (see "Races inside RxDB"
 * in the README): the newest server state known of recently seen documents, by stream sequence,
 * and the checks built on it. The RxDB hooks they are plugged into are in rxdb-internals.cjs.
 */
const { attachmentDigests } = require('./attachments.cjs');
const { localDocuments, withoutRxdbFields } = require('./rxdb-internals.cjs');

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
  const { _attachments, _attachments_data, _attachments_refs, ...rest } = withoutRxdbFields(doc);
  const digests = attachmentDigests(_attachments, rest._deleted);
  if (digests) rest._attachments = digests;
  return rest;
}

/**
 * @param o.collection the replicated collection
 * @param o.toRxFormat a server-format document in RxDB's format (`_deleted`)
 * @param o.comparable what of a document is kept for comparing (attachment data left out)
 */
function createRaceGuards({ collection, toRxFormat, comparable }) {
  const primaryPath = collection.schema.primaryPath;
  // Whether a document in RxDB's format has the content of one in the server's format.
  const sameContent = (rxDoc, serverDoc) => jsonEqual(content(rxDoc), content(toRxFormat(serverDoc)));

  // Handed to RxDB, written or read: RxDB applies what it is handed later, after its own
  // pushes, so a state older than one known here is stale.
  // Two generations, so forgetting costs nothing per document (evicting a Map's oldest key one
  // by one gets slower as deleted slots pile up at its front): when `current` is full it becomes
  // `previous` and the one before is dropped whole. Between them they hold at least the last
  // KNOWN_STATES documents remembered; `current` shadows an older entry left in `previous`.
  let current = new Map();
  let previous = new Map();
  const newest = (id) => current.get(id) || previous.get(id);
  const remember = (id, sequence, doc) => {
    const before = newest(id);
    if (before && before.sequence >= sequence) return;
    current.set(id, { sequence, doc: comparable(doc) });
    if (current.size >= KNOWN_STATES) {
      previous = current;
      current = new Map();
    }
  };

  return {
    remember,
    rememberBatch: (documents, sequences) => documents.forEach((doc, i) => remember(doc[primaryPath], sequences[i], doc)),

    /**
     * RxDB's downstream applies a handed-over master state only after its upstream is idle, so
     * our own newer write (or a newer state handed over meanwhile) may be on the server by then;
     * applying the older state would roll the local document back, and the next local edit,
     * made on that old state, would then lose against the server. A master state is stale when
     * a newer one of its document is known.
     */
    isStale(masterState) {
      const state = newest(masterState[primaryPath]);
      return !!state && !sameContent(masterState, state.doc);
    },

    /**
     * RxDB pushes rows built from a snapshot of the local documents (when it starts and on every
     * resync it pushes all of them) but reads each one's assumed master state later. When the
     * downstream replaced a document in between, the row pairs the newer master state with the
     * older document, and writing it would overwrite the newer server state with content that
     * was never based on it: an accepted write would vanish. Such a row is recognised by the
     * local document now holding the assumed master state, not the row's content.
     * Resolves the indexes of those rows.
     */
    async supersededRows(rows, ids) {
      const withMaster = rows.map((row, i) => i).filter((i) => rows[i].assumedMasterState);
      if (withMaster.length === 0) return new Set();
      const local = await localDocuments(collection, withMaster.map((i) => ids[i]));
      const byId = new Map(local.map((doc) => [doc[primaryPath], doc]));
      return new Set(
        withMaster.filter((i) => {
          const now = byId.get(ids[i]);
          return now !== undefined && sameContent(now, rows[i].assumedMasterState) && !sameContent(now, rows[i].newDocumentState);
        })
      );
    },
  };
}

module.exports = { createRaceGuards };
