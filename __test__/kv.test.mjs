// The KV layout (option `kv`): the collection is a NATS KV bucket. The other party in these tests
// is nats.js's own KV API (`js.views.kv`), a client we did not write: what it puts, deletes and
// purges arrives in RxDB, and what RxDB writes is what its get/keys/watch report.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { deepEqual } from 'rxdb/plugins/utils';
import { keyFor } from 'rxdb-nats-native';
import { replicateNats } from './harness/rxdb.mjs';
import { startNatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, docsOf, collectErrors, codeOf, firstMatching } from './harness/rxdb.mjs';

let server;
let nc;
before(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});
after(async () => {
  await nc.close();
  await server.destroy();
});

const text = (value) => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
const valueOf = (entry) => entry && JSON.parse(new TextDecoder().decode(entry.value));
/** nats.js's view of a bucket (creating it when missing, as nats.js does). */
const kvOf = (bucket, options = {}) => nc.jetstream().views.kv(bucket, options);

const replicate = (db, bucket, extra = {}) =>
  replicateNats({
    collection: db.people,
    replicationIdentifier: `kv-${bucket}`,
    kv: { bucket },
    connection: { servers: server.url },
    pull: {},
    push: {},
    retryTime: 200,
    ...extra,
  });

/** The documents of a database without RxDB's own fields. */
const content = async (db) =>
  Object.fromEntries(Object.entries(await docsOf(db)).map(([id, { _meta, _rev, _attachments, _deleted, ...d }]) => [id, d]));

async function keysOf(kv) {
  const keys = [];
  for await (const key of await kv.keys()) keys.push(key);
  return keys.sort();
}

test('values a KV client puts arrive in RxDB, on the initial pull and live; its deletes and purges delete', async () => {
  const bucket = uniqueName('kvin');
  const kv = await kvOf(bucket, { history: 5 });
  await kv.put('alice', text({ id: 'alice', name: 'Alice', age: 30 }));
  await kv.put('bob', text({ name: 'Bob' })); // no id in the value: the key names the document
  await kv.put('carol', text({ id: 'carol', name: 'Carol v1' }));
  await kv.put('carol', text({ id: 'carol', name: 'Carol v2' }));
  await kv.put('gone', text({ id: 'gone', name: 'Gone' }));
  await kv.delete('gone');
  const db = await createDb();
  const r = replicate(db, bucket, { push: undefined });
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  assert.deepEqual(await content(db), {
    alice: { id: 'alice', name: 'Alice', age: 30 },
    bob: { id: 'bob', name: 'Bob' },
    carol: { id: 'carol', name: 'Carol v2' },
  });
  const stats = await r.stats();
  assert.equal(stats.documentsPulled, 3 + 1, 'each key once, its newest entry (the delete marker too)');

  await kv.put('dave', text({ id: 'dave', name: 'Dave' }));
  await kv.update('alice', text({ id: 'alice', name: 'Alice', age: 31 }), (await kv.get('alice')).revision);
  await waitFor(async () => (await db.people.findOne('dave').exec()) && (await db.people.findOne('alice').exec()).age === 31, 'live puts');
  await kv.delete('bob');
  await waitFor(async () => !(await db.people.findOne('bob').exec()), 'the live delete');
  // One after the other: on nats-server 2.9.10 a delete and a purge sent back to back once left
  // the delete undelivered to the live feed in CI (not reproduced here; see the closing note).
  await kv.purge('carol');
  await waitFor(async () => !(await db.people.findOne('carol').exec()), 'the live purge');
  assert.deepEqual(Object.keys(await content(db)).sort(), ['alice', 'dave']);
  // RxDB keeps the deletes as deleted documents, as for any replication.
  const deleted = await db.people.storageInstance.findDocumentsById(['bob', 'carol'], true);
  assert.deepEqual(deleted.map((d) => [d.id, d._deleted]).sort(), [['bob', true], ['carol', true]]);
  assert.deepEqual(errors, []);
  await db.close();
});

test("RxDB's inserts, updates and deletes are what kv.get, kv.keys and kv.watch report", async () => {
  const bucket = uniqueName('kvout');
  const db = await createDb();
  const r = replicate(db, bucket); // creates the bucket
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  const kv = await kvOf(bucket);
  const seen = [];
  const watch = await kv.watch({ include: 'updates' });
  (async () => {
    for await (const e of watch) seen.push([e.key, e.operation, e.value.length ? valueOf(e) : null]);
  })();
  await db.people.bulkInsert([
    { id: 'a', name: 'A', age: 1, tags: ['x'] },
    { id: 'b', name: 'B', age: 2, tags: [] },
  ]);
  await r.awaitInSync();
  await (await db.people.findOne('a').exec()).incrementalPatch({ age: 10 });
  await r.awaitInSync();
  await (await db.people.findOne('b').exec()).remove();
  await r.awaitInSync();

  // The value is the plain document: no RxDB field, no deleted flag.
  assert.deepEqual(valueOf(await kv.get('a')), { id: 'a', name: 'A', age: 10, tags: ['x'] });
  const b = await kv.get('b');
  assert.equal(b.operation, 'DEL', 'the RxDB delete is a KV delete');
  assert.deepEqual(await keysOf(kv), ['a']);
  await waitFor(() => seen.length >= 4, 'the watch to see four entries');
  watch.stop();
  assert.deepEqual(seen, [
    ['a', 'PUT', { id: 'a', name: 'A', age: 1, tags: ['x'] }],
    ['b', 'PUT', { id: 'b', name: 'B', age: 2, tags: [] }],
    ['a', 'PUT', { id: 'a', name: 'A', age: 10, tags: ['x'] }],
    ['b', 'DEL', null],
  ]);

  // A key deleted on the server may be created again (as kv.create may), from RxDB too.
  await db.people.insert({ id: 'b', name: 'B again' });
  await r.awaitInSync();
  assert.deepEqual(valueOf(await kv.get('b')), { id: 'b', name: 'B again' });
  assert.deepEqual(errors, []);
  await db.close();
});

test('a document deleted and created again by a push-only replication is live in the bucket', async () => {
  // Without a pull, RxDB's assumed server state of the deleted document is the whole document
  // it pushed, while the server holds a delete marker with the key only: the two are one state.
  const bucket = uniqueName('kvpush');
  const db = await createDb();
  const r = replicate(db, bucket, { pull: undefined });
  const errors = collectErrors(r);
  const kv = await kvOf(bucket);
  await db.people.insert({ id: 'p', name: 'first', age: 1 });
  await r.awaitInSync();
  await (await db.people.findOne('p').exec()).remove();
  await r.awaitInSync();
  assert.equal((await kv.get('p')).operation, 'DEL');
  await db.people.insert({ id: 'p', name: 'second', age: 2 });
  await r.awaitInSync();
  assert.deepEqual(valueOf(await kv.get('p')), { id: 'p', name: 'second', age: 2 });
  // A key a KV client deleted is created again by an insert that never saw it, as kv.create does.
  await kv.put('q', text({ id: 'q', name: 'from kv' }));
  await kv.delete('q');
  await db.people.insert({ id: 'q', name: 'from RxDB' });
  await r.awaitInSync();
  assert.deepEqual(valueOf(await kv.get('q')), { id: 'q', name: 'from RxDB' });
  assert.equal((await r.stats()).conflicts, 0);
  assert.deepEqual(errors, []);
  await db.close();
});

/** A conflict handler that merges tags, so a lost write shows as a missing tag. */
function mergingHandler(calls) {
  return {
    isEqual(a, b) {
      const tags = (d) => [...(d.tags || [])].sort();
      return deepEqual({ ...a, tags: tags(a) }, { ...b, tags: tags(b) });
    },
    async resolve(input) {
      calls.count++;
      const tags = [...new Set([...(input.realMasterState.tags || []), ...(input.newDocumentState.tags || [])])].sort();
      return { ...input.realMasterState, tags };
    },
  };
}

test('concurrent writes by RxDB and a KV client end in the conflict handler, nothing lost', async () => {
  const bucket = uniqueName('kvconf');
  const kv = await kvOf(bucket);
  const ids = Array.from({ length: 20 }, (_, i) => `doc${i}`);
  for (const id of ids) await kv.put(id, text({ id, name: id, tags: ['start'] }));
  const calls = { count: 0 };
  const db = await createDb({ conflictHandler: mergingHandler(calls) });
  const r = replicate(db, bucket);
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  await r.pause();
  // Both sides change every document while the replication is paused.
  for (const id of ids) {
    const doc = await db.people.findOne(id).exec();
    await doc.incrementalPatch({ tags: [...doc.tags, 'rxdb'] });
    const entry = await kv.get(id);
    await kv.update(id, text({ ...valueOf(entry), tags: [...valueOf(entry).tags, 'kv'] }), entry.revision);
  }
  // And both create the same new documents.
  await db.people.bulkInsert(['new1', 'new2'].map((id) => ({ id, name: id, tags: ['rxdb'] })));
  for (const id of ['new1', 'new2']) await kv.create(id, text({ id, name: id, tags: ['kv'] }));
  await r.start();
  const all = [...ids, 'new1', 'new2'];
  const want = (id) => (ids.includes(id) ? 'kv,rxdb,start' : 'kv,rxdb');
  await waitFor(async () => {
    for (const id of all) {
      if ((await db.people.findOne(id).exec()).tags.join() !== want(id)) return false;
      if (valueOf(await kv.get(id)).tags.join() !== want(id)) return false;
    }
    return true;
  }, 'RxDB and the bucket to hold every tag of every document');
  assert.ok(calls.count >= all.length, `the handler resolved ${calls.count} conflicts`);
  assert.deepEqual(errors, []);
  await db.close();
});

test('odd ids round-trip through keys KV allows (keyFor), in both directions', async () => {
  const bucket = uniqueName('kvids');
  const ids = ['plain', 'a.b', 'a b', 'ünï☃', '=eq', 'a..b', '.dot', '*', 'a>b', 'user@example.com', 'x/y_z-1=2'];
  const a = await createDb();
  const b = await createDb();
  const ra = replicate(a, bucket, { replicationIdentifier: 'kv-ids-a' });
  const rb = replicate(b, bucket, { replicationIdentifier: 'kv-ids-b' });
  const errors = collectErrors([ra, rb]);
  await a.people.bulkInsert(ids.map((id) => ({ id, name: `name of ${id}` })));
  await ra.awaitInSync();
  const kv = await kvOf(bucket);
  assert.deepEqual(await keysOf(kv), ids.map((id) => keyFor(id)).sort());
  for (const id of ids) {
    const key = keyFor(id);
    assert.match(key, /^[-/_=.a-zA-Z0-9]+$/, `key of ${JSON.stringify(id)}`);
    assert.deepEqual(valueOf(await kv.get(key)), { id, name: `name of ${id}` });
  }
  assert.equal(keyFor('plain'), 'plain');
  assert.equal(keyFor('x/y_z-1=2'), 'x/y_z-1=2');
  // A KV client writes an odd id under its key, without the id in the value.
  await kv.put(keyFor('from kv!'), text({ name: 'from kv' }));
  const want = [...ids, 'from kv!'].sort();
  await waitFor(async () => deepEqual(Object.keys(await docsOf(b)).sort(), want), 'b to hold every id');
  await waitFor(async () => deepEqual(Object.keys(await docsOf(a)).sort(), want), 'a to hold every id');
  assert.equal((await b.people.findOne('from kv!').exec()).name, 'from kv');
  assert.deepEqual(errors, []);
  await a.close();
  await b.close();
});

/** The stream settings that must agree for every NATS client to open a bucket. */
const bucketSettings = ({ config }) => ({
  subjects: config.subjects,
  max_msgs_per_subject: config.max_msgs_per_subject,
  allow_rollup_hdrs: config.allow_rollup_hdrs,
  deny_delete: config.deny_delete,
  allow_direct: config.allow_direct,
  discard: config.discard,
  max_msgs: config.max_msgs,
  max_bytes: config.max_bytes,
  max_age: config.max_age,
  max_msg_size: config.max_msg_size,
  storage: config.storage,
  num_replicas: config.num_replicas,
  duplicate_window: config.duplicate_window,
});

test('a bucket created by nats.js and one created here are interchangeable', async () => {
  const jsm = await nc.jetstreamManager();
  const theirs = uniqueName('theirs');
  const ours = uniqueName('ours');
  const kvTheirs = await kvOf(theirs, { history: 3 });
  await kvTheirs.put('t', text({ id: 't', name: 'from nats.js' }));
  const db = await createDb();
  const rTheirs = replicate(db, theirs, { kv: { bucket: theirs, create: false } });
  const rOurs = replicate(db, ours, { kv: { bucket: ours, history: 3 }, pull: undefined });
  const errors = collectErrors([rTheirs, rOurs]);
  await rTheirs.awaitInitialReplication();
  await rOurs.awaitInitialReplication();
  assert.equal((await db.people.findOne('t').exec()).name, 'from nats.js');
  await rOurs.awaitInSync();
  const [infoTheirs, infoOurs] = [await jsm.streams.info(`KV_${theirs}`), await jsm.streams.info(`KV_${ours}`)];
  // The same settings, but deny_delete: true as nats.go and the nats CLI write it (nats.js
  // writes false; either way no client deletes messages of a bucket).
  const same = (settings) => ({
    ...settings,
    subjects: settings.subjects.map((s) => s.replace(/\.[^.]+\.>$/, '.<bucket>.>')),
    deny_delete: undefined,
  });
  assert.deepEqual(same(bucketSettings(infoOurs)), same(bucketSettings(infoTheirs)));
  assert.equal(infoOurs.config.deny_delete, true);
  // nats.js opens ours without a config mismatch, and reads what this replication wrote.
  const kvOurs = await kvOf(ours, { history: 3 });
  assert.equal((await kvOurs.status()).history, 3);
  assert.deepEqual(valueOf(await kvOurs.get('t')), { id: 't', name: 'from nats.js' });
  assert.deepEqual(errors, []);
  await db.close();
});

test('KV options are checked: with streamName, a missing bucket with create: false, a custom deletedField', async () => {
  const db = await createDb();
  assert.throws(
    () => replicate(db, 'b', { streamName: 's', subjectPrefix: 's.p' }),
    (err) => err.code === 'NATS_INVALID_OPTION' && /kv replaces streamName and subjectPrefix/.test(err.message)
  );
  assert.throws(() => replicate(db, 'b', { kv: { bucket: 'a.b' } }), (err) => err.code === 'NATS_INVALID_OPTION' && /kv\.bucket/.test(err.message));
  assert.throws(() => replicate(db, 'b', { kv: { bucket: 'b', history: 65 } }), (err) => err.code === 'NATS_INVALID_OPTION' && /kv\.history/.test(err.message));
  assert.throws(() => replicate(db, 'b', { kv: { bucket: 'b', ttl: 5 } }), (err) => err.code === 'NATS_INVALID_OPTION' && /kv\.ttl/.test(err.message));
  assert.throws(() => replicate(db, 'b', { deletedField: 'gone' }), (err) => err.code === 'NATS_INVALID_OPTION' && /deletedField/.test(err.message));
  const missing = uniqueName('missing');
  const r = replicate(db, missing, { kv: { bucket: missing, create: false } });
  const err = await firstMatching(r.error$, () => true, 'an error');
  assert.equal(codeOf(err), 'NATS_BUCKET_NOT_FOUND');
  const inner = err.parameters?.errors?.[0] || err;
  assert.match(inner.message, new RegExp(`KV bucket "${missing}" does not exist`));
  await r.cancel();
  const jsm = await nc.jetstreamManager();
  await assert.rejects(jsm.streams.info(`KV_${missing}`), /stream not found/, 'create: false created nothing');
  await db.close();
});

test('values other services put that are no valid documents are reported and skipped', async () => {
  const bucket = uniqueName('kvbad');
  const kv = await kvOf(bucket);
  await kv.put('ok1', text({ id: 'ok1', name: 'fine' }));
  await kv.put('notjson', text('this is not JSON'));
  await kv.put('wrongid', text({ id: 'someone-else', name: 'x' }));
  await kv.put('schema', text({ id: 'schema', name: 'x', age: 'old' }));
  await kv.put('ok2', text({ id: 'ok2', name: 'fine' }));
  const db = await createDb();
  const r = replicate(db, bucket);
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  assert.deepEqual(Object.keys(await docsOf(db)).sort(), ['ok1', 'ok2']);
  await waitFor(() => errors.length >= 3, 'three reports');
  const byKey = Object.fromEntries(errors.map((e) => [e.subject, e.code]));
  assert.deepEqual(byKey, {
    [`$KV.${bucket}.notjson`]: 'NATS_MALFORMED_MESSAGE',
    [`$KV.${bucket}.wrongid`]: 'NATS_MALFORMED_MESSAGE',
    [`$KV.${bucket}.schema`]: 'NATS_INVALID_DOCUMENT',
  });
  // Repaired by a valid value, the document arrives.
  await kv.put('notjson', text({ name: 'now valid' }));
  await waitFor(() => db.people.findOne('notjson').exec(), 'the repaired document');
  await db.close();
});
