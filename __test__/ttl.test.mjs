// Deletions that expire: `streamConfig.tombstoneTtl` (nats-server >= 2.11, per-message TTLs). A
// deletion rolls up its document's earlier revisions and leaves the stream once the TTL has
// passed, so a stream of short-lived documents stops growing; clients that were away across the
// expiry reconcile. On an older server the option is refused with NATS_UNSUPPORTED_SERVER.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { replicateNats as replicateNatsOfficial } from 'rxdb/plugins/replication-nats';
import { person, ids, range, twoSynced } from './harness/people.mjs';
import { startNatsServer, natsServerVersion, onServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, docsOf, collectErrors, codeOf, replicatePeople, streamMessages, firstMatching } from './harness/rxdb.mjs';

// Per-message TTLs came with nats-server 2.11.
const needsTtl = onServer(2, 11);
const needsOldServer = onServer(2, 11, { below: true });

const TTL = 1000;
const ttlConfig = { streamConfig: { tombstoneTtl: TTL } };

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

const idsOf = (indexes) => indexes.map((i) => person(i).id).sort();

async function withNats(fn) {
  const nc = await connect({ servers: server.url });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

/** The messages stream `streamName` holds per document id. */
async function messagesPerDocument(streamName) {
  const counts = {};
  for (const m of await streamMessages(server.url, streamName)) {
    const id = m.subject.slice(m.subject.lastIndexOf('.') + 1);
    counts[id] = (counts[id] || 0) + 1;
  }
  return counts;
}

/** Waits until none of the documents `indexes` has a message left on the stream. */
const expired = (streamName, indexes) =>
  waitFor(async () => {
    const counts = await messagesPerDocument(streamName);
    return indexes.every((i) => !counts[person(i).id]);
  }, `the tombstones of ${indexes.length} documents to expire`);


test('a deletion replaces its document\'s history, then leaves the stream; a fresh client gets only the survivors', needsTtl, async () => {
  const streamName = uniqueName('ttlexpire');
  const { a, b, ra, rb } = await twoSynced(server.url, streamName, 10, ttlConfig);
  const errors = collectErrors([ra, rb]);
  // Three revisions of p001..p003, then 5 deletions.
  for (const i of [1, 2, 3]) await (await a.people.findOne(person(i).id).exec()).incrementalPatch({ name: 'second' });
  for (const i of [1, 2, 3]) await (await a.people.findOne(person(i).id).exec()).incrementalPatch({ name: 'third' });
  await ra.awaitInSync();
  assert.equal((await messagesPerDocument(streamName))[person(1).id], 3, 'three revisions before the deletion');
  const deleted = range(0, 5);
  const removedOnB = new Set();
  b.people.remove$.subscribe((event) => removedOnB.add(event.documentId));
  await a.people.bulkRemove(idsOf(deleted));
  await ra.awaitInSync();
  // The tombstone rolled up the earlier revisions: what is left of a deleted document is its
  // tombstone alone, or (the TTL may pass before this looks, on a loaded machine) nothing.
  for (const m of await streamMessages(server.url, streamName)) {
    if (deleted.some((i) => m.subject.endsWith(`.${person(i).id}`))) assert.equal(JSON.parse(m.body)._deleted, true, `${m.subject} #${m.seq}`);
  }
  // B, running, saw each go.
  await waitFor(() => deleted.every((i) => removedOnB.has(person(i).id)), 'the deletions on B');
  // After the TTL: nothing of them, and the survivors untouched.
  await expired(streamName, deleted);
  const after = await messagesPerDocument(streamName);
  assert.deepEqual(Object.keys(after).sort(), idsOf(range(5, 10)));
  const c = await createDb();
  const rc = replicatePeople(server.url, c, streamName, { ...ttlConfig, push: undefined });
  await rc.awaitInitialReplication();
  assert.deepEqual(ids(await docsOf(c)), idsOf(range(5, 10)));
  // The running clients go on after the expiry.
  await a.people.insert(person(50));
  await waitFor(async () => ids(await docsOf(b)).includes(person(50).id), 'a live write after the expiry');
  assert.deepEqual(errors.map(codeOf), []);
  await Promise.all([ra.cancel(), rb.cancel(), rc.cancel()]);
  await Promise.all([a.close(), b.close(), c.close()]);
});

test('a client stopped across the expiry, with writes of its own, converges when it comes back', needsTtl, async () => {
  const streamName = uniqueName('ttlaway');
  const { a, b, ra, rb } = await twoSynced(server.url, streamName, 40, ttlConfig);
  await rb.cancel();
  const deleted = range(0, 15);
  await a.people.bulkRemove(idsOf(deleted));
  await ra.awaitInSync();
  await expired(streamName, deleted);
  // While stopped, B writes: 3 new documents, an update of a survivor, an update of a deleted one.
  await b.people.bulkInsert(range(500, 503).map((i) => person(i)));
  await (await b.people.findOne(person(30).id).exec()).incrementalPatch({ name: 'updated by B' });
  await (await b.people.findOne(person(3).id).exec()).incrementalPatch({ name: 'updated by B while deleted elsewhere' });
  const removedOnB = new Set();
  b.people.remove$.subscribe((event) => removedOnB.add(event.documentId));

  const rb2 = replicatePeople(server.url, b, streamName, ttlConfig);
  const errors = collectErrors([ra, rb2]);
  await rb2.awaitInitialReplication();
  await rb2.awaitInSync();
  const expected = idsOf([...range(15, 40), ...range(500, 503)]);
  await waitFor(async () => ids(await docsOf(b)).join() === expected.join(), 'B without the expired documents');
  await waitFor(async () => ids(await docsOf(a)).join() === expected.join(), "B's own writes on A");
  await waitFor(async () => (await a.people.findOne(person(30).id).exec())?.name === 'updated by B', "B's update on A");
  for (const i of deleted) if (i !== 3) assert.ok(removedOnB.has(person(i).id), `remove$ for ${person(i).id}`);
  assert.equal((await rb2.stats()).resyncs, 1, 'one reconciliation');
  // Nothing came back: no deleted document has a message on the stream again.
  const counts = await messagesPerDocument(streamName);
  for (const i of deleted) if (i !== 3) assert.equal(counts[person(i).id], undefined, `${person(i).id} stays gone`);
  const c = await createDb();
  const rc = replicatePeople(server.url, c, streamName, { ...ttlConfig, push: undefined });
  await rc.awaitInitialReplication();
  assert.deepEqual(ids(await docsOf(c)), expected);
  assert.deepEqual(errors.map(codeOf), []);
  await Promise.all([ra.cancel(), rb2.cancel(), rc.cancel()]);
  await Promise.all([a.close(), b.close(), c.close()]);
});

test('in the KV layout a deletion is a purge marker that expires, and a client away across it converges', needsTtl, async () => {
  const bucket = uniqueName('ttlkv');
  const kvOptions = { kv: { bucket }, streamName: undefined, subjectPrefix: undefined, replicationIdentifier: `kv-${bucket}`, ...ttlConfig };
  const { a, b, ra, rb } = await twoSynced(server.url, bucket, 20, kvOptions);
  await rb.cancel();
  const deleted = range(0, 8);
  await a.people.bulkRemove(idsOf(deleted));
  await ra.awaitInSync();
  await withNats(async (nc) => {
    // What nats.js's own KV client sees: the key purged (the marker; unless its TTL has passed
    // already), then no key at all.
    const kv = await nc.jetstream().views.kv(bucket);
    const entry = await kv.get(person(0).id);
    assert.ok(entry === null || entry.operation === 'PURGE', `${person(0).id}: ${entry?.operation}`);
    await waitFor(async () => (await (await nc.jetstreamManager()).streams.info(`KV_${bucket}`)).state.messages === 12, 'the purge markers to expire');
    assert.equal(await kv.get(person(0).id), null);
  });
  await b.people.insert(person(600));
  const rb2 = replicatePeople(server.url, b, bucket, kvOptions);
  const errors = collectErrors([ra, rb2]);
  await rb2.awaitInitialReplication();
  const expected = idsOf([...range(8, 20), 600]);
  await waitFor(async () => ids(await docsOf(b)).join() === expected.join(), 'B without the expired keys');
  await waitFor(async () => ids(await docsOf(a)).join() === expected.join(), "B's own write on A");
  assert.equal((await rb2.stats()).resyncs, 1);
  assert.deepEqual(errors.map(codeOf), []);
  await Promise.all([ra.cancel(), rb2.cancel()]);
  await Promise.all([a.close(), b.close()]);
});

test('an existing stream without TTLs and rollups is a NATS_STREAM_MISMATCH that says how to allow them', needsTtl, async () => {
  const streamName = uniqueName('ttlplain');
  await withNats(async (nc) => (await nc.jetstreamManager()).streams.add({ name: streamName, subjects: [`${streamName}.people.*`] }));
  const db = await createDb();
  const r = replicatePeople(server.url, db, streamName, ttlConfig);
  const err = await firstMatching(r.error$, (e) => codeOf(e), 'an error on error$');
  assert.equal(codeOf(err), 'NATS_STREAM_MISMATCH');
  const message = err.parameters?.errors?.[0]?.message ?? err.message;
  assert.match(message, new RegExp(`nats stream edit ${streamName} --allow-msg-ttl --allow-rollup`));
  assert.match(message, /tombstoneTtl/);
  // The stream is left as it was, and nothing was written to it.
  await db.people.insert(person(1));
  const info = await withNats(async (nc) => (await nc.jetstreamManager()).streams.info(streamName));
  assert.equal(info.config.allow_msg_ttl ?? false, false);
  assert.equal(info.state.messages, 0);
  await r.cancel();
  await db.close();
});

test('official-plugin clients: refused by a stream made with tombstoneTtl; on a stream they made, their deletions stay', needsTtl, async () => {
  const streamName = uniqueName('ttlofficial');
  const official = (db, name, extra = {}) =>
    replicateNatsOfficial({
      collection: db.people,
      replicationIdentifier: `official-${name}`,
      streamName: name,
      subjectPrefix: `${name}.people`,
      // maxReconnectAttempts 0: the official plugin never closes its connection otherwise.
      connection: { servers: server.url, maxReconnectAttempts: 0 },
      pull: {},
      push: {},
      retryTime: 200,
      ...extra,
    });
  const n = await createDb();
  const rn = replicatePeople(server.url, n, streamName, ttlConfig);
  await rn.awaitInitialReplication();
  await n.people.insert(person(1));
  await rn.awaitInSync();
  // The official plugin adds the stream with its own config on every start; the server refuses
  // that for a stream with other settings (10058), so the official client never connects. It
  // says so only by rejecting start(), never on error$: started by hand here to see it.
  const o = await createDb();
  const ro = official(o, streamName, { autoStart: false });
  const officialErrors = collectErrors(ro);
  await assert.rejects(ro.start(), (err) => /already in use with a different configuration/.test(err.message));
  assert.deepEqual(ids(await docsOf(o)), [], 'the official client got nothing');
  assert.deepEqual(officialErrors, [], 'and said nothing on error$');
  await ro.cancel();
  await o.close();

  // A stream the official plugin made: tombstoneTtl clients are refused it (the mismatch above),
  // clients without it share it, and the official plugin's tombstones carry no TTL.
  const shared = uniqueName('ttlshared');
  const o2 = await createDb();
  const ro2 = official(o2, shared);
  await withNats(async (nc) => waitFor(async () => (await (await nc.jetstreamManager()).streams.info(shared).catch(() => null)) !== null, 'the official plugin\'s stream'));
  await o2.people.insert(person(2));
  await waitFor(async () => (await streamMessages(server.url, shared)).length === 1, 'the official write');
  await (await o2.people.findOne(person(2).id).exec()).remove();
  await waitFor(async () => (await streamMessages(server.url, shared)).length === 2, 'the official deletion');
  const tombstone = await withNats(async (nc) => (await nc.jetstreamManager()).streams.getMessage(shared, { last_by_subj: `${shared}.people.${person(2).id}` }));
  assert.equal(JSON.parse(new TextDecoder().decode(tombstone.data))._deleted, true);
  assert.equal(tombstone.header?.get('Nats-TTL') ?? '', '', 'no TTL on an official tombstone');
  await ro2.cancel();
  await o2.close();
  await rn.cancel();
  await n.close();
});

test('on a server without per-message TTLs, tombstoneTtl is NATS_UNSUPPORTED_SERVER naming 2.11, and no stream is made', needsOldServer, async () => {
  const streamName = uniqueName('ttlold');
  const db = await createDb();
  const r = replicatePeople(server.url, db, streamName, ttlConfig);
  const err = await firstMatching(r.error$, (e) => codeOf(e), 'an error on error$');
  assert.equal(codeOf(err), 'NATS_UNSUPPORTED_SERVER');
  const message = err.parameters?.errors?.[0]?.message ?? err.message;
  assert.match(message, /2\.11/);
  assert.match(message, new RegExp(natsServerVersion().replace(/\./g, '\\.')));
  assert.match(message, /tombstonesOlderThan/);
  const streams = await withNats(async (nc) => {
    const names = [];
    for await (const s of (await nc.jetstreamManager()).streams.names()) names.push(s);
    return names.flat();
  });
  assert.ok(!streams.includes(streamName), 'no stream made');
  await r.cancel();
  await db.close();
});
