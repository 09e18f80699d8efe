// Bad input and bad environments: each gives a typed error, loses nothing, and recovers.
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { connect } from 'nats';
import { replicateNats } from './harness/rxdb.mjs';
import { NatsServer, startNatsServer, freePort } from './harness/nats-server.mjs';
import { startLinkProxy } from './harness/link-proxy.mjs';
import {
  createDb, uniqueName, waitFor, streamMessages, collectErrors, codeOf, publishRaw, firstMatching,
  replicatePeople,
} from './harness/rxdb.mjs';

let server;
before(async () => {
  server = await startNatsServer({ config: 'max_payload: 4096' });
});
after(async () => {
  await server.destroy();
});

const replicate = (db, streamName, extra) => replicatePeople(server.url, db, streamName, extra);

const person = (id, extra = {}) => ({ id, name: id, age: 1, tags: [], ...extra });

test('malformed messages are reported once with subject and sequence, and skipped', async () => {
  const streamName = uniqueName('malformed');
  const prefix = `${streamName}.people`;
  const db = await createDb();
  const r = replicate(db, streamName, { pull: { batchSize: 3 } });
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  await r.pause();
  const bad = {
    notjson: 'this is not json',
    array: '[1,2,3]',
    noid: JSON.stringify({ name: 'x' }),
    wrongid: JSON.stringify(person('someone-else')),
    baddeleted: JSON.stringify(person('baddeleted', { _deleted: 'yes' })),
  };
  for (const [token, body] of Object.entries(bad)) {
    await publishRaw(server.url, `${prefix}.${token}`, body);
    await publishRaw(server.url, `${prefix}.ok-${token}`, JSON.stringify(person(`ok-${token}`)));
  }
  // Initial pull (through a resync) meets them first ...
  await r.start();
  await waitFor(async () => (await db.people.count().exec()) === 5, 'the valid documents');
  // ... then the live feed.
  await publishRaw(server.url, `${prefix}.livebad`, '{"id": "livebad", ');
  await publishRaw(server.url, `${prefix}.ok-live`, JSON.stringify(person('ok-live')));
  await waitFor(() => db.people.findOne('ok-live').exec(), 'the valid live document');
  r.reSync();
  await r.awaitInSync();

  const malformed = errors.filter((e) => e.code === 'NATS_MALFORMED_MESSAGE');
  const bySubject = Object.fromEntries(malformed.map((e) => [e.subject, e]));
  for (const token of [...Object.keys(bad), 'livebad']) {
    const e = bySubject[`${prefix}.${token}`];
    assert.ok(e, `${token} reported`);
    assert.equal(typeof e.sequence, 'number');
    assert.ok(e.message.includes(`${prefix}.${token}`), e.message);
  }
  assert.equal(malformed.length, 6, 'each bad message is reported exactly once');
  assert.deepEqual(errors.filter((e) => e.code !== 'NATS_MALFORMED_MESSAGE'), []);
  await db.close();
});

test('a document over max_payload is reported with its id; the others are pushed', async () => {
  const streamName = uniqueName('toolarge');
  const db = await createDb();
  const r = replicate(db, streamName);
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  await db.people.bulkInsert([person('small-1'), person('huge', { name: 'x'.repeat(10000) }), person('small-2')]);
  const err = await firstMatching(r.error$, (e) => codeOf(e) === 'NATS_DOCUMENT_TOO_LARGE', 'the too-large error');
  assert.equal(err.documentId, 'huge');
  assert.match(err.message, /"huge".*4096/);
  await r.awaitInSync();
  const subjects = (await streamMessages(server.url, streamName)).map((m) => m.subject).sort();
  assert.deepEqual(subjects, [`${streamName}.people.small-1`, `${streamName}.people.small-2`]);
  await db.people.insert(person('after'));
  await waitFor(async () => (await streamMessages(server.url, streamName)).length === 3, 'later writes');
  assert.equal(errors.filter((e) => codeOf(e) !== 'NATS_DOCUMENT_TOO_LARGE').length, 0);
  const stats = await r.stats();
  assert.equal(stats.documentsRejected, errors.length, 'each rejection counted once per attempt reported');
  assert.equal(stats.documentsPushed, 3);
  await db.close();
});

test('a stream with the same name and other subjects is a typed error', async () => {
  const streamName = uniqueName('mismatch');
  const nc = await connect({ servers: server.url });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: streamName, subjects: ['somewhere.else.*'] });
  await nc.close();
  const db = await createDb();
  const r = replicate(db, streamName);
  const err = await firstMatching(r.error$, (e) => codeOf(e) === 'NATS_STREAM_MISMATCH', 'the mismatch error');
  const inner = err.code === 'NATS_STREAM_MISMATCH' ? err : err.parameters.errors[0];
  assert.match(inner.message, new RegExp(`${streamName}.*somewhere\\.else\\.\\*`));
  await db.close();
});

test('a server without JetStream is a typed error that says to enable it', async () => {
  const plain = await startNatsServer({ jetstream: false });
  const db = await createDb();
  const r = replicate(db, uniqueName('nojs'), { connection: { servers: plain.url } });
  const err = await firstMatching(r.error$, (e) => codeOf(e) === 'NATS_JETSTREAM_UNAVAILABLE', 'the error');
  const inner = err.code ? err : err.parameters.errors[0];
  assert.match(inner.message, /-js/);
  await db.close();
  await plain.destroy();
});

test('an unreachable server is reported and replication starts by itself once it is up', async () => {
  const late = new NatsServer();
  late.port = await freePort();
  const streamName = uniqueName('late');
  const db = await createDb();
  await db.people.insert(person('written-offline'));
  const r = replicate(db, streamName, { connection: { servers: late.url } });
  const err = await firstMatching(r.error$, (e) => codeOf(e) === 'NATS_CONNECT_FAILED', 'the connect error');
  assert.ok(err);
  await late.start();
  await waitFor(async () => {
    try {
      return (await streamMessages(late.url, streamName)).length === 1;
    } catch {
      return false;
    }
  }, 'the offline write to reach the server');
  await db.close();
  await late.destroy();
});

test('a connect that hangs does not hold up replications to other servers', async () => {
  // A "server" that accepts connections and never says anything: a connect waits for its
  // timeout (60 s here, far longer than anything below takes).
  const sockets = [];
  const silent = net.createServer((socket) => {
    const entry = { open: true };
    sockets.push(entry);
    socket.on('close', () => (entry.open = false));
    socket.on('error', () => {});
  });
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  const silentUrl = `nats://127.0.0.1:${silent.address().port}`;
  const stuck = await createDb();
  const rs = replicate(stuck, uniqueName('silent'), {
    connection: { servers: silentUrl, timeout: 60000 },
  });
  // With waitOnFirstConnect the client is handed out at once and the stream request waits.
  const waiting = await createDb();
  const rw = replicate(waiting, uniqueName('silent'), {
    connection: { servers: silentUrl, timeout: 60000, waitOnFirstConnect: true },
  });
  await waitFor(() => sockets.length >= 2, 'both connects to be waiting on the silent server');
  const db = await createDb();
  const streamName = uniqueName('beside');
  const r = replicate(db, streamName);
  await r.awaitInitialReplication();
  await db.people.insert(person('beside'));
  await waitFor(async () => (await streamMessages(server.url, streamName)).length === 1, 'the write beside it');
  // The other replication did not wait for them: both still hang, none gave up or timed out.
  assert.deepEqual(sockets.map((s) => s.open), [true, true], 'the hanging connects are still waiting');
  await db.close();
  // cancel() does not wait for the hanging connect or request either: it drops them.
  await Promise.all([rs.cancel(), rw.cancel()]);
  await waitFor(() => sockets.every((s) => !s.open), 'cancel() to drop the hanging connects', 10000);
  assert.ok(sockets.length <= 2 + 2, `no connect was started after cancel() (${sockets.length})`);
  await stuck.close();
  await waiting.close();
  silent.close();
});

test('wrong credentials fail with a typed error that never shows the password', async () => {
  const secured = await startNatsServer({ config: 'authorization { user: app, password: "right-secret-1" }' });
  const db = await createDb();
  const wrong = 'wrong-secret-2';
  const r = replicate(db, uniqueName('auth'), {
    connection: { servers: secured.url, user: 'app', pass: wrong },
  });
  const err = await firstMatching(r.error$, (e) => codeOf(e) === 'NATS_AUTH_FAILED', 'the auth error');
  assert.ok(!JSON.stringify(err).includes(wrong) && !String(err.stack).includes(wrong));
  await r.cancel();
  const ok = replicate(db, uniqueName('auth'), { connection: { servers: secured.url, user: 'app', pass: 'right-secret-1' } });
  await ok.awaitInitialReplication();
  await db.close();
  await secured.destroy();
});

test('invalid options throw at replicateNats() time, naming the option', async () => {
  const db = await createDb();
  const base = {
    collection: db.people,
    replicationIdentifier: 'x',
    streamName: 's',
    subjectPrefix: 'p',
  };
  const cases = [
    [{ ...base, sever: 'x' }, /sever/],
    [{ ...base, live: 'yes' }, /live/],
    [{ ...base, pull: { batchSize: 0 } }, /pull\.batchSize/],
    [{ ...base, push: { handler: () => [] } }, /push\.handler/],
    [{ ...base, connection: { servers: 'nats://127.0.0.1:1', reconect: true } }, /reconect/],
    [{ ...base, connection: { authenticator: () => {} } }, /connection\.authenticator/],
    [{ ...base, connection: { tls: { ca: 'PEM' } } }, /caFile/],
    [{ ...base, streamName: 'a.b' }, /streamName/],
    [{ ...base, subjectPrefix: 'p.*' }, /subjectPrefix/],
    [{ ...base, connection: { user: 'u', pass: 123456789 } }, /pass/],
  ];
  for (const [options, pattern] of cases) {
    assert.throws(() => replicateNats(options), (e) => {
      assert.equal(e.code, 'NATS_INVALID_OPTION');
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes('123456789'));
      return true;
    });
  }
  await db.close();
});

/**
 * Runs `fixtures/<name>` with `args` (stdin a pipe the test may write to). Resolves `result`
 * ({code, signal} on exit, or 'still running' when it had not exited after `limitMs`, and is then
 * killed), `exitedAt` (performance.now()) and its stdout `out`; `onOutput(out, child)` sees the
 * output so far after each chunk; `started(child)` is called once it is spawned.
 */
async function runFixture(name, args, { limitMs, onOutput = () => {}, started = () => {} }) {
  const child = spawn(process.execPath, [fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url)), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  started(child);
  let out = '';
  child.stdout.on('data', (d) => onOutput((out += d), child));
  let exitedAt;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => ((exitedAt = performance.now()), resolve({ code, signal }))));
  let timer;
  const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve('still running'), limitMs)));
  const result = await Promise.race([exited, timeout]);
  clearTimeout(timer);
  if (result === 'still running') child.kill('SIGKILL');
  return { result, out, exitedAt };
}

test('after cancel() and db.close() the process exits by itself', async () => {
  const streamName = uniqueName('exit');
  const { result, out } = await runFixture('cancel-then-exit.mjs', [server.url, streamName], { limitMs: 20000 });
  assert.deepEqual(result, { code: 0, signal: null });
  assert.match(out, /cancelled/);
  assert.equal((await streamMessages(server.url, streamName)).length, 1);
});

test('cancel() with a read of the stream in flight lets the process exit by itself', async () => {
  const streamName = uniqueName('exit-mid-pull');
  const DOCS = 3000;
  const nc = await connect({ servers: server.url });
  await (await nc.jetstreamManager()).streams.add({ name: streamName, subjects: [`${streamName}.people.*`] });
  const js = nc.jetstream();
  const acks = [];
  for (let i = 0; i < DOCS; i++) acks.push(js.publish(`${streamName}.people.d${i}`, JSON.stringify(person(`d${i}`))));
  await Promise.all(acks);
  await nc.close();
  const proxy = await startLinkProxy(server.port);
  let cancelling;
  const sawCancel = new Promise((resolve) => (cancelling = resolve));
  const { result, out, exitedAt } = await runFixture('cancel-mid-pull.mjs', [proxy.url, streamName], {
    limitMs: 30000,
    onOutput(out, child) {
      // The first read is in; the next one starts after the modifier let its documents through.
      if (out.includes('hold the link') && !proxy.holding) {
        proxy.blackhole();
        child.stdin.write('held\n');
      }
      // Printed right before cancel().
      if (out.includes('read to')) cancelling(performance.now());
    },
  });
  await proxy.close();
  assert.notEqual(result, 'still running', `the child did not exit (output: ${out})`);
  assert.deepEqual(result, { code: 0, signal: null }, out);
  // RxDB had part of the stream; the read after the first was held the whole time.
  const [, taken, readTo] = out.match(/taken (\d+), read to (\d+)/).map(Number);
  assert.ok(taken < DOCS && readTo < DOCS, out);
  assert.match(out, /cancelled/);
  // cancel() ended the held read: closing then waits 2 s at most for the server to delete the
  // consumer. Without that, the read held the pull's cursor, and so cancel(), through its 5 s
  // timeout and a second attempt (15 s here).
  const afterCancel = exitedAt - (await sawCancel);
  assert.ok(afterCancel < 8000, `exited ${afterCancel.toFixed(0)} ms after cancel()`);
});

test('cancel() with a write in flight lets the process exit by itself', async () => {
  const streamName = uniqueName('exit-mid-push');
  const nc = await connect({ servers: server.url });
  await (await nc.jetstreamManager()).streams.add({ name: streamName, subjects: [`${streamName}.people.*`] });
  await nc.close();
  const proxy = await startLinkProxy(server.port);
  // The write goes out as HPUB (it carries the expected sequence): the proxy holds it and all
  // after it, so the client has sent it and no acknowledgement can come.
  const holding = proxy.holdAfter(`HPUB ${streamName}.people.`, 0);
  let cancelling;
  const sawCancel = new Promise((resolve) => (cancelling = resolve));
  const { result, out, exitedAt } = await runFixture('cancel-mid-push.mjs', [proxy.url, streamName], {
    limitMs: 30000,
    onOutput(out, child) {
      if (out.includes('cancelling')) cancelling(performance.now());
    },
    started: (child) => holding.then(() => child.stdin.write('held\n')),
  });
  await proxy.close();
  assert.notEqual(result, 'still running', `the child did not exit (output: ${out})`);
  assert.deepEqual(result, { code: 0, signal: null }, out);
  assert.match(out, /cancelled/);
  // cancel() ended the held write; closing then waits 2 s at most to drain the connection.
  // Without that, the process waited out the acknowledgement's 10 s timeout.
  const afterCancel = exitedAt - (await sawCancel);
  assert.ok(afterCancel < 7000, `exited ${afterCancel.toFixed(0)} ms after cancel()`);
  assert.equal((await streamMessages(server.url, streamName)).length, 0);
});

test('live replication continues after the server restarts and nothing is lost', async () => {
  const restartable = await startNatsServer();
  const streamName = uniqueName('restart');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicate(a, streamName, { connection: { servers: restartable.url, reconnectTimeWait: 100 } });
  const rb = replicate(b, streamName, { connection: { servers: restartable.url, reconnectTimeWait: 100, name: 'b' } });
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  await a.people.insert(person('before'));
  await waitFor(() => b.people.findOne('before').exec(), 'the first write');
  await restartable.kill();
  await a.people.insert(person('during'));
  await restartable.start();
  await a.people.insert(person('after'));
  await waitFor(async () => (await b.people.count().exec()) === 3, 'b to get every write');
  await a.close();
  await b.close();
  await restartable.destroy();
});

test('a connection that ran out of maxReconnectAttempts is replaced and replication goes on', async () => {
  const restartable = await startNatsServer();
  const streamName = uniqueName('gaveup');
  const [a, b] = [await createDb(), await createDb()];
  const ra = replicate(a, streamName, {
    connection: { servers: restartable.url, maxReconnectAttempts: 2, reconnectTimeWait: 100 },
  });
  const rb = replicate(b, streamName, { connection: { servers: restartable.url, reconnectTimeWait: 100, name: 'b' } });
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  const errorsA = collectErrors(ra);
  await restartable.stop();
  // Two attempts 100 ms apart, and a's client gives up: the next retry replaces it, and that
  // connect, with the server still down, is what error$ reports.
  await waitFor(() => errorsA.some((e) => codeOf(e) === 'NATS_CONNECT_FAILED'), 'a\'s client to give up and its replacement to fail');
  await restartable.start();
  await a.people.insert(person('from-a'));
  await b.people.insert(person('from-b'));
  await waitFor(async () => (await a.people.findOne('from-b').exec()) !== null, 'a to get b\'s write', 20000);
  await waitFor(async () => (await b.people.findOne('from-a').exec()) !== null, 'b to get a\'s write', 20000);
  await ra.cancel();
  await rb.cancel();
  await a.close();
  await b.close();
  await restartable.destroy();
});

test('a local document replaces a malformed message on its subject', async () => {
  const streamName = uniqueName('replace');
  const prefix = `${streamName}.people`;
  const db = await createDb();
  const r = replicate(db, streamName);
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  await publishRaw(server.url, `${prefix}.victim`, 'garbage, not a document');
  await waitFor(() => errors.some((e) => e.code === 'NATS_MALFORMED_MESSAGE'), 'the malformed report');
  await db.people.insert(person('victim'));
  await r.awaitInSync();
  const last = (await streamMessages(server.url, streamName)).filter((m) => m.subject === `${prefix}.victim`).pop();
  assert.equal(JSON.parse(last.body).id, 'victim');
  assert.deepEqual(errors.filter((e) => e.code !== 'NATS_MALFORMED_MESSAGE'), []);
  await db.close();
});

test('subjects already stored by another stream are a typed error naming the overlap', async () => {
  const streamName = uniqueName('overlap');
  const nc = await connect({ servers: server.url });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: `${streamName}other`, subjects: [`${streamName}.people.*`] });
  await nc.close();
  const db = await createDb();
  const r = replicate(db, streamName);
  const err = await firstMatching(r.error$, (e) => codeOf(e) === 'NATS_STREAM_MISMATCH', 'the overlap error');
  const inner = err.code === 'NATS_STREAM_MISMATCH' ? err : err.parameters.errors[0];
  assert.match(inner.message, /overlap/);
  await db.close();
});
