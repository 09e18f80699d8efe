// Attachments replicate with their content: small ones in the message, large ones through a
// JetStream Object Store, on RxDB 17 and (the rxdb16 suite of scripts/test-js.mjs) RxDB 16.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as rxdb from 'rxdb';
import { RxDBAttachmentsPlugin } from 'rxdb/plugins/attachments';
import { replicateNats as replicateNatsOfficial } from 'rxdb/plugins/replication-nats';
import { connect } from 'nats';
import { startNatsServer, NatsServer } from './harness/nats-server.mjs';
import { startLinkProxy } from './harness/link-proxy.mjs';
import {
  createDb, personSchema, uniqueName, waitFor, streamMessages, publishRaw, replicatePeople, collectErrors, codeOf,
  firstMatching, streamMessageCount,
} from './harness/rxdb.mjs';

rxdb.addRxPlugin(RxDBAttachmentsPlugin);
const RXDB_MAJOR = Number(rxdb.RXDB_VERSION.split('.')[0]);
const MB = 1024 * 1024;

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

const schema = { ...personSchema, attachments: {} };
const createAttDb = (extra = {}) => createDb({ schema, ...extra });
const person = (id, extra = {}) => ({ id, name: id, age: 1, tags: [], ...extra });
const sha256 = (buffer) => crypto.createHash('sha256').update(buffer).digest('hex');
/** `size` bytes that differ for each `seed` (and compress badly). */
const bytesOf = (size, seed = 1) => {
  const buffer = Buffer.alloc(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    buffer[i] = x >>> 24;
  }
  return buffer;
};

async function putAttachment(db, id, attachmentId, data, type = 'application/octet-stream') {
  const doc = (await db.people.findOne(id).exec()) || (await db.people.insert(person(id)));
  return doc.putAttachment({ id: attachmentId, data: new Blob([data], { type }), type });
}

/** The attachment once it is on `db` with `digest` (any digest when not given). */
function attachmentOn(db, id, attachmentId, digest, timeoutMs = 30000) {
  return waitFor(async () => {
    const doc = await db.people.findOne(id).exec();
    const attachment = doc && doc.getAttachment(attachmentId);
    return attachment && (!digest || attachment.digest === digest) ? attachment : null;
  }, `attachment ${attachmentId} of ${id}`, timeoutMs);
}

async function bytesOfAttachment(attachment) {
  return Buffer.from(await (await attachment.getData()).arrayBuffer());
}

/** The digest RxDB computes for the attachment's data (RxDB 16 hashes the base64 text). */
async function rxdbDigest(db, attachment) {
  return db.hashFunction(RXDB_MAJOR >= 17 ? await attachment.getData() : await attachment.getDataBase64());
}

/** The newest message of a document, parsed. */
async function newestBody(streamName, id) {
  const messages = (await streamMessages(server.url, streamName)).filter((m) => m.subject === `${streamName}.people.${id}`);
  return JSON.parse(messages[messages.length - 1].body);
}

/** The objects of a bucket, as nats.js sees them. */
async function bucketObjects(url, bucket, auth = {}) {
  const nc = await connect({ servers: url, ...auth });
  try {
    const os = await nc.jetstream().views.os(bucket);
    return await os.list();
  } finally {
    await nc.close();
  }
}

/** Runs `fn(os)` on a bucket with nats.js (as another client or an administrator would). */
async function withBucket(url, bucket, fn) {
  const nc = await connect({ servers: url });
  try {
    return await fn(await nc.jetstream().views.os(bucket));
  } finally {
    await nc.close();
  }
}

const inner = (err) => (String(err.code).startsWith('NATS_') ? err : err.parameters.errors[0]);
const natsErrors = (errors) => errors.filter((e) => codeOf(e)).map((e) => `${codeOf(e)}: ${inner(e).message}`);

test('a 16-byte text file arrives byte-identical, with its type and digest, in the message', async () => {
  const streamName = uniqueName('att16');
  const [a, b] = [await createAttDb(), await createAttDb()];
  try {
    const ra = replicatePeople(server.url, a, streamName);
    const rb = replicatePeople(server.url, b, streamName);
    const errors = collectErrors([ra, rb]);
    await ra.awaitInitialReplication();
    await rb.awaitInitialReplication();
    const text = 'sixteen bytes!!\n';
    assert.equal(Buffer.byteLength(text), 16);
    const written = await putAttachment(a, 'note', 'note.txt', text, 'text/plain');
    const got = await attachmentOn(b, 'note', 'note.txt');
    assert.equal(await got.getStringData(), text);
    assert.deepEqual(await bytesOfAttachment(got), Buffer.from(text));
    assert.equal(got.digest, written.digest);
    assert.equal(got.type, 'text/plain');
    assert.equal(got.length, 16);
    assert.equal((await got.getData()).type, 'text/plain');
    assert.equal(await rxdbDigest(b, got), got.digest);

    // On the stream: RxDB's own transport shape, stubs in _attachments, base64 in _attachments_data.
    await ra.awaitInSync();
    const body = await newestBody(streamName, 'note');
    assert.deepEqual(body._attachments, { 'note.txt': { digest: written.digest, length: 16, type: 'text/plain' } });
    assert.deepEqual(body._attachments_data, { 'note.txt': Buffer.from(text).toString('base64') });
    assert.equal(body._attachments_refs, undefined);
    if (rxdb.serializeDocAttachments) {
      // RxDB 17 writes the same from the local document and its Blob.
      const local = (await a.people.findOne('note').exec()).toMutableJSON(true);
      local._attachments['note.txt'].data = new Blob([text], { type: 'text/plain' });
      const serialized = await rxdb.serializeDocAttachments(local, true);
      assert.deepEqual(serialized._attachments, body._attachments);
      assert.deepEqual(serialized._attachments_data, body._attachments_data);
    }

    await waitFor(async () => (await rb.stats()).attachmentBytesPulled >= 16, 'b to count the attachment');
    assert.equal((await ra.stats()).attachmentBytesPushed, 16);
    assert.equal((await rb.stats()).attachmentBytesPulled, 16);
    assert.deepEqual(natsErrors(errors), []);
  } finally {
    await a.close();
    await b.close();
  }
});

test('a 5 MB binary goes through the Object Store and arrives byte-identical; the message carries a reference', async () => {
  const streamName = uniqueName('att5mb');
  const [a, b] = [await createAttDb(), await createAttDb()];
  try {
    const ra = replicatePeople(server.url, a, streamName);
    const rb = replicatePeople(server.url, b, streamName);
    const errors = collectErrors([ra, rb]);
    await ra.awaitInitialReplication();
    await rb.awaitInitialReplication();
    const data = bytesOf(5 * MB, 5);
    const written = await putAttachment(a, 'clip', 'clip.bin', data);
    const got = await attachmentOn(b, 'clip', 'clip.bin');
    assert.equal(sha256(await bytesOfAttachment(got)), sha256(data));
    assert.equal(got.digest, written.digest);
    assert.equal(got.length, data.length);
    assert.equal(got.type, 'application/octet-stream');
    assert.equal(await rxdbDigest(b, got), got.digest);

    await ra.awaitInSync();
    const messages = (await streamMessages(server.url, streamName)).filter((m) => m.subject.endsWith('.clip'));
    const last = messages[messages.length - 1];
    assert.ok(Buffer.byteLength(last.body) < 2048, `the message is small (${Buffer.byteLength(last.body)} bytes)`);
    const body = JSON.parse(last.body);
    assert.equal(body._attachments_data, undefined);
    const hex = sha256(data);
    assert.deepEqual(body._attachments_refs, {
      'clip.bin': { bucket: `${streamName}_attachments`, object: `sha256-${hex}`, sha256: hex, size: data.length },
    });
    const objects = await bucketObjects(server.url, `${streamName}_attachments`);
    assert.deepEqual(objects.map((o) => [o.name, o.size]), [[`sha256-${hex}`, data.length]]);

    assert.equal((await ra.stats()).attachmentBytesPushed, data.length);
    await waitFor(async () => (await rb.stats()).attachmentBytesPulled === data.length, 'b to count 5 MB pulled');

    // Editing another field does not fetch the attachment again, nor upload it again.
    await (await a.people.findOne('clip').exec()).incrementalPatch({ age: 7 });
    await waitFor(async () => (await b.people.findOne('clip').exec()).age === 7, 'the edit on b');
    assert.equal((await rb.stats()).attachmentBytesPulled, data.length, 'no second download');
    assert.equal((await ra.stats()).attachmentBytesPushed, data.length, 'no second upload');
    assert.equal(sha256(await bytesOfAttachment(await attachmentOn(b, 'clip', 'clip.bin'))), hex);
    assert.deepEqual((await newestBody(streamName, 'clip'))._attachments_refs, body._attachments_refs);
    assert.deepEqual(natsErrors(errors), []);
  } finally {
    await a.close();
    await b.close();
  }
});

test('replace and remove replicate; one file is one object however many documents hold it', async () => {
  const streamName = uniqueName('attrepl');
  const bucket = `${streamName}_attachments`;
  const [a, b] = [await createAttDb(), await createAttDb()];
  try {
    const ra = replicatePeople(server.url, a, streamName);
    const rb = replicatePeople(server.url, b, streamName);
    const errors = collectErrors([ra, rb]);
    await ra.awaitInitialReplication();
    await rb.awaitInitialReplication();
    const [v1, v2] = [bytesOf(MB, 11), bytesOf(MB, 12)];
    await putAttachment(a, 'one', 'file.bin', v1);
    await putAttachment(a, 'two', 'same.bin', v1);
    await putAttachment(a, 'one', 'small.txt', 'keep me', 'text/plain');
    await attachmentOn(b, 'two', 'same.bin');
    await attachmentOn(b, 'one', 'small.txt');
    await ra.awaitInSync();
    assert.equal((await bucketObjects(server.url, bucket)).length, 1, 'the same content is stored once');

    // Replace on b: a gets the new content, under a new object.
    const replaced = await putAttachment(b, 'one', 'file.bin', v2);
    const onA = await attachmentOn(a, 'one', 'file.bin', replaced.digest);
    assert.equal(sha256(await bytesOfAttachment(onA)), sha256(v2));
    await rb.awaitInSync();
    assert.deepEqual((await bucketObjects(server.url, bucket)).map((o) => o.name).sort(),
      [`sha256-${sha256(v1)}`, `sha256-${sha256(v2)}`].sort());

    // Remove one attachment on a: gone on b, the other stays.
    await (await a.people.findOne('one').exec()).getAttachment('file.bin').remove();
    await waitFor(async () => !(await b.people.findOne('one').exec()).getAttachment('file.bin'), 'the removal on b');
    assert.equal(await (await b.people.findOne('one').exec()).getAttachment('small.txt').getStringData(), 'keep me');

    // Remove the document: its message keeps no attachments, b deletes it.
    await (await a.people.findOne('two').exec()).remove();
    await waitFor(async () => !(await b.people.findOne('two').exec()), 'the deletion on b');
    await ra.awaitInSync();
    const tombstone = await newestBody(streamName, 'two');
    assert.equal(tombstone._deleted, true);
    assert.deepEqual(tombstone._attachments, {});
    assert.equal(tombstone._attachments_refs, undefined);
    assert.deepEqual(natsErrors(errors), []);
  } finally {
    await a.close();
    await b.close();
  }
});

test('documents without attachments are unchanged on the stream', async () => {
  const streamName = uniqueName('attnone');
  const db = await createAttDb();
  try {
    const r = replicatePeople(server.url, db, streamName, { pull: undefined });
    await db.people.insert(person('plain', { age: 3, tags: ['t'] }));
    await r.awaitInitialReplication();
    await r.awaitInSync();
    const [message] = await streamMessages(server.url, streamName);
    assert.deepEqual(JSON.parse(message.body), {
      id: 'plain', name: 'plain', age: 3, tags: ['t'], _deleted: false, _attachments: {},
    });
    assert.deepEqual(await r.stats().then((s) => [s.attachmentBytesPushed, s.attachmentBytesPulled]), [0, 0]);
  } finally {
    await db.close();
  }
});

test('placement: inlineMaxBytes 0 sends every attachment to the Object Store; one that would break max_payload goes there whatever inlineMaxBytes says', async () => {
  const streamName = uniqueName('attplace');
  const [a, b] = [await createAttDb(), await createAttDb()];
  try {
    const ra = replicatePeople(server.url, a, streamName, { attachments: { inlineMaxBytes: 0 } });
    const rb = replicatePeople(server.url, b, streamName, { attachments: { inlineMaxBytes: 10 * MB } });
    const errors = collectErrors([ra, rb]);
    await ra.awaitInitialReplication();
    await rb.awaitInitialReplication();
    await putAttachment(a, 'tiny', 'tiny.txt', 'x', 'text/plain');
    assert.equal(await (await attachmentOn(b, 'tiny', 'tiny.txt')).getStringData(), 'x');
    assert.equal(Object.keys((await newestBody(streamName, 'tiny'))._attachments_refs).length, 1);

    // 900 KB is 1.2 MB of base64: over the default max_payload of 1 MB.
    const data = bytesOf(900 * 1024, 9);
    await putAttachment(b, 'large', 'large.bin', data);
    assert.equal(sha256(await bytesOfAttachment(await attachmentOn(a, 'large', 'large.bin'))), sha256(data));
    await rb.awaitInSync();
    const body = await newestBody(streamName, 'large');
    assert.equal(body._attachments_data, undefined);
    assert.equal(body._attachments_refs['large.bin'].size, data.length);
    // Two attachments of 400 KB fit one by one, not together: one moves to the Object Store.
    await putAttachment(b, 'pair', 'p1.bin', bytesOf(400 * 1024, 21));
    const p2 = await putAttachment(b, 'pair', 'p2.bin', bytesOf(400 * 1024, 22));
    await attachmentOn(a, 'pair', 'p2.bin', p2.digest);
    await rb.awaitInSync();
    const pair = await newestBody(streamName, 'pair');
    assert.equal(Object.keys(pair._attachments_data).length, 1);
    assert.equal(Object.keys(pair._attachments_refs).length, 1);
    assert.deepEqual(natsErrors(errors), []);
  } finally {
    await a.close();
    await b.close();
  }
});

// RxDB's own attachment replication checks: the steps and assertions of "attachment replication"
// in rxdb/src/plugins/test-utils/replication-base-test-suite.ts (runReplicationBaseTestSuite with
// syncOnceWithAttachments). That module cannot be imported here: rxdb/plugins/test-utils needs
// RxDB's development dependencies (clone, async-test-util), which an install of rxdb lacks.
test('RxDB replication base suite: attachment replication', async (t) => {
  const streamName = uniqueName('attbase');
  const syncOnce = async (db) => {
    const r = replicatePeople(server.url, db, streamName, { live: false, retryTime: 100 });
    const errors = collectErrors(r);
    await r.awaitInitialReplication();
    await r.awaitInSync();
    await r.cancel();
    assert.deepEqual(natsErrors(errors), []);
  };
  const pair = async (fn) => {
    const [c1, c2] = [await createAttDb(), await createAttDb()];
    try {
      await fn(c1.people, c2.people);
    } finally {
      await c1.close();
      await c2.close();
    }
  };
  const text = (s) => ({ data: new Blob([s], { type: 'text/plain' }), type: 'text/plain' });

  await t.test('should replicate an inserted attachment', () => pair(async (c1, c2) => {
    const doc1 = await c1.insert(person('att-insert-base'));
    await doc1.putAttachment({ id: 'test.txt', ...text('hello replication') });
    await syncOnce(c1.database);
    await syncOnce(c2.database);
    const att2 = (await c2.findOne('att-insert-base').exec(true)).getAttachment('test.txt');
    assert.ok(att2, 'attachment must exist on second collection');
    assert.strictEqual(await att2.getStringData(), 'hello replication');
  }));

  await t.test('should replicate an updated attachment', () => pair(async (c1, c2) => {
    const doc1 = await c1.insert(person('att-update-base'));
    await doc1.putAttachment({ id: 'file.txt', ...text('v1') });
    await syncOnce(c1.database);
    await syncOnce(c2.database);
    await (await c1.findOne('att-update-base').exec(true)).putAttachment({ id: 'file.txt', ...text('v2') });
    await syncOnce(c1.database);
    await syncOnce(c2.database);
    const att2 = (await c2.findOne('att-update-base').exec(true)).getAttachment('file.txt');
    assert.ok(att2, 'updated attachment must exist');
    assert.strictEqual(await att2.getStringData(), 'v2');
  }));

  await t.test('should replicate a deleted attachment', () => pair(async (c1, c2) => {
    const doc1 = await c1.insert(person('att-delete-base'));
    await doc1.putAttachment({ id: 'remove.txt', ...text('bye') });
    await syncOnce(c1.database);
    await syncOnce(c2.database);
    await (await c1.findOne('att-delete-base').exec(true)).getAttachment('remove.txt').remove();
    await syncOnce(c1.database);
    await syncOnce(c2.database);
    const doc2 = await c2.findOne('att-delete-base').exec(true);
    assert.strictEqual(doc2.getAttachment('remove.txt'), null, 'deleted attachment must not exist on second collection');
  }));

  // RxDB 16 writes a resolved conflict with the local attachments, whatever the handler returned
  // (its resolveConflictError keeps forkState._attachments; RxDB 17 takes the resolved ones).
  const winner = RXDB_MAJOR >= 17 ? 'from c2 - master' : 'from c1 - should lose';
  await t.test(`should keep the master attachment state on conflict (RxDB ${RXDB_MAJOR}: ${winner})`, () => pair(async (c1, c2) => {
    const doc1 = await c1.insert(person('att-conflict-base'));
    await doc1.putAttachment({ id: 'shared.txt', ...text('initial') });
    await syncOnce(c1.database);
    await syncOnce(c2.database);
    await (await c2.findOne('att-conflict-base').exec(true)).putAttachment({ id: 'shared.txt', ...text('from c2 - master') });
    await syncOnce(c2.database);
    await (await c1.findOne('att-conflict-base').exec(true)).putAttachment({ id: 'shared.txt', ...text('from c1 - should lose') });
    await syncOnce(c1.database);
    await syncOnce(c2.database);
    await syncOnce(c1.database);
    const att1Final = (await c1.findOne('att-conflict-base').exec(true)).getAttachment('shared.txt');
    assert.ok(att1Final, 'attachment must still exist after conflict resolution');
    assert.strictEqual(await att1Final.getStringData(), winner, 'master state (c2) must win the conflict on RxDB 17');
    const att2Final = (await c2.findOne('att-conflict-base').exec(true)).getAttachment('shared.txt');
    assert.strictEqual(await att2Final.getStringData(), winner, 'both converge');
  }));
});

test('two clients write different attachments to one document: both end alike, nothing is corrupt; on RxDB 17 the conflict handler decides', async () => {
  // A handler that keeps the attachments of both sides; without it the server state wins.
  const union = {
    isEqual: (a, b) => JSON.stringify(digests(a)) === JSON.stringify(digests(b)) && a.name === b.name && a._deleted === b._deleted,
    resolve: ({ newDocumentState, realMasterState }) => ({
      ...realMasterState,
      _attachments: { ...(newDocumentState._attachments || {}), ...(realMasterState._attachments || {}) },
    }),
  };
  function digests(doc) {
    return Object.entries(doc._attachments || {}).map(([id, a]) => [id, a.digest]).sort();
  }
  // a's write reaches the server first, so b's conflicts. RxDB 16 keeps the local attachments
  // of a resolved conflict whatever the handler returns (see above): there b's file wins.
  const v17 = RXDB_MAJOR >= 17;
  for (const [label, collectionOptions, expected] of [
    ['default handler (the server state wins)', {}, v17 ? ['a.txt'] : ['b.bin']],
    ['a handler that keeps both', { conflictHandler: union }, v17 ? ['a.txt', 'b.bin'] : ['b.bin']],
  ]) {
    const streamName = uniqueName('attconflict');
    const [a, b] = [await createAttDb(collectionOptions), await createAttDb(collectionOptions)];
    try {
      const ra = replicatePeople(server.url, a, streamName);
      const rb = replicatePeople(server.url, b, streamName);
      const errors = collectErrors([ra, rb]);
      await ra.awaitInitialReplication();
      await rb.awaitInitialReplication();
      await a.people.insert(person('shared'));
      await waitFor(() => b.people.findOne('shared').exec(), 'the document on b');
      await ra.awaitInSync();
      await rb.awaitInSync();
      // Both write while neither replicates: a small file on a, a large one (Object Store) on
      // b. Then a pushes first, and b's push meets a's state.
      await ra.pause();
      await rb.pause();
      const small = 'from a';
      const large = bytesOf(2 * MB, 31);
      await putAttachment(a, 'shared', 'a.txt', small, 'text/plain');
      await putAttachment(b, 'shared', 'b.bin', large);
      await ra.start();
      await ra.awaitInSync();
      await rb.start();
      const converged = await waitFor(async () => {
        await ra.awaitInSync();
        await rb.awaitInSync();
        const [da, db] = [await a.people.findOne('shared').exec(), await b.people.findOne('shared').exec()];
        const same = JSON.stringify(digests(da.toJSON(true))) === JSON.stringify(digests(db.toJSON(true)));
        return same && digests(da.toJSON(true));
      }, `${label}: both clients to hold the same attachments`, 60000);
      assert.deepEqual(converged.map(([id]) => id), expected, `${label}: ${JSON.stringify(converged)}`);
      assert.ok((await rb.stats()).conflicts >= 1, `${label}: b's push conflicted`);
      for (const db of [a, b]) {
        const doc = await db.people.findOne('shared').exec();
        for (const attachment of doc.allAttachments()) {
          const bytes = await bytesOfAttachment(attachment);
          assert.equal(await rxdbDigest(db, attachment), attachment.digest, `${label}: ${attachment.id} matches its digest`);
          const want = attachment.id === 'a.txt' ? Buffer.from(small) : large;
          assert.equal(sha256(bytes), sha256(want), `${label}: ${attachment.id} has its content`);
        }
      }
      assert.deepEqual(natsErrors(errors), [], label);
    } finally {
      await a.close();
      await b.close();
    }
  }
});

test('a server killed in the middle of a 5 MB upload: no half-written attachment is ever visible', async () => {
  const own = await startNatsServer();
  const streamName = uniqueName('attkill');
  const bucket = `${streamName}_attachments`;
  const [a, b] = [await createAttDb(), await createAttDb()];
  let proxy;
  try {
    const options = { connection: { servers: own.url, reconnectTimeWait: 100, timeout: 2000 }, retryTime: 300 };
    // a reaches the server through a proxy that holds the upload at a chosen chunk.
    proxy = await startLinkProxy(own.port);
    const ra = replicatePeople(own.url, a, streamName, { ...options, connection: { ...options.connection, servers: proxy.url } });
    const rb = replicatePeople(own.url, b, streamName, options);
    const errorsB = collectErrors(rb);
    await ra.awaitInitialReplication();
    await rb.awaitInitialReplication();
    // Every state of the document b sees, with the SHA-256 of its attachment (or what failed).
    const seen = [];
    b.people.findOne('clip').$.subscribe((doc) => {
      const attachment = doc && doc.getAttachment('clip.bin');
      if (attachment) seen.push(bytesOfAttachment(attachment).then(sha256, (e) => `unreadable: ${e.message}`));
    });
    // The upload is held after its fifth chunk; once the server stored those five, it is killed.
    const held = proxy.holdAfter(`PUB $O.${bucket}.C.`, 5);
    const data = bytesOf(5 * MB, 41);
    await putAttachment(a, 'clip', 'clip.bin', data);
    await held;
    await waitFor(async () => (await streamMessageCount(own.url, `OBJ_${bucket}`)) === 5, 'the five chunks on the server');
    await own.kill();
    proxy.reset();
    assert.equal(seen.length, 0, 'b saw nothing of the upload before the kill');
    await own.start();
    const got = await attachmentOn(b, 'clip', 'clip.bin', undefined, 60000);
    assert.equal(sha256(await bytesOfAttachment(got)), sha256(data));
    assert.deepEqual([...new Set(await Promise.all(seen))], [sha256(data)], 'b only ever saw the whole file');
    assert.deepEqual(natsErrors(errorsB).filter((e) => e.startsWith('NATS_ATTACHMENT')), []);

    // The cut-off upload left chunks without an object: the cleanup purges them, the object stays.
    await ra.awaitInSync();
    const report = await ra.removeUnreferencedAttachments({ olderThanMs: 0 });
    assert.equal(report.removed, 0);
    assert.equal(report.referenced, 1);
    assert.ok(report.incompleteUploads >= 1, JSON.stringify(report));
    const fresh = await createAttDb();
    try {
      const rf = replicatePeople(own.url, fresh, streamName, { ...options, push: undefined, live: false });
      await rf.awaitInitialReplication();
      assert.equal(sha256(await bytesOfAttachment(await attachmentOn(fresh, 'clip', 'clip.bin'))), sha256(data));
    } finally {
      await fresh.close();
    }
  } finally {
    await a.close();
    await b.close();
    await proxy?.close();
    await own.destroy();
  }
});

test('a missing or corrupt object is a typed error naming the document and attachment; the rest replicates', async () => {
  const streamName = uniqueName('attbad');
  const bucket = `${streamName}_attachments`;
  const writer = await createAttDb();
  try {
    const rw = replicatePeople(server.url, writer, streamName);
    await rw.awaitInitialReplication();
    const [gone, changed] = [bytesOf(2 * MB, 51), bytesOf(2 * MB, 52)];
    await putAttachment(writer, 'gone', 'gone.bin', gone);
    await putAttachment(writer, 'changed', 'changed.bin', changed);
    await putAttachment(writer, 'fine', 'fine.txt', 'fine', 'text/plain');
    await rw.awaitInSync();
    // An administrator deletes one object; another client replaces one with other bytes.
    await withBucket(server.url, bucket, async (os) => {
      await os.delete(`sha256-${sha256(gone)}`);
      await os.putBlob({ name: `sha256-${sha256(changed)}` }, bytesOf(2 * MB, 53));
    });
    // A document as rxdb/plugins/replication-nats writes one: the Blob became {}.
    await publishRaw(server.url, `${streamName}.people.official`, JSON.stringify({
      ...person('official'), _deleted: false,
      _attachments: { 'f.txt': { digest: 'abc', length: 3, type: 'text/plain', data: {} } },
    }));
    // A reference that is not one (another writer's bug): reported, it does not stall the pull.
    await publishRaw(server.url, `${streamName}.people.badref`, JSON.stringify({
      ...person('badref'), _deleted: false,
      _attachments: { 'r.bin': { digest: 'abc', length: 3, type: 'x' } },
      _attachments_refs: { 'r.bin': { bucket: 7 } },
    }));

    const reader = await createAttDb();
    try {
      const r = replicatePeople(server.url, reader, streamName);
      const errors = collectErrors(r);
      await r.awaitInitialReplication();
      assert.equal(await (await attachmentOn(reader, 'fine', 'fine.txt')).getStringData(), 'fine');
      await waitFor(() => errors.length >= 4, 'four errors');
      const byDoc = Object.fromEntries(errors.map((e) => [e.documentId, e]));
      assert.equal(byDoc.gone.code, 'NATS_ATTACHMENT_MISSING');
      assert.equal(byDoc.gone.attachmentId, 'gone.bin');
      assert.match(byDoc.gone.message, /attachment "gone\.bin" of document "gone"/);
      assert.equal(byDoc.changed.code, 'NATS_ATTACHMENT_CORRUPT');
      assert.equal(byDoc.changed.attachmentId, 'changed.bin');
      assert.match(byDoc.changed.message, /SHA-256/);
      assert.equal(byDoc.official.code, 'NATS_ATTACHMENT_MISSING');
      assert.equal(byDoc.official.attachmentId, 'f.txt');
      assert.equal(byDoc.badref.code, 'NATS_ATTACHMENT_CORRUPT');
      assert.match(byDoc.badref.message, /reference in the message is not/);
      // Never an empty attachment: those documents are left out until a readable revision comes.
      for (const id of ['gone', 'changed', 'official', 'badref']) assert.equal(await reader.people.findOne(id).exec(), null, id);
      // The rest keeps replicating, and a new revision repairs a document.
      await putAttachment(writer, 'gone', 'gone.bin', 'back again', 'text/plain');
      assert.equal(await (await attachmentOn(reader, 'gone', 'gone.bin')).getStringData(), 'back again');
    } finally {
      await reader.close();
    }
  } finally {
    await writer.close();
  }
});

test('the cleanup removes only objects no document references; an old revision whose object is gone is skipped quietly', async () => {
  const streamName = uniqueName('attclean');
  const bucket = `${streamName}_attachments`;
  const db = await createAttDb();
  try {
    const r = replicatePeople(server.url, db, streamName);
    await r.awaitInitialReplication();
    const [x, y, z, w] = [61, 62, 63, 64].map((seed) => bytesOf(MB, seed));
    await putAttachment(db, 'kept', 'y.bin', y);
    await putAttachment(db, 'old', 'x.bin', x);
    await r.awaitInSync();
    await db.people.bulkInsert([person('f1'), person('f2'), person('f3')]);
    await putAttachment(db, 'old', 'x.bin', z); // x replaced by z
    await putAttachment(db, 'dropped', 'w.bin', w);
    await r.awaitInSync();
    await (await db.people.findOne('dropped').exec()).remove(); // a tombstone keeps nothing
    await r.awaitInSync();
    assert.equal((await bucketObjects(server.url, bucket)).length, 4);

    const young = await r.removeUnreferencedAttachments();
    assert.deepEqual(young, { objects: 4, referenced: 2, removed: 0, removedBytes: 0, incompleteUploads: 0 }, 'an hour of grace by default');
    const report = await r.removeUnreferencedAttachments({ olderThanMs: 0 });
    assert.deepEqual(report, { objects: 4, referenced: 2, removed: 2, removedBytes: 2 * MB, incompleteUploads: 0 });
    assert.deepEqual((await bucketObjects(server.url, bucket)).map((o) => o.name).sort(),
      [`sha256-${sha256(y)}`, `sha256-${sha256(z)}`].sort());
    await assert.rejects(r.removeUnreferencedAttachments({ olderThanMs: -1 }), (e) => e.code === 'NATS_INVALID_OPTION');

    // One document per pull: the revision of "old" that references x comes before the newer one.
    const fresh = await createAttDb();
    try {
      const rf = replicatePeople(server.url, fresh, streamName, { push: undefined, live: false, pull: { batchSize: 1 } });
      const errors = collectErrors(rf);
      await rf.awaitInitialReplication();
      assert.equal(sha256(await bytesOfAttachment(await attachmentOn(fresh, 'old', 'x.bin'))), sha256(z));
      assert.equal(sha256(await bytesOfAttachment(await attachmentOn(fresh, 'kept', 'y.bin'))), sha256(y));
      assert.equal(await fresh.people.findOne('dropped').exec(), null);
      assert.deepEqual(natsErrors(errors), []);
    } finally {
      await fresh.close();
    }
  } finally {
    await db.close();
  }
});

test('the README\'s bucket permissions suffice; a reader without them reports the document and keeps replicating everything else', async () => {
  const S = uniqueName('attperm');
  const P = `${S}.people`;
  const bucket = `${S}_attachments`;
  // The README's permission lists: the stream's (Security model), the bucket's (Attachments).
  const streamSubjects = [
    `$JS.API.STREAM.INFO.${S}`,
    `$JS.API.CONSUMER.CREATE.${S}`, `$JS.API.CONSUMER.CREATE.${S}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${S}.>`, `$JS.API.CONSUMER.DELETE.${S}.>`,
    `$JS.API.STREAM.MSG.GET.${S}`, `$JS.API.DIRECT.GET.${S}`, `$JS.API.DIRECT.GET.${S}.>`,
    `${P}.>`,
  ];
  const bucketReading = [
    `$JS.API.STREAM.INFO.OBJ_${bucket}`, `$JS.API.DIRECT.GET.OBJ_${bucket}.>`,
    `$JS.API.CONSUMER.CREATE.OBJ_${bucket}`, `$JS.API.CONSUMER.CREATE.OBJ_${bucket}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.OBJ_${bucket}.>`, `$JS.API.CONSUMER.DELETE.OBJ_${bucket}.>`,
  ];
  const bucketWriting = [`$JS.API.STREAM.CREATE.OBJ_${bucket}`, `$JS.API.STREAM.PURGE.OBJ_${bucket}`, `$O.${bucket}.>`];
  const permissions = (subjects) => `{ publish: { allow: ${JSON.stringify(subjects)} }, subscribe: { allow: ["_INBOX.>"] } }`;
  const own = await new NatsServer({
    config: `authorization { users: [
      { user: admin, password: admin-pass }
      { user: writer, password: writer-pass, permissions: ${permissions([...streamSubjects, ...bucketReading, ...bucketWriting])} }
      { user: fullreader, password: fullreader-pass, permissions: ${permissions([...streamSubjects, ...bucketReading])} }
      { user: reader, password: reader-pass, permissions: ${permissions(streamSubjects)} }
    ] }`,
  }).start();
  const as = (user) => ({ connection: { servers: own.url, user, pass: `${user}-pass` } });
  const [w, rd, full] = [await createAttDb(), await createAttDb(), await createAttDb()];
  try {
    // An administrator creates the stream, as the README says; the writer creates the bucket.
    const nc = await connect({ servers: own.url, user: 'admin', pass: 'admin-pass' });
    await (await nc.jetstreamManager()).streams.add({ name: S, subjects: [`${P}.*`] });
    await nc.close();
    const rw = replicatePeople(own.url, w, S, as('writer'));
    const writerErrors = collectErrors(rw);
    await rw.awaitInitialReplication();
    await putAttachment(w, 'big', 'big.bin', bytesOf(2 * MB, 71));
    await putAttachment(w, 'small', 'small.txt', 'inline is fine', 'text/plain');
    await w.people.insert(person('plain'));
    await rw.awaitInSync();
    assert.deepEqual(natsErrors(writerErrors), []);
    assert.equal((await bucketObjects(own.url, bucket, { user: 'admin', pass: 'admin-pass' })).length, 1);
    const rf = replicatePeople(own.url, full, S, as('fullreader'));
    const fullErrors = collectErrors(rf);
    await rf.awaitInitialReplication();
    assert.equal(sha256(await bytesOfAttachment(await attachmentOn(full, 'big', 'big.bin'))), sha256(bytesOf(2 * MB, 71)));
    assert.deepEqual(natsErrors(fullErrors), []);

    const rr = replicatePeople(own.url, rd, S, as('reader'));
    const errors = collectErrors(rr);
    const denied = await firstMatching(rr.error$, (e) => codeOf(e) === 'NATS_PERMISSION_DENIED', 'a permission error', 30000);
    assert.equal(denied.documentId, 'big');
    assert.equal(denied.attachmentId, 'big.bin');
    assert.match(denied.message, new RegExp(`attachments bucket "${bucket}"`));
    assert.match(denied.message, /attachment "big\.bin" of document "big"/);
    await rr.awaitInitialReplication();
    assert.equal(await (await attachmentOn(rd, 'small', 'small.txt')).getStringData(), 'inline is fine');
    assert.ok(await rd.people.findOne('plain').exec());
    assert.equal(await rd.people.findOne('big').exec(), null, 'no document with an empty attachment');
    // Live changes keep coming.
    await w.people.insert(person('later'));
    await waitFor(() => rd.people.findOne('later').exec(), 'a later document on the reader');
    // The reader's own large attachment cannot go to the bucket: that document is refused and
    // reported, its small one is written.
    await putAttachment(rd, 'from-reader', 'large.bin', bytesOf(2 * MB, 72));
    await putAttachment(rd, 'small-from-reader', 'note.txt', 'fits in the message', 'text/plain');
    const refused = await firstMatching(rr.error$, (e) => e.documentId === 'from-reader', 'the refused push', 30000);
    assert.equal(refused.code, 'NATS_PERMISSION_DENIED');
    assert.equal(refused.attachmentId, 'large.bin');
    assert.match(refused.message, /document "from-reader" was not pushed: its attachment "large\.bin" needs the Object Store/);
    assert.equal(await (await attachmentOn(w, 'small-from-reader', 'note.txt')).getStringData(), 'fits in the message');
    assert.ok((await rr.stats()).documentsRejected >= 1);
    assert.deepEqual([...new Set(errors.map(codeOf))], ['NATS_PERMISSION_DENIED']);
  } finally {
    await w.close();
    await rd.close();
    await full.close();
    await own.destroy();
  }
});

test('what the official plugin writes: on RxDB 17 the data is lost and reported, on RxDB 16 it is base64 in the stub and read', async () => {
  const streamName = uniqueName('attofficial');
  const [ours, theirs] = [await createAttDb(), await createAttDb()];
  try {
    const r = replicatePeople(server.url, ours, streamName);
    const errors = collectErrors(r);
    await r.awaitInitialReplication(); // creates the stream
    // Push only: the official plugin's pull waits 30 s for each short fetch.
    const ro = replicateNatsOfficial({
      collection: theirs.people,
      replicationIdentifier: `official-${streamName}`,
      streamName,
      subjectPrefix: `${streamName}.people`,
      connection: { servers: server.url, maxReconnectAttempts: 0 },
      push: {},
      live: true,
    });
    const text = 'written by the official plugin';
    await putAttachment(theirs, 'theirs', 'file.txt', text, 'text/plain');
    if (RXDB_MAJOR >= 17) {
      const err = await firstMatching(r.error$, (e) => e.documentId === 'theirs', 'the report of the official write');
      assert.equal(err.code, 'NATS_ATTACHMENT_MISSING');
      assert.equal(err.attachmentId, 'file.txt');
      assert.match(err.message, /neither its data nor a reference/);
      const body = await newestBody(streamName, 'theirs');
      assert.deepEqual(body._attachments['file.txt'].data, {}, 'the official plugin wrote the Blob as {}');
      // The revision before the attachment (the insert) may be there; never an empty attachment.
      const doc = await ours.people.findOne('theirs').exec();
      assert.equal(doc && doc.getAttachment('file.txt'), null);
      assert.deepEqual([...new Set(errors.map(codeOf))], ['NATS_ATTACHMENT_MISSING']);
    } else {
      assert.equal(await (await attachmentOn(ours, 'theirs', 'file.txt')).getStringData(), text);
      assert.deepEqual(natsErrors(errors), []);
    }
    await ro.cancel();
  } finally {
    await ours.close();
    await theirs.close();
  }
});

test('attachment options are checked at replicateNats() time, naming the option', async () => {
  const db = await createAttDb();
  try {
    for (const [attachments, named] of [
      ['files', /option attachments must be a object/],
      [{ inlineMaxBytes: -1 }, /attachments\.inlineMaxBytes must be an integer >= 0/],
      [{ inlineMaxBytes: 1.5 }, /attachments\.inlineMaxBytes must be an integer >= 0/],
      [{ bucket: 7 }, /attachments\.bucket must be a string/],
      [{ bucket: 'a.b' }, /attachments\.bucket "a\.b" is not a valid Object Store bucket name/],
      [{ bukket: 'x' }, /unknown option attachments\.bukket/],
    ]) {
      assert.throws(() => replicatePeople(server.url, db, uniqueName('attopt'), { attachments }), (e) => {
        assert.equal(e.code, 'NATS_INVALID_OPTION');
        assert.match(e.message, named);
        return true;
      });
    }
    // A stream name that cannot name a bucket needs attachments.bucket.
    assert.throws(() => replicatePeople(server.url, db, 'people$1'), /set attachments\.bucket/);
  } finally {
    await db.close();
  }
});
