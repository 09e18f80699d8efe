// A stream keeps every revision of every document. A fresh client reads only the newest revision
// of each (time proportional to the documents, not to the writes); a stream can be bounded
// (streamConfig.maxMsgsPerSubject) and one that grew can be compacted (compactStream).
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { connect } from 'nats';
import { compactStream } from 'rxdb-nats-native';
import { startNatsServer } from './harness/nats-server.mjs';
import {
  createDb, uniqueName, waitFor, docsOf, streamMessages, collectErrors, codeOf, replicatePeople,
} from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const person = (i, revision, extra = {}) => ({ id: `d${String(i).padStart(4, '0')}`, name: `rev ${revision}`, age: revision, tags: [], ...extra });

/**
 * Writes `docs` documents `revisions` times each, round-robin (so no batch of a history replay
 * holds two revisions of one document), as a plain NATS client would; the documents in
 * `deleted` end with a tombstone. Returns the newest body of each document by id.
 */
async function writeHistory(streamName, { docs, revisions, deleted = new Set(), create = true }) {
  const prefix = `${streamName}.people`;
  const nc = await connect({ servers: server.url });
  const newest = new Map();
  try {
    if (create) await (await nc.jetstreamManager()).streams.add({ name: streamName, subjects: [`${prefix}.*`] });
    const js = nc.jetstream();
    for (let r = 1; r <= revisions; r++) {
      const acks = [];
      for (let i = 0; i < docs; i++) {
        const doc = person(i, r, { _deleted: r === revisions && deleted.has(i) });
        newest.set(doc.id, doc);
        acks.push(js.publish(`${prefix}.${doc.id}`, new TextEncoder().encode(JSON.stringify(doc))));
      }
      await Promise.all(acks);
    }
  } finally {
    await nc.close();
  }
  return newest;
}

/** Whether rxdb/plugins/replication-nats could start on the stream: it re-adds it with its own config. */
async function officialPluginCanOpen(streamName) {
  const nc = await connect({ servers: server.url });
  try {
    await (await nc.jetstreamManager()).streams.add({ name: streamName, subjects: [`${streamName}.people.*`] });
    return true;
  } catch (err) {
    assert.match(err.message, /different configuration/);
    return false;
  } finally {
    await nc.close();
  }
}

/** The documents a database should hold given the server's newest bodies. */
const alive = (newest) =>
  Object.fromEntries([...newest.values()].filter((d) => !d._deleted).map(({ _deleted, ...d }) => [d.id, d]));
const content = (docs) => Object.fromEntries(Object.entries(docs).map(([id, { _meta, _rev, _attachments, _deleted, ...d }]) => [id, d]));

test('a fresh client pulls the newest revision of each document once, deletions included', async () => {
  const streamName = uniqueName('fresh');
  const deleted = new Set([3, 17, 150, 199]);
  const newest = await writeHistory(streamName, { docs: 200, revisions: 10, deleted });
  const db = await createDb();
  const r = replicatePeople(server.url, db, streamName, { pull: { batchSize: 50 }, push: undefined });
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  assert.deepEqual(content(await docsOf(db)), alive(newest));
  const stats = await r.stats();
  // 2,000 messages on the stream; each of the 200 documents was handed over once.
  assert.equal(stats.documentsPulled, 200);
  assert.equal(stats.checkpoint, 2000);
  assert.equal(stats.lag, 0);
  assert.deepEqual(errors, []);
  await r.cancel();
  await db.close();
});

test('a client stopped in the middle of its initial pull resumes with nothing missed', async () => {
  const streamName = uniqueName('resume');
  // More documents than the pull handler's first two reads take (1,000, then 2,000 while RxDB
  // takes the first), so it stops mid-stream and with documents read ahead that RxDB did not get
  // yet.
  const DOCS = 4000;
  const before = await writeHistory(streamName, { docs: DOCS, revisions: 3 });
  const db = await createDb();
  const options = { replicationIdentifier: `resume-${streamName}`, push: undefined, pull: { batchSize: 20 } };
  const first = replicatePeople(server.url, db, streamName, options);
  // Cancelled as soon as a few batches are in, from RxDB's own change events.
  let inserted = 0;
  await new Promise((resolve) => {
    const sub = db.people.insert$.subscribe(() => {
      if (++inserted < 60) return;
      sub.unsubscribe();
      resolve(first.cancel());
    });
  });
  const stopped = await first.stats();
  const taken = await db.people.count().exec();
  assert.ok(taken < 1000 && stopped.checkpoint < 3 * DOCS, `stopped mid-pull: ${taken} documents, checkpoint ${stopped.checkpoint}`);

  // Meanwhile: some documents taken get new revisions, two are deleted; those read ahead and not
  // taken stay as they were, so only the checkpoint brings them.
  const changed = await writeHistory(streamName, { docs: 50, revisions: 1, deleted: new Set([0, 1]), create: false });
  const newest = new Map([...before, ...changed]);

  const second = replicatePeople(server.url, db, streamName, { ...options, pull: { batchSize: 20 } });
  const errors = collectErrors(second);
  await second.awaitInitialReplication();
  await second.awaitInSync();
  assert.deepEqual(content(await docsOf(db)), alive(newest));
  assert.deepEqual(errors, []);
  await second.cancel();
  await db.close();
});

test('streamConfig.maxMsgsPerSubject bounds the revisions kept; the newest and tombstones stay', async () => {
  const streamName = uniqueName('bounded');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicatePeople(server.url, a, streamName, { streamConfig: { maxMsgsPerSubject: 2 } });
  await ra.awaitInitialReplication();
  await a.people.insert(person(1, 0));
  await a.people.insert(person(2, 0));
  for (let v = 1; v <= 5; v++) {
    await (await a.people.findOne('d0001').exec()).incrementalPatch({ age: v });
    await ra.awaitInSync();
  }
  await (await a.people.findOne('d0002').exec()).remove();
  await ra.awaitInSync();
  const messages = await streamMessages(server.url, streamName);
  const perSubject = {};
  for (const m of messages) (perSubject[m.subject] ||= []).push(m);
  assert.deepEqual(Object.values(perSubject).map((ms) => ms.length), [2, 2]);
  assert.equal(JSON.parse(perSubject[`${streamName}.people.d0002`].at(-1).body)._deleted, true);
  assert.equal((await ra.stats()).maxMsgsPerSubject, 2);

  // A fresh client learns of the deletion; concurrent writes still conflict on the newest revision.
  const rb = replicatePeople(server.url, b, streamName);
  await rb.awaitInitialReplication();
  assert.deepEqual(Object.keys(await docsOf(b)), ['d0001']);
  assert.equal((await b.people.findOne('d0001').exec()).age, 5);
  await Promise.all([
    (await a.people.findOne('d0001').exec()).incrementalPatch({ name: 'from a' }),
    (await b.people.findOne('d0001').exec()).incrementalPatch({ name: 'from b' }),
  ]);
  await waitFor(async () => {
    const [da, db2] = [await a.people.findOne('d0001').exec(), await b.people.findOne('d0001').exec()];
    return da.name === db2.name && da.age === db2.age;
  }, 'both clients to agree on d0001');
  const last = JSON.parse((await streamMessages(server.url, streamName)).filter((m) => m.subject.endsWith('d0001')).at(-1).body);
  assert.equal((await a.people.findOne('d0001').exec()).name, last.name);
  for (const r of [ra, rb]) await r.cancel();
  for (const db of [a, b]) await db.close();
});

test('maxMsgsPerSubject must be an integer >= 1', async () => {
  const db = await createDb();
  for (const bad of [0, -1, 1.5, '2']) {
    assert.throws(
      () => replicatePeople(server.url, db, uniqueName('badlimit'), { streamConfig: { maxMsgsPerSubject: bad } }),
      (err) => err.code === 'NATS_INVALID_OPTION' && /streamConfig\.maxMsgsPerSubject/.test(err.message),
      `maxMsgsPerSubject ${JSON.stringify(bad)}`
    );
  }
  await db.close();
  await assert.rejects(compactStream({ streamName: uniqueName('nostream'), connection: { servers: server.url } }), (err) =>
    err.code === 'NATS_INVALID_OPTION' && /there is no stream/.test(err.message));
  await assert.rejects(compactStream({ streamName: 'x', maxMsgsPerSubject: 0 }), (err) => err.code === 'NATS_INVALID_OPTION');
  await assert.rejects(compactStream({ streamName: 'x', keep: 1 }), (err) => err.code === 'NATS_INVALID_OPTION' && /keep/.test(err.message));
});

test('compactStream shrinks a grown stream to the newest revision of each document while replications run', async () => {
  const streamName = uniqueName('compact');
  const running = await createDb();
  const rRunning = replicatePeople(server.url, running, streamName, { pull: { batchSize: 30 } });
  const runningErrors = collectErrors(rRunning);
  await rRunning.awaitInitialReplication(); // creates the stream, then follows it live
  const deleted = new Set([5, 55, 95]);
  const newest = await writeHistory(streamName, { docs: 100, revisions: 20, deleted, create: false });
  await waitFor(async () => (await running.people.count().exec()) === 97, 'the running client to follow the history');

  const result = await compactStream({ streamName, connection: { servers: server.url } });
  assert.equal(result.messagesBefore, 2000);
  assert.equal(result.messagesAfter, 100, 'one message per document, tombstones included');
  assert.equal(result.maxMsgsPerSubject, null, 'the stream config is left as it was');
  assert.ok(await officialPluginCanOpen(streamName));
  const kept = await streamMessages(server.url, streamName);
  assert.deepEqual(new Map(kept.map((m) => [JSON.parse(m.body).id, JSON.parse(m.body)])), newest);

  // Writes go on on both sides after the compaction.
  await (await running.people.findOne('d0010').exec()).incrementalPatch({ name: 'after compaction' });
  await rRunning.awaitInSync();
  await writeHistory(streamName, { docs: 20, revisions: 2, create: false });
  const fresh = await createDb();
  const rFresh = replicatePeople(server.url, fresh, streamName);
  const freshErrors = collectErrors(rFresh);
  await rFresh.awaitInitialReplication();
  const server$ = new Map((await streamMessages(server.url, streamName)).map((m) => [JSON.parse(m.body).id, JSON.parse(m.body)]));
  await waitFor(async () => isDeepStrictEqual(content(await docsOf(running)), alive(server$)), 'the running client to equal the server');
  await waitFor(async () => isDeepStrictEqual(content(await docsOf(fresh)), alive(server$)), 'the fresh client to equal the server');
  assert.equal(server$.size, 100);
  assert.equal((await rFresh.stats()).maxMsgsPerSubject, null);

  // limitStream: true also keeps it bounded from now on (and the official plugin cannot open it).
  const limited = await compactStream({ streamName, connection: { servers: server.url }, limitStream: true });
  assert.deepEqual([limited.messagesAfter, limited.maxMsgsPerSubject], [100, 1]);
  assert.equal((await rRunning.stats()).maxMsgsPerSubject, 1);
  await (await running.people.findOne('d0011').exec()).incrementalPatch({ name: 'bounded' });
  await rRunning.awaitInSync();
  await waitFor(async () => (await fresh.people.findOne('d0011').exec())?.name === 'bounded', 'the write after the limit on the fresh client');
  assert.equal((await streamMessages(server.url, streamName)).length, 100);
  assert.equal(await officialPluginCanOpen(streamName), false);
  assert.deepEqual([...runningErrors, ...freshErrors], []);
  for (const r of [rRunning, rFresh]) await r.cancel();
  for (const db of [running, fresh]) await db.close();
});
