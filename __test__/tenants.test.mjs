// One stream, many tenants: replications of `<stream>.<tenant>` prefixes on one stream whose
// subjects are `<stream>.>`, each reading and writing only its own prefix; then tenants whose
// users have tenantPermissions(), and every way one tenant's user might reach another's data.
import { test, before, after, afterEach } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { addRxPlugin } from 'rxdb';
import { RxDBAttachmentsPlugin } from 'rxdb/plugins/attachments';
import { person, ids, range, twoSynced } from './harness/people.mjs';
import { tenantPermissions } from 'rxdb-nats-native';
import { startNatsServer, NatsServer, onServer } from './harness/nats-server.mjs';
import { personSchema, createDb as createRxDb, uniqueName, waitFor, docsOf, collectErrors, replicatePeople, replicateNats, firstMatching, codeOf } from './harness/rxdb.mjs';
import { randomBytes } from 'node:crypto';

addRxPlugin(RxDBAttachmentsPlugin);

// Each test's databases are closed after it (RxDB opens at most 16 collections at once).
let opened = [];
const createDb = async (options) => {
  const db = await createRxDb(options);
  opened.push(db);
  return db;
};
afterEach(async () => {
  await Promise.all(opened.map((db) => db.close()));
  opened = [];
});

// tombstoneTtl needs nats-server 2.11; tenantPermissions() 2.10 (the server checks a consumer's
// filter against the one named in its create subject).
const needsTtl = onServer(2, 11);
const needsTenants = onServer(2, 10);

let server;
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  await server.destroy();
});

const encode = (value) => new TextEncoder().encode(JSON.stringify(value));

/** Creates stream `name` with subjects `<name>.>` as an administrator would, with `config`. */
async function createSharedStream(name, config = {}) {
  const nc = await connect({ servers: server.url });
  try {
    await (await nc.jetstreamManager()).streams.add({ name, subjects: [`${name}.>`], ...config });
  } finally {
    await nc.close();
  }
}

/** Publishes people `indexes` of tenant `prefix` (and `extra` raw subjects) with nats.js. */
async function publishPeople(prefix, indexes, extra = []) {
  const nc = await connect({ servers: server.url });
  try {
    const js = nc.jetstream();
    for (const i of indexes) await js.publish(`${prefix}.${person(i).id}`, encode({ ...person(i), _deleted: false }));
    for (const subject of extra) await js.publish(subject, encode({ id: 'x', name: 'not a tenant document' }));
  } finally {
    await nc.close();
  }
}

/** The subjects of stream `name` with their message counts. */
async function subjectsOf(name) {
  const nc = await connect({ servers: server.url });
  try {
    const info = await (await nc.jetstreamManager()).streams.info(name, { subjects_filter: '>' });
    return info.state.subjects || {};
  } finally {
    await nc.close();
  }
}

const tenant = (streamName, name, db, extra = {}) =>
  replicatePeople(server.url, db, streamName, { subjectPrefix: `${streamName}.${name}`, replicationIdentifier: `${streamName}-${name}`, ...extra });

test('tenants on one stream: each replication reads and writes only its prefix, and other subjects are never read or reported', async () => {
  const streamName = uniqueName('app');
  await createSharedStream(streamName);
  // Another tenant's documents, a deeper subject under acme's prefix, and a subject of no tenant.
  await publishPeople(`${streamName}.acme`, range(0, 5));
  await publishPeople(`${streamName}.globex`, range(100, 105), [`${streamName}.acme.sub.x`, `${streamName}.other`]);
  const [acme, globex] = [await createDb(), await createDb()];
  const ra = tenant(streamName, 'acme', acme);
  const rg = tenant(streamName, 'globex', globex);
  const errors = collectErrors([ra, rg]);
  await Promise.all([ra.awaitInitialReplication(), rg.awaitInitialReplication()]);
  assert.deepEqual(ids(await docsOf(acme)), range(0, 5).map((i) => person(i).id));
  assert.deepEqual(ids(await docsOf(globex)), range(100, 105).map((i) => person(i).id));

  // Writes go to the writer's prefix and reach only its tenant's other clients.
  await acme.people.insert(person(10));
  await globex.people.insert(person(110));
  const acme2 = await createDb();
  const ra2 = tenant(streamName, 'acme', acme2);
  await ra2.awaitInitialReplication();
  await waitFor(async () => ids(await docsOf(acme2)).length === 6, 'the new acme document on a second acme client');
  await waitFor(async () => (await docsOf(globex))[person(110).id] !== undefined, 'globex writes its own');
  assert.equal((await docsOf(globex))[person(10).id], undefined, 'globex never sees acme documents');
  await Promise.all([ra.awaitInSync(), rg.awaitInSync()]);
  const subjects = await subjectsOf(streamName);
  assert.equal(subjects[`${streamName}.acme.${person(10).id}`], 1);
  assert.equal(subjects[`${streamName}.globex.${person(110).id}`], 1);

  for (const r of [ra, rg, ra2]) {
    const stats = await r.stats();
    assert.equal(stats.malformedSkipped, 0, 'no other tenant message is reported');
  }
  assert.deepEqual(errors, []);
  await Promise.all([ra.cancel(), rg.cancel(), ra2.cancel()]);
});

test('tenants on one stream: stats().lag counts only the replication\'s own messages', async () => {
  const streamName = uniqueName('app');
  await createSharedStream(streamName);
  await publishPeople(`${streamName}.acme`, range(0, 3));
  const acme = await createDb();
  const ra = tenant(streamName, 'acme', acme);
  await ra.awaitInitialReplication();
  await ra.awaitInSync();
  await ra.pause(); // its checkpoint stays where it is
  await publishPeople(`${streamName}.acme`, range(3, 5));
  await publishPeople(`${streamName}.globex`, range(0, 40));
  const stats = await ra.stats();
  assert.equal(stats.lag, 2, '2 acme messages after the checkpoint, whatever globex wrote');
  assert.ok(stats.streamLastSequence >= 45);
  await ra.cancel();
});

test('a fresh tenant reads only its own documents from a stream 10 times its size', async () => {
  const streamName = uniqueName('app');
  await createSharedStream(streamName);
  await publishPeople(`${streamName}.globex`, range(0, 500));
  await publishPeople(`${streamName}.acme`, range(0, 50));
  const acme = await createDb();
  const ra = tenant(streamName, 'acme', acme);
  await ra.awaitInitialReplication();
  assert.equal(ids(await docsOf(acme)).length, 50);
  const stats = await ra.stats();
  assert.equal(stats.documentsPulled, 50);
  assert.equal(stats.malformedSkipped, 0);
  await ra.cancel();
});

test('a stream this library creates takes streamConfig.subjects; subjects that miss the prefix are NATS_INVALID_OPTION', async () => {
  const streamName = uniqueName('app');
  const [acme, globex] = [await createDb(), await createDb()];
  const streamConfig = { subjects: [`${streamName}.>`] };
  const ra = tenant(streamName, 'acme', acme, { streamConfig });
  await ra.awaitInitialReplication();
  const rg = tenant(streamName, 'globex', globex, { streamConfig });
  await rg.awaitInitialReplication();
  await globex.people.insert(person(1));
  await rg.awaitInSync();
  const nc = await connect({ servers: server.url });
  const info = await (await nc.jetstreamManager()).streams.info(streamName);
  await nc.close();
  assert.deepEqual(info.config.subjects, [`${streamName}.>`]);
  assert.equal(info.state.messages, 1);
  await Promise.all([ra.cancel(), rg.cancel()]);

  const other = await createDb();
  assert.throws(
    () => tenant(uniqueName('app'), 'acme', other, { streamConfig: { subjects: ['elsewhere.>'] } }),
    (err) => err.code === 'NATS_INVALID_OPTION' && /streamConfig\.subjects/.test(err.message) && /does not cover/.test(err.message),
  );
});

/** Two acme clients A and B with 20 documents; B is stopped (it resumes with `tenant()`). */
async function acmeAwayAfter20(streamName, extra = {}) {
  const acme = { subjectPrefix: `${streamName}.acme`, replicationIdentifier: `${streamName}-acme`, ...extra };
  const synced = await twoSynced(server.url, streamName, 20, acme);
  opened.push(synced.a, synced.b);
  await synced.rb.cancel();
  return synced;
}

test('a tenant client back on a shared stream reads what it missed, without reconciling', async () => {
  const streamName = uniqueName('app');
  await createSharedStream(streamName);
  const { a, b, ra } = await acmeAwayAfter20(streamName);
  await a.people.bulkRemove(range(0, 5).map((i) => person(i).id));
  await a.people.bulkInsert(range(20, 25).map((i) => person(i)));
  await publishPeople(`${streamName}.globex`, range(0, 30));
  await ra.awaitInSync();
  const rbBack = tenant(streamName, 'acme', b);
  await rbBack.awaitInitialReplication();
  await waitFor(async () => ids(await docsOf(b)).join() === range(5, 25).map((i) => person(i).id).join(), 'B with what it missed');
  assert.equal((await rbBack.stats()).resyncs, 0, 'the checkpoint message is there: nothing was removed after it');
  await Promise.all([ra.cancel(), rbBack.cancel()]);
});

test('tenants on a shared stream with tombstoneTtl: a client away past the TTL deletes what expired, and nothing comes back', needsTtl, async () => {
  const streamName = uniqueName('app');
  const streamConfig = { subjects: [`${streamName}.>`], tombstoneTtl: 1000 };
  const { a, b, ra } = await acmeAwayAfter20(streamName, { streamConfig });
  // Away while 5 documents are deleted and their tombstones expire; another tenant writes.
  await a.people.bulkRemove(range(0, 5).map((i) => person(i).id));
  await ra.awaitInSync();
  await publishPeople(`${streamName}.globex`, range(0, 10));
  const acmeSubjects = async () => Object.keys(await subjectsOf(streamName)).filter((s) => s.includes('.acme.')).length;
  await waitFor(async () => (await acmeSubjects()) === 15, 'the tombstones expired', 15000);
  const rbLate = tenant(streamName, 'acme', b, { streamConfig });
  await rbLate.awaitInitialReplication();
  await waitFor(async () => ids(await docsOf(b)).join() === range(5, 20).map((i) => person(i).id).join(), 'B without the expired deletions');
  assert.ok((await rbLate.stats()).resyncs >= 1);
  await rbLate.awaitInSync();
  assert.equal(await acmeSubjects(), 15, 'no resurrection');
  await Promise.all([ra.cancel(), rbLate.cancel()]);
});

// ---- Tenants isolated by NATS permissions: users configured from tenantPermissions(). ----

const TENANTS = ['acme', 'globex'];
// Not harness/secrets.mjs: it needs @nats-io/jwt, which the RxDB 16 project does not install.
const randomSecret = (label) => `${label}-${randomBytes(12).toString('hex')}`;

/**
 * A nats-server whose users `acme` and `globex` have tenantPermissions() for `app.<tenant>` on
 * stream `app`, which `admin` (all permissions) creates, with 3 documents per tenant and direct
 * gets allowed (so refusing them is the permissions' doing).
 */
async function tenantServer({ attachments = false } = {}) {
  const pass = Object.fromEntries(['admin', ...TENANTS].map((u) => [u, randomSecret(u)]));
  const users = TENANTS.map((t) => {
    const permissions = tenantPermissions({ streamName: 'app', subjectPrefix: `app.${t}`, ...(attachments ? { attachments: { bucket: `${t}_files` } } : {}) });
    return `{ user: ${t}, password: "${pass[t]}", permissions: ${JSON.stringify(permissions)} }`;
  });
  const secured = await new NatsServer({
    config: `authorization { users: [\n{ user: admin, password: "${pass.admin}" }\n${users.join('\n')}\n] }`,
  }).start();
  const admin = await connect({ servers: secured.url, user: 'admin', pass: pass.admin });
  const jsm = await admin.jetstreamManager();
  await jsm.streams.add({ name: 'app', subjects: ['app.>'], allow_direct: true });
  const js = admin.jetstream();
  for (const t of TENANTS) {
    for (const i of range(0, 3)) await js.publish(`app.${t}.${person(i).id}`, encode({ ...person(i, { name: `${t} ${i}` }), _deleted: false }));
  }
  const as = (t, extra = {}) => connect({ servers: secured.url, user: t, pass: pass[t], inboxPrefix: `_RXNATS.2.app.${t}`, ...extra });
  const replicate = (t, db, extra = {}) =>
    replicateNats({
      collection: db.people,
      replicationIdentifier: `tenant-${t}`,
      streamName: 'app',
      subjectPrefix: `app.${t}`,
      tenant: true,
      connection: { servers: secured.url, user: t, pass: pass[t] },
      pull: {},
      push: {},
      retryTime: 200,
      ...extra,
    });
  return {
    url: secured.url, admin, jsm, js, as, replicate,
    async destroy() {
      await admin.close();
      await secured.destroy();
    },
  };
}

test('tenantPermissions(): two tenants replicate both ways on one stream, live, with conflicts, and see only their own documents', needsTenants, async () => {
  const t = await tenantServer();
  const dbs = { acme: [await createDb(), await createDb()], globex: [await createDb()] };
  const states = [];
  try {
    const [acme1, acme2] = dbs.acme;
    const ra1 = t.replicate('acme', acme1);
    const ra2 = t.replicate('acme', acme2);
    const rg = t.replicate('globex', dbs.globex[0]);
    states.push(ra1, ra2, rg);
    const errors = collectErrors(states);
    await Promise.all(states.map((r) => r.awaitInitialReplication()));
    for (const [tenantName, [db]] of Object.entries(dbs)) {
      const docs = await docsOf(db);
      assert.deepEqual(ids(docs), range(0, 3).map((i) => person(i).id));
      assert.ok(Object.values(docs).every((d) => d.name.startsWith(tenantName)), `${tenantName} holds only its own documents`);
    }
    // Live both ways: acme1 -> acme2, globex -> admin's view of the stream.
    await acme1.people.insert(person(10, { name: 'acme 10' }));
    await waitFor(async () => (await docsOf(acme2))[person(10).id]?.name === 'acme 10', 'acme 10 on acme2');
    await dbs.globex[0].people.insert(person(20, { name: 'globex 20' }));
    await rg.awaitInSync();
    const stored = await t.jsm.streams.getMessage('app', { last_by_subj: `app.globex.${person(20).id}` });
    assert.equal(JSON.parse(new TextDecoder().decode(stored.data)).name, 'globex 20');
    // A conflict: acme2 writes while acme1 is stopped and edits the same document offline.
    await ra1.cancel();
    await (await acme2.people.findOne(person(1).id).exec()).incrementalPatch({ name: 'acme 1 by acme2' });
    await ra2.awaitInSync();
    await (await acme1.people.findOne(person(1).id).exec()).incrementalPatch({ name: 'acme 1 by acme1, offline' });
    const ra1again = t.replicate('acme', acme1);
    states.push(ra1again);
    ra1again.error$.subscribe((e) => errors.push(e));
    await ra1again.awaitInitialReplication();
    await ra1again.awaitInSync();
    // RxDB's default conflict handler keeps the server's state.
    await waitFor(async () => (await docsOf(acme1))[person(1).id].name === 'acme 1 by acme2', 'the conflict resolved to the server state');
    assert.ok((await ra1again.stats()).conflicts >= 1);
    assert.equal((await docsOf(dbs.globex[0]))[person(10).id], undefined);
    assert.deepEqual(errors, []);
  } finally {
    await Promise.all(states.map((r) => r.cancel()));
    await t.destroy();
  }
});

test('tenantPermissions(): a replication of a prefix its user may not read gets NATS_PERMISSION_DENIED naming the prefix, and receives nothing', needsTenants, async () => {
  const t = await tenantServer();
  const db = await createDb();
  const r = t.replicate('acme', db, { subjectPrefix: 'app.globex' });
  try {
    const err = await firstMatching(r.error$, (e) => codeOf(e) === 'NATS_PERMISSION_DENIED', 'a permission error');
    const inner = err.code === 'NATS_PERMISSION_DENIED' ? err : err.parameters.errors[0];
    assert.match(inner.message, /subjectPrefix "app\.globex"/);
    assert.match(inner.message, /tenantPermissions/);
    assert.deepEqual(await docsOf(db), {});
  } finally {
    await r.cancel();
    await t.destroy();
  }
});

test('tenantPermissions(): no way of reading or writing another tenant\'s documents works for a tenant\'s user', needsTenants, async () => {
  const t = await tenantServer();
  const globexDb = await createDb();
  const rg = t.replicate('globex', globexDb);
  const globexErrors = collectErrors(rg);
  await rg.awaitInitialReplication();
  // A pull consumer of globex's subjects whose name acme has learnt.
  await t.jsm.consumers.add('app', { name: 'globexpull', filter_subject: 'app.globex.*', ack_policy: 'explicit' });
  const globexConsumers = (await t.jsm.consumers.list('app').next()).filter((c) => c.config.filter_subject === 'app.globex.*').map((c) => c.name);
  assert.ok(globexConsumers.length >= 2, 'globex replicates through a consumer of its own');
  const nc = await t.as('acme');
  const encoder = new TextEncoder();
  const request = (subject, body = '') => nc.request(subject, typeof body === 'string' ? encoder.encode(body) : encode(body), { timeout: 3000 });
  const refused = (what, promise) => assert.rejects(promise, (e) => /permission/i.test(`${e.code} ${e.message}`), what);
  try {
    // Subscribing to another tenant's subjects, its inbox, or anything wide.
    const subscriptions = ['app.globex.*', 'app.>', '>', '_RXNATS.2.app.globex.>', '_RXNATS.>', '_INBOX.>', '$JS.ACK.>'].map((subject) => {
      const s = { subject, error: null, received: 0 };
      nc.subscribe(subject, { callback: (err) => (err ? (s.error = err) : s.received++) });
      return s;
    });
    await nc.flush();
    await t.js.publish('app.globex.p900', encode({ ...person(900), _deleted: false }));
    await globexDb.people.insert(person(901));
    await rg.awaitInSync();
    await waitFor(() => subscriptions.every((s) => s.error), 'every subscription refused');
    await nc.flush();
    for (const s of subscriptions) assert.equal(s.received, 0, `nothing received on ${s.subject}`);

    // Publishing to another tenant's subjects.
    nc.publish('app.globex.p000', encode({ ...person(0), name: 'forged', _deleted: false }));
    await refused('a JetStream publish to app.globex.p001', request('app.globex.p001', { ...person(1), name: 'forged' }));
    await nc.flush();
    const globexP000 = await t.jsm.streams.getMessage('app', { last_by_subj: 'app.globex.p000' });
    assert.equal(JSON.parse(new TextDecoder().decode(globexP000.data)).name, 'globex 0');

    // Direct and stream gets, of any sequence or subject (its own too: a direct get's reply
    // subject could be an API request the server executes).
    await refused('direct get by sequence', request('$JS.API.DIRECT.GET.app', { seq: 1 }));
    await refused('direct get of a globex subject', request('$JS.API.DIRECT.GET.app.app.globex.p000'));
    await refused('direct get of its own subject', request('$JS.API.DIRECT.GET.app.app.acme.p000'));
    await refused('stream get', request('$JS.API.STREAM.MSG.GET.app', { last_by_subj: 'app.globex.p000' }));
    await refused('stream info listing subjects', request('$JS.API.STREAM.INFO.app', { subjects_filter: 'app.globex.*' }));

    // Consumers with another filter, none, or several.
    const config = (extra) => ({ stream_name: 'app', config: { deliver_subject: '_RXNATS.2.app.acme.x', ack_policy: 'none', ...extra } });
    await refused('a consumer of globex', request('$JS.API.CONSUMER.CREATE.app.c1.app.globex.*', config({ name: 'c1', filter_subject: 'app.globex.*' })));
    await refused('a consumer without a filter', request('$JS.API.CONSUMER.CREATE.app', config({})));
    await refused('a named consumer without a filter in the subject', request('$JS.API.CONSUMER.CREATE.app.c2', config({ name: 'c2', filter_subject: 'app.globex.*' })));
    await refused('a durable consumer', request('$JS.API.CONSUMER.DURABLE.CREATE.app.c3', config({ durable_name: 'c3', filter_subject: 'app.globex.*' })));
    for (const [name, extra] of [
      ['c4', { filter_subject: 'app.globex.*' }],
      ['c5', { filter_subject: 'app.>' }],
      ['c6', {}],
      ['c7', { filter_subjects: ['app.acme.*', 'app.globex.*'] }],
    ]) {
      const answer = JSON.parse(new TextDecoder().decode((await request(`$JS.API.CONSUMER.CREATE.app.${name}.app.acme.*`, config({ name, ...extra }))).data));
      assert.ok(answer.error, `the server refuses a body whose filter is not the subject's: ${JSON.stringify(extra)}`);
    }
    const names = (await t.jsm.consumers.list('app').next()).map((c) => c.name);
    for (const name of ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7']) assert.ok(!names.includes(name), `no consumer ${name}`);

    // Another tenant's consumers, by the names it learnt.
    for (const name of ['globexpull', ...globexConsumers]) {
      await refused(`pulling from ${name}`, request(`$JS.API.CONSUMER.MSG.NEXT.app.${name}`, { batch: 10, no_wait: true }));
      await refused(`+NXT on an ack subject of ${name}`, request(`$JS.ACK.app.${name}.1.1.1.1.0`, '+NXT {"batch":10}'));
      await refused(`the info of ${name}`, request(`$JS.API.CONSUMER.INFO.app.${name}`));
      await refused(`deleting ${name}`, request(`$JS.API.CONSUMER.DELETE.app.${name}`));
    }
    await refused('listing consumers', request('$JS.API.CONSUMER.LIST.app'));
    await refused('consumer names', request('$JS.API.CONSUMER.NAMES.app'));

    // NATS does not check deliver subjects: a consumer of acme's own subjects can deliver into
    // globex's inbox, whose reader takes only its own consumer's messages of its own subjects.
    // (push_bound: someone listens there, as globex's live feed does.)
    const globexInboxes = (await t.jsm.consumers.list('app').next()).filter((c) => c.config.filter_subject === 'app.globex.*' && c.push_bound).map((c) => c.config.deliver_subject);
    assert.ok(globexInboxes.length >= 1, 'globex reads through its inbox');
    for (const [k, inbox] of globexInboxes.entries()) {
      const name = `inject${k}`;
      await request(`$JS.API.CONSUMER.CREATE.app.${name}.app.acme.*`, config({ name, filter_subject: 'app.acme.*', deliver_subject: inbox }));
      await waitFor(async () => (await t.jsm.consumers.info('app', name)).num_pending === 0, `${name} delivered everything`);
    }
    await t.js.publish('app.globex.p902', encode({ ...person(902), _deleted: false }));
    await waitFor(async () => (await docsOf(globexDb))[person(902).id], 'a later globex document, read after the injected ones');

    // NATS does not check reply subjects: an acknowledgement aimed at a globex subject is stored
    // there, but it is no document: globex skips and reports it.
    nc.publish('app.acme.p500', encode({ ...person(500), _deleted: false }), { reply: 'app.globex.evil' });
    await nc.flush();
    await waitFor(async () => (await rg.stats()).malformedSkipped >= 1, 'the acknowledgement skipped by globex');
    assert.ok(globexErrors.some((e) => codeOf(e) === 'NATS_MALFORMED_MESSAGE'));
    // Aimed at an existing document, the acknowledgement becomes its newest message: a fresh
    // globex client still gets the document, from its revision before.
    nc.publish('app.acme.p501', encode({ ...person(501), _deleted: false }), { reply: 'app.globex.p000' });
    await nc.flush();
    await waitFor(async () => JSON.parse(new TextDecoder().decode((await t.jsm.streams.getMessage('app', { last_by_subj: 'app.globex.p000' })).data)).seq, 'the acknowledgement on app.globex.p000');
    const freshDb = await createDb();
    const fresh = t.replicate('globex', freshDb, { replicationIdentifier: 'tenant-globex-fresh' });
    await fresh.awaitInitialReplication();
    assert.equal((await docsOf(freshDb))[person(0).id]?.name, 'globex 0');
    await fresh.cancel();
    const globexIds = ids(await docsOf(globexDb));
    assert.deepEqual(globexIds, [...range(0, 3), 900, 901, 902].map((i) => person(i).id));
    assert.ok(Object.values(await docsOf(globexDb)).every((d) => !d.name.startsWith('acme') && d.name !== 'forged'));
  } finally {
    await nc.close();
    await rg.cancel();
    await t.destroy();
  }
});

test('tenantPermissions({ kv }): tenants with a bucket each create and replicate it, and cannot reach the other bucket', needsTenants, async () => {
  const pass = Object.fromEntries(TENANTS.map((u) => [u, randomSecret(u)]));
  const users = TENANTS.map((t) => `{ user: ${t}, password: "${pass[t]}", permissions: ${JSON.stringify(tenantPermissions({ kv: { bucket: t } }))} }`);
  const secured = await new NatsServer({ config: `authorization { users: [\n${users.join('\n')}\n] }` }).start();
  const replicate = (t, db) =>
    replicateNats({
      collection: db.people, replicationIdentifier: `kv-${t}`, kv: { bucket: t }, tenant: true,
      connection: { servers: secured.url, user: t, pass: pass[t] }, pull: {}, push: {}, retryTime: 200,
    });
  const [acme1, acme2, globex] = [await createDb(), await createDb(), await createDb()];
  const states = [replicate('acme', acme1), replicate('acme', acme2), replicate('globex', globex)];
  const errors = collectErrors(states);
  const nc = await connect({ servers: secured.url, user: 'acme', pass: pass.acme, inboxPrefix: '_RXNATS.2.$KV.acme' });
  try {
    await Promise.all(states.map((r) => r.awaitInitialReplication()));
    await acme1.people.insert(person(1, { name: 'acme 1' }));
    await globex.people.insert(person(2, { name: 'globex 2' }));
    await waitFor(async () => (await docsOf(acme2))[person(1).id], 'acme 1 on acme2');
    await states[2].awaitInSync();
    await (await acme2.people.findOne(person(1).id).exec()).remove();
    await waitFor(async () => !(await docsOf(acme1))[person(1).id], 'the deletion on acme1');
    assert.deepEqual(ids(await docsOf(globex)), [person(2).id]);
    assert.deepEqual(errors, []);

    const request = (subject, body = {}) => nc.request(subject, encode(body), { timeout: 3000 });
    const refused = (what, promise) => assert.rejects(promise, (e) => /permission/i.test(`${e.code} ${e.message}`), what);
    await refused('globex stream info', request('$JS.API.STREAM.INFO.KV_globex'));
    await refused('a globex consumer', request('$JS.API.CONSUMER.CREATE.KV_globex', { stream_name: 'KV_globex', config: { deliver_subject: '_RXNATS.2.$KV.acme.x' } }));
    await refused('a globex stream get', request('$JS.API.STREAM.MSG.GET.KV_globex', { last_by_subj: `$KV.globex.${person(2).id}` }));
    await refused('a globex direct get', request(`$JS.API.DIRECT.GET.KV_globex.$KV.globex.${person(2).id}`));
    await refused('a direct get of its own bucket', request('$JS.API.DIRECT.GET.KV_acme', { last_by_subj: `$KV.acme.${person(1).id}` }));
    await refused('a put into globex', request(`$KV.globex.${person(3).id}`, person(3)));
    const sub = { error: null, received: 0 };
    nc.subscribe('$KV.globex.>', { callback: (err) => (err ? (sub.error = err) : sub.received++) });
    await waitFor(() => sub.error, 'the subscription refused');
    assert.equal(sub.received, 0);
  } finally {
    await nc.close();
    await Promise.all(states.map((r) => r.cancel()));
    await secured.destroy();
  }
});

test('tenantPermissions({ attachments }): a tenant replicates attachments through a bucket of its own, which the other tenant cannot reach', needsTenants, async () => {
  const t = await tenantServer({ attachments: true });
  const schema = { ...personSchema, attachments: {} };
  const [a1, a2] = [await createDb({ schema }), await createDb({ schema })];
  const attachments = { bucket: 'acme_files', inlineMaxBytes: 1000 };
  const states = [t.replicate('acme', a1, { attachments }), t.replicate('acme', a2, { attachments })];
  const errors = collectErrors(states);
  const nc = await t.as('globex');
  try {
    await Promise.all(states.map((r) => r.awaitInitialReplication()));
    const data = randomBytes(20000);
    const doc = await a1.people.insert(person(7, { name: 'acme 7' }));
    await doc.putAttachment({ id: 'scan.bin', data: new Blob([data], { type: 'application/octet-stream' }), type: 'application/octet-stream' });
    const arrived = async () => (await a2.people.findOne(person(7).id).exec())?.getAttachment('scan.bin');
    await waitFor(arrived, 'the attachment on acme2');
    assert.ok(Buffer.from(await (await (await arrived()).getData()).arrayBuffer()).equals(data));
    const info = await t.jsm.streams.info('OBJ_acme_files');
    assert.ok(info.state.messages >= 2, 'the content went to the bucket, not the message');
    assert.equal(info.config.allow_direct, false);
    // Cleanup reads only the tenant's documents: the referenced object stays, then goes.
    assert.equal((await states[0].removeUnreferencedAttachments({ olderThanMs: 0 })).removed, 0);
    await (await a1.people.findOne(person(7).id).exec()).getAttachment('scan.bin').remove();
    await states[0].awaitInSync();
    await waitFor(async () => !(await arrived()), 'the removal on acme2');
    assert.equal((await states[0].removeUnreferencedAttachments({ olderThanMs: 0 })).removed, 1);
    assert.deepEqual(errors, []);

    const request = (subject, body = {}) => nc.request(subject, encode(body), { timeout: 3000 });
    const refused = (what, promise) => assert.rejects(promise, (e) => /permission/i.test(`${e.code} ${e.message}`), what);
    await refused("acme's bucket info", request('$JS.API.STREAM.INFO.OBJ_acme_files'));
    await refused("a consumer of acme's bucket", request('$JS.API.CONSUMER.CREATE.OBJ_acme_files', { stream_name: 'OBJ_acme_files', config: { deliver_subject: '_RXNATS.2.app.globex.x' } }));
    await refused("a stream get of acme's bucket", request('$JS.API.STREAM.MSG.GET.OBJ_acme_files', { seq: 1 }));
    await refused("a put into acme's bucket", request('$O.acme_files.M.x', {}));
    const sub = { error: null, received: 0 };
    nc.subscribe('$O.acme_files.>', { callback: (err) => (err ? (sub.error = err) : sub.received++) });
    await waitFor(() => sub.error, 'the subscription refused');

    const other = await createDb({ schema });
    assert.throws(() => t.replicate('acme', other), (err) => err.code === 'NATS_INVALID_OPTION' && /bucket of its own/.test(err.message));
  } finally {
    await nc.close();
    await Promise.all(states.map((r) => r.cancel()));
    await t.destroy();
  }
});
