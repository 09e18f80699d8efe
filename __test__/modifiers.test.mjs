// Drop-in data correctness: documents a pull.modifier repairs (rolling upgrades), what
// push.modifier returns, and tombstones the official plugin wrote under a custom deletedField.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { replicateNats as replicateNatsOfficial } from 'rxdb/plugins/replication-nats';
import { startNatsServer } from './harness/nats-server.mjs';
import {
  createDb, personSchema, uniqueName, waitFor, docsOf, streamMessages, collectErrors, codeOf, replicatePeople,
} from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

/** The schema of the new release: `age` became required. */
const upgradedSchema = { ...personSchema, required: ['id', 'name', 'age'] };
const withAge = (doc) => ({ ...doc, age: doc.age ?? 0 });
const reportsOf = (errors, code) => errors.filter((e) => codeOf(e) === code);
const aliveIds = async (db) => (await db.people.find().exec()).map((d) => d.id).sort();

/** Options of an official-plugin replication that lets the test process exit once the server stops. */
const officialOptions = (db, streamName, extra = {}) => ({
  collection: db.people,
  replicationIdentifier: `official-${streamName}`,
  streamName,
  subjectPrefix: `${streamName}.people`,
  connection: { servers: server.url, maxReconnectAttempts: 0 },
  retryTime: 200,
  ...extra,
});

test('a rolling upgrade: pull.modifier fills the field the new schema requires, initial pull and live', async () => {
  const streamName = uniqueName('upgrade');
  const oldDb = await createDb(); // the old release: age is optional
  const rOld = replicatePeople(server.url, oldDb, streamName);
  await rOld.awaitInitialReplication();
  await oldDb.people.bulkInsert(Array.from({ length: 20 }, (_, i) => ({ id: `old-${i}`, name: `Old ${i}` })));
  await rOld.awaitInSync();

  const newDb = await createDb({ schema: upgradedSchema });
  const seen = [];
  const rNew = replicatePeople(server.url, newDb, streamName, {
    pull: {
      batchSize: 7,
      modifier: (doc) => {
        seen.push(doc);
        return withAge(doc);
      },
    },
  });
  const errors = collectErrors(rNew);
  await rNew.awaitInitialReplication();
  const docs = await docsOf(newDb);
  assert.equal(Object.keys(docs).length, 20, 'every old document arrived in the initial pull');
  assert.ok(Object.values(docs).every((d) => d.age === 0));
  // The modifier gets documents as RxDB's own replication hands them: deleted flag `_deleted`.
  assert.ok(seen.every((d) => d._deleted === false));

  // Old servers keep writing old-shape documents: they arrive live, repaired too.
  await oldDb.people.bulkInsert(Array.from({ length: 5 }, (_, i) => ({ id: `live-${i}`, name: `Live ${i}` })));
  await waitFor(async () => (await newDb.people.count().exec()) === 25, 'the 5 live old-shape documents');
  assert.equal((await newDb.people.findOne('live-4').exec()).age, 0);
  // And the new release's writes reach the old one.
  await newDb.people.insert({ id: 'new-1', name: 'New', age: 41 });
  await waitFor(async () => (await oldDb.people.findOne('new-1').exec())?.age === 41, 'the new write on the old release');

  assert.deepEqual(errors, []);
  const stats = await rNew.stats();
  assert.equal(stats.malformedSkipped, 0);
  assert.ok(stats.documentsPulled >= 25, `documentsPulled ${stats.documentsPulled}`);
  await rOld.cancel();
  await rNew.cancel();
  await oldDb.close();
  await newDb.close();
});

test('without a pull.modifier the old-shape documents are skipped and reported, as before', async () => {
  const streamName = uniqueName('nomodifier');
  const oldDb = await createDb();
  const rOld = replicatePeople(server.url, oldDb, streamName);
  await rOld.awaitInitialReplication();
  await oldDb.people.bulkInsert([{ id: 'short', name: 'no age' }, { id: 'full', name: 'age', age: 3 }]);
  await rOld.awaitInSync();
  const newDb = await createDb({ schema: upgradedSchema });
  const rNew = replicatePeople(server.url, newDb, streamName);
  const errors = collectErrors(rNew);
  await rNew.awaitInitialReplication();
  assert.deepEqual(await aliveIds(newDb), ['full']);
  const [report] = reportsOf(errors, 'NATS_INVALID_DOCUMENT');
  assert.equal(report.documentId, 'short');
  assert.match(report.message, /required field "age" is missing/);
  assert.doesNotMatch(report.message, /pull\.modifier/);
  await rOld.cancel();
  await rNew.cancel();
  await oldDb.close();
  await newDb.close();
});

test('a pull.modifier that throws for one document, or still returns it invalid, skips only that one', async () => {
  const streamName = uniqueName('modthrows');
  const writerDb = await createDb();
  const rWriter = replicatePeople(server.url, writerDb, streamName);
  await rWriter.awaitInitialReplication();
  await writerDb.people.bulkInsert([
    { id: 'a', name: 'A' },
    { id: 'throws', name: 'T' },
    { id: 'still-bad', name: 'S' },
    { id: 'b', name: 'B' },
  ]);
  await rWriter.awaitInSync();

  const readerDb = await createDb({ schema: upgradedSchema });
  const rReader = replicatePeople(server.url, readerDb, streamName, {
    pull: {
      modifier: (doc) => {
        if (doc.id.startsWith('throws')) throw new Error(`cannot migrate ${doc.id}`);
        if (doc.id === 'still-bad' && doc.age === undefined) return { ...doc, age: 'forty' };
        return withAge(doc);
      },
    },
  });
  const errors = collectErrors(rReader);
  await rReader.awaitInitialReplication();
  assert.deepEqual(await aliveIds(readerDb), ['a', 'b']);

  const [threw] = reportsOf(errors, 'NATS_MODIFIER_FAILED');
  assert.equal(threw.documentId, 'throws');
  assert.equal(threw.subject, `${streamName}.people.throws`);
  assert.equal(typeof threw.sequence, 'number');
  assert.match(threw.message, /pull\.modifier threw for document "throws" \(cannot migrate throws\)/);
  const [invalid] = reportsOf(errors, 'NATS_INVALID_DOCUMENT');
  assert.equal(invalid.documentId, 'still-bad');
  assert.match(invalid.message, /after pull\.modifier, document "still-bad" does not fit the collection schema \(field "age" is a string where the schema wants integer\)/);

  // The replication goes on: live documents, including another one the modifier throws for.
  await writerDb.people.bulkInsert([{ id: 'throws-live', name: 'TL' }, { id: 'c', name: 'C' }]);
  await waitFor(() => readerDb.people.findOne('c').exec(), 'the live document after a failing one');
  await waitFor(() => reportsOf(errors, 'NATS_MODIFIER_FAILED').length === 2, 'the live failure reported');
  assert.equal(reportsOf(errors, 'NATS_MODIFIER_FAILED')[1].documentId, 'throws-live');
  // A later revision that the modifier accepts repairs the document.
  await (await writerDb.people.findOne('still-bad').exec()).incrementalPatch({ age: 7 });
  await waitFor(async () => (await readerDb.people.findOne('still-bad').exec())?.age === 7, 'the repaired document');
  assert.equal(errors.length, 3, errors.map((e) => e.message).join('\n'));
  assert.equal((await rReader.stats()).malformedSkipped, 3);
  await rWriter.cancel();
  await rReader.cancel();
  await writerDb.close();
  await readerDb.close();
});

test('documents a pull.modifier skips do not end the initial pull early, nor stop the live feed', async () => {
  const streamName = uniqueName('modshort');
  const writerDb = await createDb();
  const rWriter = replicatePeople(server.url, writerDb, streamName);
  await rWriter.awaitInitialReplication();
  await writerDb.people.bulkInsert(Array.from({ length: 30 }, (_, i) => ({ id: `m${String(i).padStart(2, '0')}`, name: `M${i}` })));
  await rWriter.awaitInSync();
  const readerDb = await createDb({ schema: upgradedSchema });
  // Every third document of each batch of 10 is refused: a native batch of 10 becomes 7.
  const rReader = replicatePeople(server.url, readerDb, streamName, {
    pull: {
      batchSize: 10,
      modifier: (doc) => {
        if (Number(doc.id.slice(1)) % 3 === 0) throw new Error('refused');
        return withAge(doc);
      },
    },
  });
  const errors = collectErrors(rReader);
  await rReader.awaitInitialReplication();
  assert.equal(await readerDb.people.count().exec(), 20, 'every accepted document, in the initial pull');
  await writerDb.people.insert({ id: 'm31', name: 'live' });
  await waitFor(() => readerDb.people.findOne('m31').exec(), 'a live document after the initial pull');
  assert.equal(reportsOf(errors, 'NATS_MODIFIER_FAILED').length, 10);
  await rWriter.cancel();
  await rReader.cancel();
  await writerDb.close();
  await readerDb.close();
});

test('push.modifier output that cannot be a message is reported per document; the rest is pushed', async () => {
  const streamName = uniqueName('pushmod');
  const db = await createDb();
  const r = replicatePeople(server.url, db, streamName, {
    pull: undefined,
    push: {
      modifier: (doc) => {
        switch (doc.id) {
          case 'p-throw': throw new Error('no mapping for p-throw');
          case 'p-nokey': return { ...doc, id: undefined };
          case 'p-bigint': return { ...doc, big: 10n };
          case 'p-huge': return { ...doc, name: 'x'.repeat(1_100_000) };
          case 'p-null': return null; // RxDB's documented way to leave a document out
          default: return { ...doc, via: 'modifier' };
        }
      },
    },
  });
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  const ids = ['p-ok1', 'p-throw', 'p-nokey', 'p-bigint', 'p-huge', 'p-null', 'p-ok2'];
  await db.people.bulkInsert(ids.map((id) => ({ id, name: id })));
  await r.awaitInSync();
  await db.people.insert({ id: 'p-after', name: 'after' });
  await r.awaitInSync();

  const onStream = (await streamMessages(server.url, streamName)).map((m) => JSON.parse(m.body));
  assert.deepEqual(onStream.map((d) => d.id).sort(), ['p-after', 'p-ok1', 'p-ok2']);
  assert.ok(onStream.every((d) => d.via === 'modifier'));
  const byId = Object.fromEntries(errors.map((e) => [e.documentId, e]));
  assert.deepEqual(Object.keys(byId).sort(), ['p-bigint', 'p-huge', 'p-nokey', 'p-throw']);
  assert.equal(codeOf(byId['p-throw']), 'NATS_MODIFIER_FAILED');
  assert.match(byId['p-throw'].message, /push\.modifier threw for document "p-throw" \(no mapping for p-throw\)/);
  assert.equal(codeOf(byId['p-nokey']), 'NATS_INVALID_DOCUMENT');
  assert.match(byId['p-nokey'].message, /document "p-nokey" was not pushed: it has no string primary key "id" after push\.modifier/);
  assert.equal(codeOf(byId['p-bigint']), 'NATS_INVALID_DOCUMENT');
  assert.match(byId['p-bigint'].message, /cannot be written as JSON \(.*BigInt.*\)/);
  assert.equal(codeOf(byId['p-huge']), 'NATS_DOCUMENT_TOO_LARGE');
  assert.equal(errors.length, 4, errors.map((e) => e.message).join('\n'));
  const stats = await r.stats();
  assert.equal(stats.documentsPushed, 3);
  assert.equal(stats.documentsRejected, 1);
  await r.cancel();
  await db.close();
});

test('a stream the official plugin wrote with deletedField set: no deleted document comes back', async () => {
  const streamName = uniqueName('officialdel');
  const officialDb = await createDb();
  // The official plugin ignores deletedField and writes `_deleted`.
  const ro = replicateNatsOfficial(officialOptions(officialDb, streamName, { deletedField: 'deleted', push: {} }));
  await officialDb.people.bulkInsert(['gone', 'k1', 'k2'].map((id) => ({ id, name: id })));
  await (await officialDb.people.findOne('gone').exec()).remove();
  await waitFor(async () => {
    const bodies = (await streamMessages(server.url, streamName).catch(() => [])).map((m) => JSON.parse(m.body));
    return bodies.some((d) => d.id === 'gone' && d._deleted === true);
  }, 'the official tombstone of "gone" on the stream');
  await ro.cancel();
  await officialDb.close();

  const db = await createDb();
  const r = replicatePeople(server.url, db, streamName, { deletedField: 'deleted' });
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  assert.deepEqual(await aliveIds(db), ['k1', 'k2']);
  assert.deepEqual(errors, []);
  await r.cancel();
  await db.close();
});

test('a mixed fleet with deletedField: deletes cross between the official plugin and this one, both ways', async () => {
  const streamName = uniqueName('mixeddel');
  const nativeDb = await createDb();
  const officialDb = await createDb();
  const rn = replicatePeople(server.url, nativeDb, streamName, { deletedField: 'deleted' });
  const nativeErrors = collectErrors(rn);
  await rn.awaitInitialReplication(); // creates the stream
  const ro = replicateNatsOfficial(officialOptions(officialDb, streamName, { deletedField: 'deleted', pull: {}, push: {} }));
  const officialErrors = collectErrors(ro);
  // Not awaiting ro.awaitInitialReplication(): its pull waits for a fetch to expire (30 s).

  await nativeDb.people.insert({ id: 'from-native', name: 'N' });
  await officialDb.people.insert({ id: 'from-official', name: 'O' });
  await waitFor(() => officialDb.people.findOne('from-native').exec(), 'the native document on the official side');
  await waitFor(() => nativeDb.people.findOne('from-official').exec(), 'the official document on the native side');

  await (await nativeDb.people.findOne('from-official').exec()).remove();
  await waitFor(async () => !(await officialDb.people.findOne('from-official').exec()), 'the native delete on the official side');
  await (await officialDb.people.findOne('from-native').exec()).remove();
  await waitFor(async () => !(await nativeDb.people.findOne('from-native').exec()), 'the official delete on the native side');

  const last = new Map((await streamMessages(server.url, streamName)).map((m) => [m.subject, JSON.parse(m.body)]));
  const nativeTombstone = last.get(`${streamName}.people.from-official`);
  assert.equal(nativeTombstone.deleted, true, 'our tombstone carries deletedField');
  assert.equal(nativeTombstone._deleted, true, 'and the official flag');
  assert.equal(last.get(`${streamName}.people.from-native`)._deleted, true);
  assert.deepEqual(nativeErrors, []);
  assert.deepEqual(officialErrors, []);
  await rn.cancel();
  await ro.cancel();
  await nativeDb.close();
  await officialDb.close();
});

test('officialDeletedFlag: false writes only deletedField', async () => {
  const streamName = uniqueName('ownflag');
  const db = await createDb();
  const r = replicatePeople(server.url, db, streamName, { deletedField: 'deleted', officialDeletedFlag: false, pull: undefined });
  await r.awaitInitialReplication();
  await db.people.insert({ id: 'x', name: 'X' });
  await r.awaitInSync();
  await (await db.people.findOne('x').exec()).remove();
  await r.awaitInSync();
  const bodies = (await streamMessages(server.url, streamName)).map((m) => JSON.parse(m.body));
  assert.deepEqual(bodies.map((d) => [d.deleted, '_deleted' in d]), [[false, false], [true, false]]);
  await r.cancel();
  await db.close();
});

test('deletedField with pull and push modifiers: modifiers see `_deleted`, deletes replicate both ways', async () => {
  const streamName = uniqueName('delmods');
  const seenByPush = [];
  const seenByPull = [];
  const client = async () => {
    const db = await createDb({ schema: upgradedSchema });
    const r = replicatePeople(server.url, db, streamName, {
      deletedField: 'deleted',
      pull: { modifier: (doc) => (seenByPull.push(doc), withAge({ ...doc, via: undefined })) },
      push: { modifier: (doc) => (seenByPush.push(doc), { ...doc, via: 'push' }) },
    });
    return { db, r, errors: collectErrors(r) };
  };
  const a = await client();
  const b = await client();
  await a.r.awaitInitialReplication();
  await b.r.awaitInitialReplication();
  await a.db.people.insert({ id: 'd1', name: 'D1', age: 5 });
  await b.db.people.insert({ id: 'd2', name: 'D2', age: 6 });
  await waitFor(() => b.db.people.findOne('d1').exec(), 'd1 on b');
  await waitFor(() => a.db.people.findOne('d2').exec(), 'd2 on a');
  await (await b.db.people.findOne('d1').exec()).remove();
  await (await a.db.people.findOne('d2').exec()).remove();
  await waitFor(async () => (await aliveIds(a.db)).length === 0 && (await aliveIds(b.db)).length === 0, 'both deletes on both sides');

  for (const doc of [...seenByPush, ...seenByPull]) {
    assert.equal(typeof doc._deleted, 'boolean');
    assert.ok(!('deleted' in doc), 'modifiers get RxDB documents, not the message format');
  }
  assert.ok(seenByPull.some((d) => d._deleted === true), 'the pull modifier saw a tombstone');
  const bodies = (await streamMessages(server.url, streamName)).map((m) => JSON.parse(m.body));
  assert.ok(bodies.filter((d) => d.deleted).length >= 2);
  assert.ok(bodies.every((d) => d.via === 'push' && d.deleted === d._deleted));
  assert.deepEqual([...a.errors, ...b.errors], []);
  for (const { r, db } of [a, b]) {
    await r.cancel();
    await db.close();
  }
});
