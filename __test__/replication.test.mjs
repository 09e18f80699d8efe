// Replication behaviour a user sees: convergence, pull batches, live, options, lifecycle.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { startNatsServer } from './harness/nats-server.mjs';
import {
  createDb, uniqueName, waitFor, docsOf, streamMessages, consumerCount, collectErrors, publishRaw,
  replicatePeople,
} from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer({ monitor: true });
});
after(async () => {
  await server.destroy();
});

const replicate = (db, streamName, extra) => replicatePeople(server.url, db, streamName, extra);

const person = (i, extra = {}) => ({ id: `p${String(i).padStart(5, '0')}`, name: `Person ${i}`, age: i % 100, tags: [], ...extra });

/** Writes documents to the stream with one replication, then closes it. */
async function seed(streamName, docs) {
  const db = await createDb();
  const r = replicate(db, streamName, { pull: undefined, live: false });
  await db.people.bulkInsert(docs);
  await r.awaitInSync();
  await r.cancel();
  await db.close();
}

test('two databases converge through one stream: inserts, updates and deletes', async () => {
  const streamName = uniqueName('converge');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicate(a, streamName);
  const rb = replicate(b, streamName);
  const errors = collectErrors([ra, rb]);
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();

  await a.people.bulkInsert([person(1, { tags: ['x'] }), person(2)]);
  await waitFor(async () => (await b.people.count().exec()) === 2, 'b to get both documents');

  await (await b.people.findOne('p00002').exec()).incrementalPatch({ age: 41 });
  await waitFor(async () => (await a.people.findOne('p00002').exec())?.age === 41, 'a to see the update');

  await (await a.people.findOne('p00001').exec()).remove();
  await waitFor(async () => (await b.people.count().exec()) === 1, 'b to see the delete');

  await ra.awaitInSync();
  await rb.awaitInSync();
  assert.deepEqual(await docsOf(a), await docsOf(b));
  const last = {};
  for (const m of await streamMessages(server.url, streamName)) last[m.subject] = JSON.parse(m.body);
  assert.equal(last[`${streamName}.people.p00001`]._deleted, true);
  assert.equal(last[`${streamName}.people.p00002`].age, 41);
  assert.deepEqual(errors, []);
  await a.close();
  await b.close();
});

test('pull with batchSize 1 takes every document (no truncated batches)', async () => {
  const streamName = uniqueName('batch1');
  await seed(streamName, Array.from({ length: 25 }, (_, i) => person(i)));
  const db = await createDb();
  const r = replicate(db, streamName, { pull: { batchSize: 1 }, push: undefined });
  await r.awaitInitialReplication();
  assert.equal(await db.people.count().exec(), 25);
  await db.close();
});

test('pull keeps only the newest revision of a document and still fills the batch', async () => {
  const streamName = uniqueName('revisions');
  const db0 = await createDb();
  const r0 = replicate(db0, streamName, { pull: undefined });
  await db0.people.bulkInsert([person(0), person(1), person(2)]);
  await r0.awaitInSync();
  for (let v = 1; v <= 10; v++) {
    await (await db0.people.findOne('p00000').exec()).incrementalPatch({ age: v });
    await r0.awaitInSync();
  }
  await db0.people.insert(person(3));
  await r0.awaitInSync();
  await r0.cancel();
  await db0.close();

  // Small batches: every document arrives even though duplicates shorten each batch.
  const small = await createDb();
  const rs = replicate(small, streamName, { pull: { batchSize: 2 }, push: undefined, live: false });
  await rs.awaitInitialReplication();
  assert.equal(await small.people.count().exec(), 4, 'a batch shortened by duplicates must not end the pull');
  assert.equal((await small.people.findOne('p00000').exec()).age, 10);
  await small.close();

  // One batch holds all revisions: only the newest is applied.
  const db = await createDb();
  const r = replicate(db, streamName, { push: undefined, live: false });
  const pulled = [];
  r.received$.subscribe((d) => pulled.push(`${d.id}@${d.age}`));
  await r.awaitInitialReplication();
  assert.equal(await db.people.count().exec(), 4);
  assert.deepEqual(pulled.filter((p) => p.startsWith('p00000')), ['p00000@10'], 'old revisions are not applied');
  await db.close();
});

test('an empty stream answers at once', async () => {
  const streamName = uniqueName('empty');
  const db = await createDb();
  const r = replicate(db, streamName);
  const started = Date.now();
  await r.awaitInitialReplication();
  // The official plugin waits for a fetch to expire here; a caught-up pull must not wait.
  assert.ok(Date.now() - started < 5000, `initial replication took ${Date.now() - started} ms`);
  assert.equal(await db.people.count().exec(), 0);
  await db.close();
});

test('one pull consumer serves all batches, and cancel leaves no consumer behind', async () => {
  const streamName = uniqueName('consumers');
  await seed(streamName, Array.from({ length: 300 }, (_, i) => person(i)));
  const db = await createDb();
  const r = replicate(db, streamName, { pull: { batchSize: 10 } });
  await r.awaitInitialReplication();
  assert.equal(await db.people.count().exec(), 300);
  // 30 pull batches: one pull consumer plus the live one.
  assert.ok((await consumerCount(server.url, streamName)) <= 2);
  for (let i = 0; i < 3; i++) {
    await r.pause();
    await r.start();
  }
  await r.awaitInSync();
  assert.ok((await consumerCount(server.url, streamName)) <= 2, 'pause/start must not add consumers');
  await r.cancel();
  await waitFor(async () => (await consumerCount(server.url, streamName)) === 0, 'consumers to be deleted');
  await db.close();
});

test('live changes keep flowing after pause() and start()', async () => {
  const streamName = uniqueName('pause');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicate(a, streamName);
  const rb = replicate(b, streamName);
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  await rb.pause();
  await a.people.insert(person(1));
  await ra.awaitInSync();
  await rb.start();
  await waitFor(async () => (await b.people.count().exec()) === 1, 'the write made while paused');
  await a.people.insert(person(2));
  await waitFor(async () => (await b.people.count().exec()) === 2, 'a live write after start()');
  await a.close();
  await b.close();
});

test('nothing reaches a cancelled replication', async () => {
  const streamName = uniqueName('cancelled');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicate(a, streamName);
  const rb = replicate(b, streamName);
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  let receivedAfterCancel = 0;
  await rb.cancel();
  rb.received$.subscribe(() => receivedAfterCancel++);
  await a.people.insert(person(1));
  await ra.awaitInSync();
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await b.people.count().exec(), 0);
  assert.equal(receivedAfterCancel, 0);
  await a.close();
  await b.close();
});

test('replications with equal connection options share one connection, closed with the last', async () => {
  const streamName = uniqueName('shared');
  const [a, b] = [await createDb(), await createDb()];
  const before = await server.connectionCount();
  const ra = replicate(a, streamName);
  const rb = replicate(b, `${streamName}b`);
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  assert.equal((await server.connectionCount()) - before, 1);
  await ra.cancel();
  assert.equal((await server.connectionCount()) - before, 1);
  await rb.cancel();
  await waitFor(async () => (await server.connectionCount()) === before, 'the connection to close');
  await a.close();
  await b.close();
});

test('live: false replicates once and cancels itself', async () => {
  const streamName = uniqueName('once');
  await seed(streamName, [person(1), person(2)]);
  const db = await createDb();
  await db.people.insert(person(3));
  const r = replicate(db, streamName, { live: false });
  await r.awaitInitialReplication();
  await waitFor(() => r.isStopped(), 'the replication to cancel itself');
  assert.equal(await db.people.count().exec(), 3);
  assert.equal((await streamMessages(server.url, streamName)).length, 3);
  await db.close();
});

test('autoStart: false waits for start()', async () => {
  const streamName = uniqueName('autostart');
  await seed(streamName, [person(1)]);
  const db = await createDb();
  const r = replicate(db, streamName, { autoStart: false });
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(await db.people.count().exec(), 0);
  await r.start();
  await r.awaitInitialReplication();
  assert.equal(await db.people.count().exec(), 1);
  await db.close();
});

test('push.waitBeforePersist holds local writes back until it resolves', async () => {
  const streamName = uniqueName('waitbefore');
  const db = await createDb();
  let calls = 0;
  let release;
  const gate = new Promise((res) => (release = res));
  const r = replicate(db, streamName, { push: { waitBeforePersist: () => (calls++, gate) } });
  try {
    await r.awaitInitialReplication();
    await db.people.insert(person(1));
    await waitFor(() => calls > 0, 'waitBeforePersist to be called', 5000);
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(await streamMessages(server.url, streamName), [], 'nothing pushed while it waits');
    release();
    await waitFor(async () => (await streamMessages(server.url, streamName)).length === 1, 'the push after it resolved');
  } finally {
    release();
    await r.cancel();
    await db.close();
  }
});

test('modifiers, deletedField and checkpoints are honoured', async () => {
  const streamName = uniqueName('modifiers');
  const [a, b] = [await createDb(), await createDb()];
  const opts = {
    deletedField: 'deleted',
    // A pair of modifiers that undo each other: the server copy carries `origin`, RxDB's does not.
    push: { modifier: (d) => ({ ...d, origin: 'rxdb' }) },
    pull: { modifier: ({ origin, ...d }) => ({ ...d, tags: origin === 'rxdb' ? d.tags : ['bad origin'] }) },
  };
  const ra = replicate(a, streamName, opts);
  const rb = replicate(b, streamName, opts);
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  await a.people.insert(person(1, { name: 'quiet' }));
  const got = await waitFor(() => b.people.findOne('p00001').exec(), 'the document on b');
  assert.deepEqual(got.tags, []);
  assert.equal(got.toJSON().origin, undefined);
  await got.remove();
  await rb.awaitInSync();
  await waitFor(async () => (await a.people.count().exec()) === 0, 'the delete on a');
  const bodies = (await streamMessages(server.url, streamName)).map((m) => JSON.parse(m.body));
  const last = bodies[bodies.length - 1];
  assert.equal(last.deleted, true);
  assert.equal(last.origin, 'rxdb');
  // And under `_deleted` too, for official-plugin clients (officialDeletedFlag, on by default).
  assert.equal(last._deleted, true);
  await a.close();
  await b.close();
});

test('pull.initialCheckpoint starts after the given stream sequence', async () => {
  const streamName = uniqueName('initialcp');
  await seed(streamName, [person(1), person(2), person(3)]);
  const db = await createDb();
  const r = replicate(db, streamName, { pull: { initialCheckpoint: { sequence: 2 } }, push: undefined });
  await r.awaitInitialReplication();
  assert.deepEqual(Object.keys(await docsOf(db)), ['p00003']);
  await db.close();
});

test('a document written by another client arrives live, in order with its checkpoint', async () => {
  const streamName = uniqueName('rawlive');
  const db = await createDb();
  const r = replicate(db, streamName);
  await r.awaitInitialReplication();
  for (let v = 1; v <= 5; v++) {
    await publishRaw(server.url, `${streamName}.people.p00009`, JSON.stringify(person(9, { age: v, _deleted: false })));
  }
  await waitFor(async () => (await db.people.findOne('p00009').exec())?.age === 5, 'the newest revision');
  await db.close();
});

test('the RxReplicationState API behaves as RxDB documents: sent$, received$, active$, remove()', async () => {
  const streamName = uniqueName('api');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicate(a, streamName);
  const rb = replicate(b, streamName);
  const sent = [];
  const received = [];
  const active = [];
  ra.sent$.subscribe((d) => sent.push(d.id));
  rb.received$.subscribe((d) => received.push(d.id));
  ra.active$.subscribe((x) => active.push(x));
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  await a.people.insert(person(1));
  await ra.awaitInSync();
  await waitFor(() => received.includes('p00001'), 'received$ on b');
  assert.deepEqual(sent, ['p00001']);
  assert.ok(active.includes(true) && active[active.length - 1] === false);

  // remove() stops the replication and drops its state; a new one picks up from the server.
  await rb.remove();
  assert.ok(rb.isStopped());
  await a.people.insert(person(2));
  await ra.awaitInSync();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await b.people.count().exec(), 1, 'a removed replication does not pull');
  const again = replicate(b, streamName);
  await again.awaitInitialReplication();
  assert.equal(await b.people.count().exec(), 2);
  await a.close();
  await b.close();
});
