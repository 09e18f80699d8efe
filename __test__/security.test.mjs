// TLS, mutual TLS, each kind of authentication and per-subject permissions, against real
// nats-server processes configured for them. Certificates, keys and JWTs are generated per run.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { connect } from 'nats';
import { NatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, firstMatching, codeOf, replicatePeople, collectErrors } from './harness/rxdb.mjs';
import { tempDir, makeCa, issueCert, userNkey, makeOperator, randomSecret } from './harness/secrets.mjs';

let dir;
let ca;
let otherCa;
let serverCert;
let clientCert;
let strangerCert;
before(() => {
  dir = tempDir();
  ca = makeCa(dir, 'ca');
  otherCa = makeCa(dir, 'other-ca');
  serverCert = issueCert(dir, ca, 'server', 'serverAuth');
  clientCert = issueCert(dir, ca, 'client', 'clientAuth');
  strangerCert = issueCert(dir, otherCa, 'stranger', 'clientAuth');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const person = (id) => ({ id, name: id, age: 1, tags: [] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** The RxNatsError of an error$ value (RxDB wraps handler errors in RC_PULL/RC_PUSH). */
const inner = (err) => (String(err.code).startsWith('NATS_') ? err : err.parameters.errors[0]);

/** The server's TLS block (a 5 s handshake timeout: the default 0.5 s is tight on a busy machine). */
const tlsBlock = (extra = '') =>
  `tls {\n cert_file: "${serverCert.cert}"\n key_file: "${serverCert.key}"\n ca_file: "${ca.cert}"\n timeout: 5\n ${extra}\n}`;

/**
 * Two databases replicating one stream with `connection`: a write on each side reaches the other.
 */
async function assertConverge(url, connection, streamName = uniqueName('sec')) {
  const [a, b] = [await createDb(), await createDb()];
  try {
    const ra = replicatePeople(url, a, streamName, { connection: { servers: url, ...connection } });
    const rb = replicatePeople(url, b, streamName, { connection: { servers: url, ...connection } });
    const errors = collectErrors([ra, rb]);
    await ra.awaitInitialReplication();
    await rb.awaitInitialReplication();
    const [idA, idB] = [uniqueName('from-a'), uniqueName('from-b')];
    await a.people.insert(person(idA));
    await b.people.insert(person(idB));
    const described = () => errors.map((e) => `${codeOf(e)} ${inner(e).message}`);
    // A timeout says which errors came meanwhile.
    const arrives = (check, what) => waitFor(check, what).catch((e) => {
      throw new Error(`${e.message}; errors: ${JSON.stringify(described())}`);
    });
    await arrives(() => b.people.findOne(idA).exec(), 'a\'s write on b');
    await arrives(() => a.people.findOne(idB).exec(), 'b\'s write on a');
    // An update reads the server state first (the conflict check).
    await (await b.people.findOne(idA).exec()).incrementalPatch({ age: 2 });
    await arrives(async () => (await a.people.findOne(idA).exec()).age === 2, 'b\'s update on a');
    assert.deepEqual(described(), []);
  } finally {
    await a.close();
    await b.close();
  }
}

/**
 * Starts a replication (with one local document to push) that must fail with `code` within
 * `fastMs`; `check(err)` runs on the error while the replication still runs, and the database is
 * closed whatever happens.
 */
async function expectFailure(url, connection, code, check, { fastMs = 5000, retryTime = 200, streamName = uniqueName('denied') } = {}) {
  const db = await createDb();
  try {
    await db.people.insert(person('local-only'));
    const t0 = Date.now();
    const r = replicatePeople(url, db, streamName, { connection: { servers: url, ...connection }, retryTime });
    const err = await firstMatching(r.error$, (e) => codeOf(e) !== undefined, `a ${code} error`);
    const elapsed = Date.now() - t0;
    assert.equal(codeOf(err), code, inner(err).message);
    assert.ok(elapsed < fastMs, `the error took ${elapsed} ms`);
    await check(inner(err));
  } finally {
    await db.close();
  }
}

/** Refused connection attempts the server logged so far. */
const refusals = (server) => (server.log.match(/authentication error/g) || []).length;

/**
 * With wrong credentials the replication keeps trying, at the pace of retryTime: the server
 * sees at least two attempts and no more than the pull, live and push retries can make.
 */
async function assertBoundedRetries(server, retryTime) {
  await waitFor(() => refusals(server) >= 1, 'a refused attempt in the server log');
  const before = refusals(server);
  const t0 = Date.now();
  await sleep(3000);
  const attempts = refusals(server) - before;
  const elapsed = Date.now() - t0;
  // Three loops retry on their own (pull, push, live), each once per retryTime.
  // A client that spun would make thousands.
  const bound = 3 * (Math.ceil(elapsed / retryTime) + 2);
  assert.ok(attempts >= 2, `retried: ${attempts} attempts in ${elapsed} ms`);
  assert.ok(attempts <= bound, `${attempts} attempts in ${elapsed} ms with retryTime ${retryTime} (at most ${bound})`);
}

test('TLS: two databases replicate both ways over TLS, trusting the server by connection.tls.caFile', async () => {
  const server = await new NatsServer({ config: tlsBlock() }).start();
  try {
    await assertConverge(server.url, { tls: { caFile: ca.cert } });
    // A tls:// URL works as well.
    await assertConverge(server.url.replace('nats://', 'tls://'), { tls: { caFile: ca.cert } });
  } finally {
    await server.destroy();
  }
});

test('TLS: a client that does not trust the server certificate gets NATS_TLS_FAILED and replicates nothing', async () => {
  const server = await new NatsServer({ config: tlsBlock() }).start();
  try {
    for (const connection of [{ tls: { caFile: otherCa.cert } }, {}]) {
      await expectFailure(server.url, connection, 'NATS_TLS_FAILED', async (err) => {
        assert.match(err.message, /not trusted.*connection\.tls\.caFile/, err.message);
        await sleep(1000);
      });
    }
    // Nothing reached the server: no stream was created.
    const nc = await connect({ servers: server.url, tls: { caFile: ca.cert } });
    const jsm = await nc.jetstreamManager();
    assert.deepEqual(await jsm.streams.names().next(), []);
    await nc.close();
  } finally {
    await server.destroy();
  }
});

test('mutual TLS: a client certificate replicates; none, or one the server does not trust, gets NATS_TLS_FAILED', async () => {
  const server = await new NatsServer({ config: tlsBlock('verify: true') }).start();
  try {
    await assertConverge(server.url, { tls: { caFile: ca.cert, certFile: clientCert.cert, keyFile: clientCert.key } });
    for (const connection of [
      { tls: { caFile: ca.cert } },
      { tls: { caFile: ca.cert, certFile: strangerCert.cert, keyFile: strangerCert.key } },
    ]) {
      await expectFailure(server.url, connection, 'NATS_TLS_FAILED', (err) => {
        assert.match(err.message, /client certificate.*connection\.tls\.certFile and keyFile/, err.message);
      });
    }
  } finally {
    await server.destroy();
  }
});

test('token: the right token replicates; a wrong one fails fast with NATS_AUTH_FAILED and is retried at retryTime', async () => {
  const token = randomSecret('token');
  const server = await new NatsServer({ config: `authorization { token: "${token}" }` }).start();
  try {
    await assertConverge(server.url, { token });
    await expectFailure(server.url, { token: randomSecret('wrong') }, 'NATS_AUTH_FAILED', async (err) => {
      assert.match(err.message, /refused the credentials.*token/, err.message);
      await assertBoundedRetries(server, 500);
    }, { retryTime: 500 });
  } finally {
    await server.destroy();
  }
});

test('nkey: the right seed replicates; another user\'s seed fails fast with NATS_AUTH_FAILED and is retried at retryTime', async () => {
  const user = userNkey();
  const server = await new NatsServer({ config: `authorization { users: [{ nkey: ${user.publicKey} }] }` }).start();
  try {
    await assertConverge(server.url, { nkeySeed: user.seed });
    await expectFailure(server.url, { nkeySeed: userNkey().seed }, 'NATS_AUTH_FAILED', async (err) => {
      assert.match(err.message, /refused the credentials.*nkeySeed/, err.message);
      await assertBoundedRetries(server, 500);
    }, { retryTime: 500 });
  } finally {
    await server.destroy();
  }
});

test('a malformed nkey seed is an invalid option, named, at replicateNats() time', async () => {
  const db = await createDb();
  const bad = userNkey().seed.slice(0, -4) + 'AAAA';
  assert.throws(() => replicatePeople('nats://127.0.0.1:1', db, uniqueName('seed'), { connection: { nkeySeed: bad } }), (e) => {
    assert.equal(e.code, 'NATS_INVALID_OPTION');
    assert.match(e.message, /connection\.nkeySeed is not a valid nkey seed/);
    return true;
  });
  await db.close();
});

test('creds file (operator mode): a user of the account replicates; another operator\'s user fails fast with NATS_AUTH_FAILED and is retried at retryTime', async () => {
  const op = await makeOperator(dir);
  const server = await new NatsServer({ config: op.config }).start();
  try {
    const good = await op.creds('app');
    await assertConverge(server.url, { credsFile: good.file });
    const stranger = await (await makeOperator(dir)).creds('stranger');
    await expectFailure(server.url, { credsFile: stranger.file }, 'NATS_AUTH_FAILED', async (err) => {
      assert.match(err.message, /refused the credentials.*credsFile/, err.message);
      await assertBoundedRetries(server, 500);
    }, { retryTime: 500 });
    // A creds file that is not there is an invalid option naming the file.
    await expectFailure(server.url, { credsFile: `${dir}/missing.creds` }, 'NATS_INVALID_OPTION', (err) => {
      assert.match(err.message, /connection\.credsFile.*missing\.creds/);
    });
  } finally {
    await server.destroy();
  }
});

test('a creds file rotated on disk is read at the next reconnect: an expired JWT is replaced without a restart', async () => {
  const op = await makeOperator(dir);
  const server = await new NatsServer({ config: op.config }).start();
  const streamName = uniqueName('rotate');
  const file = `${dir}/rotating.creds`;
  await op.creds('rotating', {}, { file });
  const steady = await op.creds('steady');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicatePeople(server.url, a, streamName, { connection: { servers: server.url, credsFile: file, reconnectTimeWait: 250 } });
  const rb = replicatePeople(server.url, b, streamName, { connection: { servers: server.url, credsFile: steady.file } });
  try {
    const errors = collectErrors(ra);
    await Promise.all([ra.awaitInitialReplication(), rb.awaitInitialReplication()]);
    await a.people.insert(person('before'));
    await waitFor(() => b.people.findOne('before').exec(), 'a write before the expiry');
    // The precondition, made rather than waited for: the file now holds a JWT that has expired,
    // and a restart of the server makes both clients reconnect (an expiry timed to land after
    // the first replication failed a loaded CI run when that replication took longer).
    await op.creds('rotating', {}, { exp: Math.floor(Date.now() / 1000) - 60, file });
    await server.stop();
    await server.start();
    await waitFor(() => errors.some((e) => codeOf(e) === 'NATS_AUTH_FAILED' && /refused the credentials when reconnecting/.test(inner(e).message)), 'the expired JWT refused', 60000);
    // Refused attempts, one per reconnectTimeWait, are not each reported as a lost link.
    assert.ok(errors.filter((e) => /lost the connection/.test(inner(e).message)).length <= 3, 'a few loss reports, not one per attempt');
    await a.people.insert(person('while-refused-a'));
    await b.people.insert(person('while-refused-b'));
    await sleep(500);
    assert.equal(await b.people.findOne('while-refused-a').exec(), null, 'nothing gets through with the expired JWT');
    // The operator writes a new file; the same replication picks it up at its next attempt.
    await op.creds('rotating', {}, { file });
    await waitFor(() => b.people.findOne('while-refused-a').exec(), "a's write after the rotation", 20000);
    await waitFor(() => a.people.findOne('while-refused-b').exec(), "b's write on a after the rotation", 20000);
    assert.ok((await ra.stats()).reconnects >= 1);
  } finally {
    await Promise.all([ra.cancel(), rb.cancel()]);
    await Promise.all([a.close(), b.close()]);
    await server.destroy();
  }
});

/**
 * What a replicating user needs, and nothing more: the README's example permissions block for
 * stream `S` and subject prefix `P` (the stream is created beforehand by an administrator).
 */
const replicatingUserPermissions = (S, P) => `{
      publish: {
        allow: [
          "$JS.API.STREAM.INFO.${S}",
          "$JS.API.CONSUMER.CREATE.${S}", "$JS.API.CONSUMER.CREATE.${S}.>",
          "$JS.API.CONSUMER.MSG.NEXT.${S}.>", "$JS.API.CONSUMER.DELETE.${S}.>",
          "$JS.API.STREAM.MSG.GET.${S}", "$JS.API.DIRECT.GET.${S}", "$JS.API.DIRECT.GET.${S}.>",
          "${P}.>"
        ]
      }
      subscribe: { allow: ["_INBOX.>"] }
    }`;

test('permissions: a user who may not create streams gets NATS_PERMISSION_DENIED naming the stream; with the stream pre-created it replicates', async () => {
  const streamName = uniqueName('perm');
  const prefix = `${streamName}.people`;
  const adminPass = randomSecret('admin');
  const appPass = randomSecret('app');
  const minimalPass = randomSecret('minimal');
  const server = await new NatsServer({
    config: `authorization { users: [
      { user: admin, password: "${adminPass}" }
      { user: app, password: "${appPass}", permissions: { publish: { deny: "$JS.API.STREAM.CREATE.>" } } }
      { user: minimal, password: "${minimalPass}", permissions: ${replicatingUserPermissions(streamName, prefix)} }
    ] }`,
  }).start();
  try {
    for (const [user, pass] of [['app', appPass], ['minimal', minimalPass]]) {
      await expectFailure(server.url, { user, pass }, 'NATS_PERMISSION_DENIED', (err) => {
        assert.ok(err.message.includes(`stream "${streamName}" does not exist and this user may not create it`), err.message);
        assert.match(err.message, /create it beforehand/);
      }, { streamName });
    }
    const nc = await connect({ servers: server.url, user: 'admin', pass: adminPass });
    await (await nc.jetstreamManager()).streams.add({ name: streamName, subjects: [`${prefix}.*`] });
    await nc.close();
    await assertConverge(server.url, { user: 'app', pass: appPass }, streamName);
    await assertConverge(server.url, { user: 'minimal', pass: minimalPass }, streamName);
  } finally {
    await server.destroy();
  }
});

test('credentials refused on reconnect: NATS_AUTH_FAILED on error$, reconnects paced by reconnectTimeWait, resumes once accepted', async () => {
  const token = randomSecret('token');
  const server = await new NatsServer({ config: `authorization { token: "${token}" }` }).start();
  const streamName = uniqueName('revoked');
  const [a, b] = [await createDb(), await createDb()];
  try {
    const connection = { servers: server.url, token, reconnectTimeWait: 500 };
    const ra = replicatePeople(server.url, a, streamName, { connection });
    const rb = replicatePeople(server.url, b, streamName, { connection: { ...connection, name: 'b' } });
    await ra.awaitInitialReplication();
    await rb.awaitInitialReplication();
    // The token changes on the server: every reconnect is refused.
    await server.stop();
    server.config = `authorization { token: "${randomSecret('rotated')}" }`;
    await server.start();
    const err = inner(await firstMatching(ra.error$, (e) => codeOf(e) === 'NATS_AUTH_FAILED', 'the refusal on error$'));
    assert.match(err.message, /refused the credentials when reconnecting.*token/, err.message);
    // Two connections (a's and b's), each retrying once per reconnectTimeWait.
    const before = refusals(server);
    const t0 = Date.now();
    await sleep(3000);
    const attempts = refusals(server) - before;
    const bound = 2 * (Math.ceil((Date.now() - t0) / 500) + 2);
    assert.ok(attempts >= 2 && attempts <= bound, `${attempts} refused reconnects in 3 s (at most ${bound})`);
    // The old token is accepted again: both replicate without being recreated.
    await server.stop();
    server.config = `authorization { token: "${token}" }`;
    await server.start();
    await a.people.insert(person('after-rotation'));
    await waitFor(() => b.people.findOne('after-rotation').exec(), 'the write after the token is accepted again');
  } finally {
    await a.close();
    await b.close();
    await server.destroy();
  }
});
