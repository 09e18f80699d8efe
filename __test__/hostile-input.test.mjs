// Other writers' documents that break the collection schema, and bodies far larger than documents
// should be: each is reported once with subject and sequence, skipped, and the rest flows.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { startNatsServer } from './harness/nats-server.mjs';
import {
  createDb, uniqueName, waitFor, streamMessages, collectErrors, codeOf, publishRaw, replicatePeople,
} from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer({ config: 'max_payload: 4194304' });
});
after(async () => {
  await server.destroy();
});

const person = (id, extra = {}) => ({ id, name: id, age: 1, tags: [], ...extra });

/** Every error of `code` on error$ (direct or wrapped by RxDB), by subject. */
const reportsOf = (errors, code) => errors.filter((e) => codeOf(e) === code);

test('documents that break the collection schema are reported once and skipped', async () => {
  const streamName = uniqueName('schema');
  const prefix = `${streamName}.people`;
  const db = await createDb();
  const r = replicatePeople(server.url, db, streamName, { pull: { batchSize: 4 } });
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  await db.people.insert(person('tombstoned'));
  await r.awaitInSync();

  const bad = {
    'name-number': { id: 'name-number', name: 42, age: 1 },
    'age-string': { id: 'age-string', name: 'x', age: '3' },
    'age-fraction': { id: 'age-fraction', name: 'x', age: 2.5 },
    'no-name': { id: 'no-name', age: 1 },
    'tags-object': { id: 'tags-object', name: 'x', tags: { a: 1 } },
    ['long'.repeat(60)]: { id: 'long'.repeat(60), name: 'x' }, // 240 characters, maxLength 200
  };
  for (const [id, body] of Object.entries(bad)) {
    await publishRaw(server.url, `${prefix}.${id}`, JSON.stringify(body));
    await publishRaw(server.url, `${prefix}.ok-${id.slice(0, 20)}`, JSON.stringify(person(`ok-${id.slice(0, 20)}`)));
  }
  // A tombstone from another writer needs only the id and the deleted flag.
  await publishRaw(server.url, `${prefix}.tombstoned`, JSON.stringify({ id: 'tombstoned', _deleted: true }));

  await waitFor(async () => (await db.people.count().exec()) === 6, 'the six valid documents');
  await waitFor(async () => !(await db.people.findOne('tombstoned').exec()), 'the tombstone to delete');
  await waitFor(() => reportsOf(errors, 'NATS_INVALID_DOCUMENT').length >= 6, 'six reports');

  // A client started now meets them in its initial pull; reSync meets them again: still once each.
  const db2 = await createDb();
  const r2 = replicatePeople(server.url, db2, streamName, { pull: { batchSize: 4 } });
  const errors2 = collectErrors(r2);
  await r2.awaitInitialReplication();
  r.reSync();
  await r.awaitInSync();
  assert.equal(await db2.people.count().exec(), 6);

  for (const list of [errors, errors2]) {
    const reports = reportsOf(list, 'NATS_INVALID_DOCUMENT');
    assert.deepEqual(reports.map((e) => e.documentId).sort(), Object.keys(bad).sort());
    for (const e of reports) {
      assert.equal(e.subject, `${prefix}.${e.documentId}`);
      assert.equal(typeof e.sequence, 'number');
      assert.match(e.message, /does not fit the collection schema \(.+\)/);
    }
    assert.deepEqual(list.filter((e) => codeOf(e) !== 'NATS_INVALID_DOCUMENT'), []);
  }
  const byId = Object.fromEntries(reportsOf(errors, 'NATS_INVALID_DOCUMENT').map((e) => [e.documentId, e.message]));
  assert.match(byId['age-string'], /field "age" is a string where the schema wants integer/);
  assert.match(byId['no-name'], /required field "name" is missing/);
  assert.equal((await r.stats()).malformedSkipped, 6);

  // A valid revision repairs the document.
  await publishRaw(server.url, `${prefix}.age-string`, JSON.stringify(person('age-string', { age: 3 })));
  await waitFor(() => db.people.findOne('age-string').exec(), 'the repaired document');
  await r.cancel();
  await r2.cancel();
});

test('huge bodies: over maxDocumentBytes they are skipped and reported, and never pushed', async () => {
  const streamName = uniqueName('huge');
  const prefix = `${streamName}.people`;
  const db = await createDb();
  const limit = 64 * 1024;
  const r = replicatePeople(server.url, db, streamName, { maxDocumentBytes: limit });
  const errors = collectErrors(r);
  await r.awaitInitialReplication();

  const huge = JSON.stringify(person('huge', { name: 'h'.repeat(3 * 1024 * 1024) })); // 3 MiB
  await publishRaw(server.url, `${prefix}.huge`, huge);
  // Deeply nested JSON: a classic parser bomb.
  const deep = `{"id":"deep","name":"d","extra":${'['.repeat(30000)}${']'.repeat(30000)}}`;
  await publishRaw(server.url, `${prefix}.deep`, deep);
  const nested = `{"id":"nested","name":"n","extra":${'['.repeat(5000)}${']'.repeat(5000)}}`;
  await publishRaw(server.url, `${prefix}.nested`, nested);
  await publishRaw(server.url, `${prefix}.after`, JSON.stringify(person('after')));
  await waitFor(() => db.people.findOne('after').exec(), 'the document after the huge ones');

  const tooLarge = await waitFor(
    () => errors.find((e) => codeOf(e) === 'NATS_DOCUMENT_TOO_LARGE' && e.subject === `${prefix}.huge`),
    'the huge message report'
  );
  assert.equal(typeof tooLarge.sequence, 'number');
  assert.match(tooLarge.message, /maxDocumentBytes \(65536\)/);
  assert.ok(!(await db.people.findOne('huge').exec()));
  // 60 kB of brackets is under the limit: refused for nesting, not size.
  for (const id of ['deep', 'nested']) {
    const report = errors.find((e) => e.subject === `${prefix}.${id}`);
    assert.equal(codeOf(report), 'NATS_MALFORMED_MESSAGE', `${id} is reported`);
    assert.match(report.message, /nests deeper than 128 levels/);
  }
  assert.equal(await db.people.count().exec(), 1, 'only the valid document arrived');

  // A local document over the limit is not pushed; the others are.
  await db.people.bulkInsert([person('big-local', { name: 'b'.repeat(100 * 1024) }), person('small-local')]);
  const rejected = await waitFor(
    () => errors.find((e) => codeOf(e) === 'NATS_DOCUMENT_TOO_LARGE' && e.documentId === 'big-local'),
    'the local rejection'
  );
  assert.match(rejected.message, /over maxDocumentBytes/);
  await r.awaitInSync();
  const subjects = (await streamMessages(server.url, streamName)).map((m) => m.subject);
  assert.ok(subjects.includes(`${prefix}.small-local`));
  assert.ok(!subjects.includes(`${prefix}.big-local`));
  await r.cancel();

  // Without maxDocumentBytes, a 3 MiB document under the server's max_payload replicates.
  const db2 = await createDb();
  const r2 = replicatePeople(server.url, db2, streamName);
  await r2.awaitInitialReplication();
  assert.equal((await db2.people.findOne('huge').exec()).name.length, 3 * 1024 * 1024);
  await r2.cancel();
});
