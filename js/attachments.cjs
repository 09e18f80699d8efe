'use strict';
/**
 * Attachments between RxDB and the stream. RxDB hands attachment data to a push handler in its
 * storage's form (a Blob in RxDB 17, a base64 string in RxDB 16) and expects the same form on
 * pulled documents; on the stream a document carries RxDB 17's own transport shape (stubs in
 * `_attachments`, base64 in `_attachments_data`) plus `_attachments_refs` for attachments kept
 * in the Object Store (see src/attachments.rs). This module only turns RxDB's data into bytes
 * and back and decides where to look for it; placing, uploading and fetching are native.
 */

const { localDocuments: storedDocuments, storedAttachmentData } = require('./rxdb-internals.cjs');

const DATA = '_attachments_data';
const REFS = '_attachments_refs';

function hasEntries(object) {
  if (!object || typeof object !== 'object') return false;
  for (const key in object) if (Object.prototype.hasOwnProperty.call(object, key)) return true;
  return false;
}

/**
 * The base64 data a message carries for an attachment: in `_attachments_data` (our shape, RxDB
 * 17's transports), or in the stub's `data` (rxdb/plugins/replication-nats on RxDB 16, whose
 * storage holds attachment data as base64). Undefined when there is none.
 */
function inlineData(doc, id) {
  const data = doc[DATA] && doc[DATA][id];
  if (typeof data === 'string') return data;
  const stub = doc._attachments && doc._attachments[id];
  return stub && typeof stub.data === 'string' ? stub.data : undefined;
}

/** Whether a value from a message is a reference to an object (see src/attachments.rs). */
function isRef(ref) {
  return (
    !!ref &&
    typeof ref === 'object' &&
    typeof ref.bucket === 'string' &&
    typeof ref.object === 'string' &&
    typeof ref.sha256 === 'string' &&
    Number.isSafeInteger(ref.size) &&
    ref.size >= 0
  );
}

/** A stub as RxDB keeps it: digest, length and type, no data. */
function stubOf(attachment) {
  return { digest: attachment.digest, length: attachment.length, type: attachment.type };
}

/**
 * The digests of a document's attachments (`null` when it has none, or is deleted: RxDB drops
 * the attachments of a deleted document). Documents compare by these: the data of an attachment
 * is carried in different shapes on each side, a change of its digest is a change.
 */
function attachmentDigests(attachments, deleted) {
  if (deleted || !hasEntries(attachments)) return null;
  const digests = {};
  for (const [id, attachment] of Object.entries(attachments)) digests[id] = attachment && attachment.digest;
  return digests;
}

/**
 * @param o.nat the NativeReplication
 * @param o.collection the RxCollection
 * @param o.deletedField the deleted field of documents as the server holds them
 * @param o.rxdbVersion RxDB's `RXDB_VERSION`: 17 keeps attachment data as Blobs, 16 as base64
 * @param o.unwrap parses a native `{ok}`/`{error}` answer, throwing an RxNatsError
 * @param o.newError makes an RxNatsError from `{code, message, ...}`
 */
function createAttachmentCodec({ nat, collection, deletedField, rxdbVersion, unwrap, newError }) {
  const primaryPath = collection.schema.primaryPath;
  const blobs = Number(String(rxdbVersion || '17').split('.')[0]) >= 17;
  const stored = !!collection.schema.jsonSchema.attachments;
  const deleted = (doc) => doc[deletedField] === true;

  /** The error for an attachment of a pulled document that cannot be read. */
  const unreadableAttachment = (code, documentId, attachmentId, why) =>
    newError({
      code,
      message:
        `attachment ${JSON.stringify(attachmentId)} of document ${JSON.stringify(documentId)} was not replicated: ` +
        `${why}. The document is skipped here until a newer revision of it arrives; put the attachment again`,
      documentId,
      attachmentId,
    });

  /** Attachment data as RxDB holds it (Blob, base64 string, typed array) -> Buffer. */
  async function toBuffer(data) {
    if (typeof data === 'string') return Buffer.from(data, 'base64');
    if (Buffer.isBuffer(data)) return data;
    if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (data instanceof ArrayBuffer) return Buffer.from(data);
    if (data && typeof data.arrayBuffer === 'function') return Buffer.from(await data.arrayBuffer());
    throw new TypeError(`attachment data of type ${Object.prototype.toString.call(data)} cannot be read`);
  }

  /** Bytes -> attachment data as this RxDB's storage takes it. */
  const fromBuffer = (buffer, type) => (blobs ? new Blob([buffer], { type: type || '' }) : buffer.toString('base64'));

  /** The local copy of an attachment with this digest, or undefined. */
  async function localData(local, id, attachmentId, digest) {
    const attachment = local && local._attachments && local._attachments[attachmentId];
    if (!attachment || attachment.digest !== digest) return undefined;
    try {
      return await storedAttachmentData(collection, id, attachmentId, digest);
    } catch {
      return undefined; // removed meanwhile: look elsewhere
    }
  }

  async function localDocuments(ids) {
    if (ids.length === 0) return new Map();
    const docs = await storedDocuments(collection, ids);
    return new Map(docs.map((doc) => [doc[primaryPath], doc]));
  }

  /**
   * A document without attachment data, for comparing and remembering: `_attachments` holds
   * stubs only (none for a deleted document), `_attachments_data`/`_attachments_refs` are gone.
   * Documents without attachments come back as they are.
   */
  function comparable(doc) {
    if (!doc || typeof doc !== 'object') return doc;
    const attachments = doc._attachments;
    const carries = DATA in doc || REFS in doc;
    if (!carries && !hasEntries(attachments)) return doc;
    const { [DATA]: _data, [REFS]: _refs, ...rest } = doc;
    if (attachments !== undefined) {
      rest._attachments = {};
      if (!deleted(doc) && hasEntries(attachments)) {
        for (const [id, attachment] of Object.entries(attachments)) rest._attachments[id] = stubOf(attachment);
      }
    }
    return rest;
  }

  /**
   * Rewrites the bodies of the writes whose documents have attachments: data inline or in the
   * Object Store (native), stubs in `_attachments`. An attachment RxDB sends without data is
   * unchanged since the server state it builds on: its data is taken from that state (found by
   * digest in `serverDocs`), else from the local storage. Documents the server refuses (e.g.
   * too large even with every attachment in the Object Store) are reported and left out.
   * @param write `{ ids, bodies, docs, expected }`, parallel arrays, changed in place
   * @param serverDocs documents as the server holds them now (any order, nulls allowed)
   * @param report called with each refused document's RxNatsError
   */
  async function encodeWrites(write, serverDocs, report) {
    const jobs = [];
    write.docs.forEach((doc, j) => {
      if (hasEntries(doc._attachments) || DATA in doc || REFS in doc) jobs.push(j);
    });
    if (jobs.length === 0) return;
    const onServer = new Map();
    for (const server of serverDocs) {
      if (!server || !hasEntries(server._attachments)) continue;
      for (const [id, stub] of Object.entries(server._attachments)) {
        const key = `${stub.digest}/${stub.length}`;
        const base64 = inlineData(server, id);
        if (base64 !== undefined) onServer.set(key, { base64 });
        else if (server[REFS] && isRef(server[REFS][id])) onServer.set(key, { ref: server[REFS][id] });
      }
    }
    const buffers = [];
    const documents = [];
    const native = [];
    for (const j of jobs) {
      const doc = write.docs[j];
      const { [DATA]: _data, [REFS]: _refs, ...rest } = doc;
      // A deleted document keeps no attachments (RxDB drops them); its message carries none.
      if (deleted(doc) || !hasEntries(doc._attachments)) {
        write.bodies[j] = JSON.stringify({ ...rest, _attachments: {} });
        continue;
      }
      const id = doc[primaryPath];
      const stubs = {};
      const attachments = [];
      for (const [attachmentId, attachment] of Object.entries(doc._attachments)) {
        let source;
        let data = attachment.data;
        if (data == null) {
          source = onServer.get(`${attachment.digest}/${attachment.length}`);
          if (!source) data = await storedAttachmentData(collection, id, attachmentId, attachment.digest);
        }
        const stub = stubOf(attachment);
        if (!source) {
          const buffer = await toBuffer(data);
          stub.length = buffer.length;
          source = { buffer: buffers.push(buffer) - 1 };
        }
        stubs[attachmentId] = stub;
        attachments.push({ id: attachmentId, source });
      }
      documents.push({ id, body: JSON.stringify({ ...rest, _attachments: stubs }), attachments });
      native.push(j);
    }
    if (documents.length === 0) return;
    const encoded = await nat.encodeAttachments(JSON.stringify(documents), buffers);
    const refused = new Set();
    unwrap(encoded.outcomes).forEach((outcome, k) => {
      if (outcome.rejected) {
        refused.add(native[k]);
        report(newError(outcome.rejected));
      } else {
        write.bodies[native[k]] = encoded.bodies[k];
      }
    });
    if (refused.size > 0) {
      for (const key of Object.keys(write)) write[key] = write[key].filter((_, j) => !refused.has(j));
    }
  }

  /**
   * Documents from the stream in the form RxDB's replication takes: attachment data as this
   * RxDB's storage keeps it, no `_attachments_data`/`_attachments_refs`. Data comes from the
   * message, from the local copy when it has the same digest, or from the Object Store.
   * @param sequences each document's stream sequence (pulls and live batches), or null
   * @returns `{ documents, sequences, unreadable }`: documents whose attachments cannot be
   *   read are left out (`unreadable` holds the errors); a missing object of a revision that a
   *   newer one replaced is left out without an error
   */
  async function decode(docs, sequences) {
    const out = docs.slice();
    const drop = new Set();
    const unreadable = [];
    const needed = []; // { i, attachmentId, stub, ref }
    docs.forEach((doc, i) => {
      if (!doc || typeof doc !== 'object') return;
      const carries = DATA in doc || REFS in doc;
      if (!carries && !hasEntries(doc._attachments)) return;
      const { [DATA]: _data, [REFS]: refs, ...rest } = doc;
      out[i] = rest;
      if (!stored || deleted(doc) || !hasEntries(doc._attachments)) {
        if (doc._attachments !== undefined) rest._attachments = {};
        return;
      }
      rest._attachments = {};
      for (const [attachmentId, attachment] of Object.entries(doc._attachments)) {
        const stub = stubOf(attachment || {});
        rest._attachments[attachmentId] = stub;
        const inline = inlineData(doc, attachmentId);
        if (inline !== undefined) {
          const buffer = Buffer.from(inline, 'base64');
          if (buffer.length !== stub.length) {
            drop.add(i);
            unreadable.push(
              unreadableAttachment(
                'NATS_ATTACHMENT_CORRUPT',
                doc[primaryPath],
                attachmentId,
                `its data in the message decodes to ${buffer.length} bytes, its stub says ${stub.length}`
              )
            );
            continue;
          }
          stub.data = blobs ? fromBuffer(buffer, stub.type) : inline;
        } else {
          needed.push({ i, attachmentId, stub, ref: refs && refs[attachmentId] });
        }
      }
    });
    if (needed.length > 0) {
      const ids = [...new Set(needed.map((n) => docs[n.i][primaryPath]))];
      const local = await localDocuments(ids);
      const remote = [];
      for (const n of needed) {
        const id = docs[n.i][primaryPath];
        const data = await localData(local.get(id), id, n.attachmentId, n.stub.digest);
        if (data !== undefined) {
          n.stub.data = data;
        } else if (isRef(n.ref)) {
          remote.push(n);
        } else if (n.ref !== undefined) {
          drop.add(n.i);
          unreadable.push(
            unreadableAttachment(
              'NATS_ATTACHMENT_CORRUPT',
              id,
              n.attachmentId,
              `its reference in the message is not {bucket, object, sha256, size} (${JSON.stringify(n.ref).slice(0, 200)})`
            )
          );
        } else {
          drop.add(n.i);
          unreadable.push(
            unreadableAttachment(
              'NATS_ATTACHMENT_MISSING',
              id,
              n.attachmentId,
              'the message carries neither its data nor a reference to it (written by a client that does not ' +
                'replicate attachment data, such as rxdb/plugins/replication-nats on RxDB 17)'
            )
          );
        }
      }
      if (remote.length > 0) {
        const wanted = remote.map((n) => ({
          documentId: docs[n.i][primaryPath],
          attachmentId: n.attachmentId,
          sequence: sequences ? sequences[n.i] : undefined,
          ref: n.ref,
        }));
        const fetched = await nat.fetchAttachments(JSON.stringify(wanted));
        const outcomes = unwrap(fetched.outcomes);
        outcomes.forEach((outcome, k) => {
          const n = remote[k];
          if (outcome === 'data') {
            n.stub.data = fromBuffer(fetched.data[k], n.stub.type);
          } else if (outcome === 'superseded') {
            drop.add(n.i);
          } else {
            drop.add(n.i);
            unreadable.push(newError(outcome.error));
          }
        });
      }
    }
    if (drop.size === 0) return { documents: out, sequences, unreadable };
    return {
      documents: out.filter((_, i) => !drop.has(i)),
      sequences: sequences && sequences.filter((_, i) => !drop.has(i)),
      unreadable,
    };
  }

  /** Pulled and live documents for RxDB; unreadable ones are reported and left out. */
  async function decodeIncoming(docs, sequences, report) {
    const decoded = await decode(docs, sequences);
    decoded.unreadable.forEach(report);
    return decoded;
  }

  /**
   * Server states returned to RxDB as conflicts: RxDB writes the resolved state to the local
   * document, so each needs its attachment data. One that cannot be read fails the push (it is
   * retried): leaving it out would tell RxDB the local write was stored.
   */
  async function decodeConflicts(docs) {
    if (docs.length === 0) return docs;
    const decoded = await decode(docs, null);
    if (decoded.unreadable.length > 0) throw decoded.unreadable[0];
    return decoded.documents;
  }

  return { comparable, encodeWrites, decodeIncoming, decodeConflicts };
}

module.exports = { createAttachmentCodec, attachmentDigests };
