// A 3-node JetStream cluster on 127.0.0.1, the stream with 3 replicas, clients given all three
// URLs: kill -9 of the stream leader during a push, and of the node a client is connected to.
// Writes resume after the election; nothing acknowledged is lost and nothing is written twice.
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { connect } from 'nats';
import { addRxPlugin } from 'rxdb';
import { RxDBAttachmentsPlugin } from 'rxdb/plugins/attachments';
import { NatsCluster, startNatsServer, killOnMessage } from './harness/nats-server.mjs';
import {
  createDb, uniqueName, waitFor, streamMessages, docsOf, replicatePeople, collectErrors, codeOf, firstMatching,
  personSchema, heldGate,
} from './harness/rxdb.mjs';

addRxPlugin(RxDBAttachmentsPlugin);

const N = 5000;
// Elections take seconds and the machine is shared: every wait is generous.
const LONG = 120000;
const person = (i) => ({ id: `p${String(i).padStart(5, '0')}`, name: `Person ${i}`, age: i % 100, tags: ['t'] });

/**
 * A started cluster. When the test ends, also on failure, the databases given to `closeLater`
 * are closed and then every node and store of the cluster is removed.
 */
async function startCluster(t) {
  const cluster = new NatsCluster();
  const dbs = [];
  cluster.closeLater = (db) => dbs.push(db);
  t.after(async () => {
    await Promise.allSettled(dbs.map((db) => db.close()));
    await cluster.destroy();
  });
  return cluster.start();
}

const running = (cluster) => cluster.nodes.filter((n) => n.proc).map((n) => n.url);

function replicate(cluster, db, streamName, extra = {}) {
  return replicatePeople(cluster.urls, db, streamName, {
    streamConfig: { replicas: 3 },
    retryTime: 300,
    ...extra,
    connection: { servers: cluster.urls, ...extra.connection },
  });
}

/** Stream info through any running node (null while no leader answers). */
async function streamInfo(cluster, streamName) {
  let nc;
  try {
    nc = await connect({ servers: running(cluster), maxReconnectAttempts: 0, timeout: 2000 });
    const jsm = await nc.jetstreamManager({ timeout: 2000 });
    return await jsm.streams.info(streamName);
  } catch {
    return null;
  } finally {
    await nc?.close().catch(() => {});
  }
}

const messageCount = async (cluster, streamName) => (await streamInfo(cluster, streamName))?.state.messages ?? -1;

/** What one node itself stores of the stream (its /jsz), whether it leads it or not. */
async function localStreamState(node, streamName) {
  const res = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz?streams=true`);
  const jsz = await res.json();
  for (const account of jsz.account_details || []) {
    const stream = (account.stream_detail || []).find((s) => s.name === streamName);
    if (stream) return stream.state;
  }
  return null;
}

/** Asserts the stream holds each of `ids` exactly once, each message carrying its document. */
async function assertEachOnce(cluster, streamName, ids) {
  const messages = await streamMessages(running(cluster), streamName);
  const prefix = `${streamName}.people.`;
  const bySubject = new Map();
  for (const m of messages) bySubject.set(m.subject, (bySubject.get(m.subject) || 0) + 1);
  assert.deepEqual([...bySubject.entries()].filter(([, n]) => n > 1), [], 'no document was written twice');
  assert.deepEqual([...bySubject.keys()].sort(), ids.map((id) => prefix + id).sort(), 'every document is on the stream');
  for (const m of messages) assert.equal(JSON.parse(m.body).id, m.subject.slice(prefix.length));
}

test('a stream created with streamConfig.replicas 3 has three replicas, one per node', { timeout: LONG }, async (t) => {
  const cluster = await startCluster(t);
  const streamName = uniqueName('r3');
  const db = await createDb();
  cluster.closeLater(db);
  const r = replicate(cluster, db, streamName);
  await r.awaitInitialReplication();
  await db.people.insert(person(1));
  await r.awaitInSync();
  const info = await waitFor(async () => {
    const i = await streamInfo(cluster, streamName);
    return i && i.cluster?.replicas?.length === 2 && i.cluster.replicas.every((p) => p.current) && i;
  }, 'the stream with two current followers', 30000);
  assert.equal(info.config.num_replicas, 3);
  const placed = [info.cluster.leader, ...info.cluster.replicas.map((p) => p.name)].sort();
  assert.deepEqual(placed, cluster.nodes.map((n) => n.serverName).sort(), 'one replica on each node');
  assert.equal(info.state.messages, 1);
  // Every node stores the document itself.
  for (const node of cluster.nodes) {
    await waitFor(async () => (await localStreamState(node, streamName))?.messages === 1, `${node.serverName} to hold the document`);
  }
});

/** Moves the stream's leadership (by stepdowns) until `wanted(leader)` holds. */
async function moveLeader(cluster, streamName, wanted, what) {
  for (let i = 0; i < 20; i++) {
    if (wanted(await cluster.streamLeader(streamName))) return;
    const nc = await connect({ servers: running(cluster), timeout: 2000 });
    try {
      await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${streamName}`, new Uint8Array(), { timeout: 5000 });
    } catch {
      // The answer may be lost in the election it starts; the leader is checked again.
    } finally {
      await nc.close().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`stream ${streamName}: could not move its leader ${what}`);
}

/**
 * kill -9 of the stream leader in the middle of a 5,000-document push by writer A, while B (a
 * fresh database) pulls live. `writerOnLeader`: A is connected to the leader, so it loses its
 * server too; otherwise A stays connected and sees only the election.
 */
async function leaderKillDuringPush(t, writerOnLeader) {
  const cluster = await startCluster(t);
  const streamName = uniqueName('leaderkill');
  const [a, b] = [await createDb(), await createDb()];
  cluster.closeLater(a);
  cluster.closeLater(b);
  // Small batches: many requests in flight when the leader dies.
  const ra = replicate(cluster, a, streamName, { pull: undefined, push: { batchSize: 20 }, connection: { name: 'writer-a' } });
  await ra.awaitInitialReplication();
  await a.people.insert(person(0));
  await ra.awaitInSync();
  const rb = replicate(cluster, b, streamName, { push: undefined, pull: { batchSize: 200 }, connection: { name: 'reader-b' } });
  await rb.awaitInitialReplication();
  const writersNode = await waitFor(() => cluster.connectedNode('writer-a'), 'the writer to show in /connz');
  if (writerOnLeader) {
    await moveLeader(cluster, streamName, (l) => l === writersNode, `onto ${writersNode.serverName}`);
  } else {
    await moveLeader(cluster, streamName, (l) => l !== writersNode, `off ${writersNode.serverName}`);
  }
  const leader = await cluster.streamLeader(streamName);
  assert.equal(leader === writersNode, writerOnLeader);

  // The leader dies the moment the 200th document is seen on the wire, with thousands of writes
  // still in flight: a plain subscriber in another process (this one is busy with RxDB) on a
  // surviving node kills it.
  const killer = killOnMessage(cluster.nodes.find((n) => n !== leader).url, `${streamName}.people.*`, 200, leader.proc.pid);
  t.after(() => killer.child.kill());
  await killer.ready;
  let sent = 0;
  ra.sent$.subscribe(() => sent++);
  const errors = collectErrors(ra);
  const inserted = a.people.bulkInsert(Array.from({ length: N - 1 }, (_, i) => person(i + 1)));
  await killer.done;
  const sentAtKill = sent;
  await leader.kill(); // collects the exit
  await inserted;
  assert.ok(sentAtKill < N - 1, `the push was still under way at the kill (${sentAtKill} of ${N - 1} sent)`);

  await waitFor(async () => (await messageCount(cluster, streamName)) >= N, 'all documents on the stream after the election', 2 * LONG);
  await ra.awaitInSync();
  assert.ok(errors.length > 0, 'the push met the election');
  assert.deepEqual([...new Set(errors.map(codeOf))], ['NATS_UNAVAILABLE'], 'only transient errors were reported');
  const messages = errors.map((e) => (e.parameters?.errors?.[0] ?? e).message);
  if (!writerOnLeader) assert.ok(messages.some((m) => m.includes('electing a leader')), `the errors say why: ${messages[0]}`);
  const newLeader = await cluster.streamLeader(streamName);
  assert.notEqual(newLeader, leader, 'another node leads the stream');
  const writerNow = await cluster.connectedNode('writer-a');
  if (writerOnLeader) assert.ok(writerNow && writerNow !== writersNode, 'the writer reconnected to a surviving node');
  else assert.equal(writerNow, writersNode, 'the writer never changed servers');
  await assertEachOnce(cluster, streamName, Array.from({ length: N }, (_, i) => person(i).id));

  // B, pulling live through the election, ends with every document.
  await waitFor(async () => (await b.people.count().exec()) === N, 'B to hold every document', LONG);
  // So does a fresh client that pulls from the surviving nodes afterwards.
  const c = await createDb();
  cluster.closeLater(c);
  const rc = replicate(cluster, c, streamName, { push: undefined, live: false, pull: { batchSize: 500 } });
  await rc.awaitInitialReplication();
  assert.equal(await c.people.count().exec(), N);

  // The killed node rejoins on its store: a current replica again, it takes the next write,
  // and when it leads the stream again every document is still there.
  await leader.start();
  await waitFor(async () => {
    const info = await streamInfo(cluster, streamName);
    const peers = [info?.cluster?.leader, ...(info?.cluster?.replicas || []).filter((p) => p.current && !p.offline).map((p) => p.name)];
    return peers.includes(leader.serverName) && peers.length === 3;
  }, 'the restarted node to be a current replica again', LONG);
  await a.people.insert(person(N));
  await ra.awaitInSync();
  await waitFor(async () => (await localStreamState(leader, streamName))?.messages === N + 1, 'the restarted node to hold every document', LONG);
  await moveLeader(cluster, streamName, (l) => l === leader, `back onto ${leader.serverName}`);
  assert.equal((await streamInfo(cluster, streamName))?.state.messages, N + 1, 'led by the restarted node, the stream holds every document');
}

test('attachments on a cluster: the bucket has the stream\'s replicas, and a large attachment outlives its bucket leader', { timeout: 4 * LONG }, async (t) => {
  const cluster = await startCluster(t);
  const streamName = uniqueName('r3att');
  const bucketStream = `OBJ_${streamName}_attachments`;
  const schema = { ...personSchema, attachments: {} };
  const [a, b] = [await createDb({ schema }), await createDb({ schema })];
  cluster.closeLater(a);
  cluster.closeLater(b);
  const sha256 = (buffer) => crypto.createHash('sha256').update(buffer).digest('hex');
  const bytes = (seed) => crypto.createHash('sha512').update(String(seed)).digest().toString('hex').repeat(24000).slice(0, 3 * 1024 * 1024);
  const put = async (db, id, data) => {
    const doc = (await db.people.findOne(id).exec()) || (await db.people.insert({ id, name: id }));
    return doc.putAttachment({ id: 'file.bin', data: new Blob([data]), type: 'application/octet-stream' });
  };
  const readOn = (db, id, digest) => waitFor(async () => {
    const attachment = (await db.people.findOne(id).exec())?.getAttachment('file.bin');
    return attachment && attachment.digest === digest && Buffer.from(await (await attachment.getData()).arrayBuffer());
  }, `${id}'s attachment`, LONG);

  const ra = replicate(cluster, a, streamName, { pull: undefined });
  const errors = collectErrors(ra);
  await ra.awaitInitialReplication();
  const first = bytes(1);
  const written = await put(a, 'before', first);
  await ra.awaitInSync();
  const info = await waitFor(async () => {
    const i = await streamInfo(cluster, bucketStream);
    return i && i.cluster?.replicas?.length === 2 && i.cluster.replicas.every((p) => p.current) && i;
  }, 'the bucket with two current followers', 60000);
  assert.equal(info.config.num_replicas, 3);

  const leader = await cluster.streamLeader(bucketStream);
  await leader.kill();
  // A new upload waits out the bucket's election; a fresh client reads both through the others.
  const second = bytes(2);
  const rewritten = await put(a, 'after', second);
  await ra.awaitInSync();
  const rb = replicate(cluster, b, streamName, { push: undefined, live: false, connection: { servers: running(cluster) } });
  rb.error$.subscribe((e) => errors.push(e));
  await rb.awaitInitialReplication();
  assert.equal(sha256(await readOn(b, 'before', written.digest)), sha256(first));
  assert.equal(sha256(await readOn(b, 'after', rewritten.digest)), sha256(second));
  assert.deepEqual(errors.filter((e) => String(codeOf(e)).startsWith('NATS_ATTACHMENT')), []);
});

test('a KV bucket on a cluster: created with the replicas asked, it outlives its leader for RxDB and KV clients', { timeout: 4 * LONG }, async (t) => {
  const cluster = await startCluster(t);
  const bucket = uniqueName('r3kv');
  const db = await createDb();
  cluster.closeLater(db);
  const r = replicatePeople(cluster.urls, db, bucket, {
    streamName: undefined,
    subjectPrefix: undefined,
    kv: { bucket, history: 5 },
    streamConfig: { replicas: 3 },
    retryTime: 300,
  });
  const errors = collectErrors(r);
  await r.awaitInitialReplication();
  await db.people.insert(person(1));
  await r.awaitInSync();
  const info = await waitFor(async () => {
    const i = await streamInfo(cluster, `KV_${bucket}`);
    return i && i.cluster?.replicas?.length === 2 && i.cluster.replicas.every((p) => p.current) && i;
  }, 'the bucket with two current followers', 60000);
  assert.equal(info.config.num_replicas, 3);
  assert.equal(info.config.max_msgs_per_subject, 5);

  await (await cluster.streamLeader(`KV_${bucket}`)).kill();
  // A KV client on a node still running writes; so does RxDB, once the bucket has a new leader.
  const nc = await connect({ servers: running(cluster) });
  t.after(() => nc.close());
  // Opening the bucket asks for its info, which times out while the bucket elects a leader.
  const kv = await waitFor(() => nc.jetstream().views.kv(bucket, { bindOnly: true }).catch(() => null), 'nats.js to open the bucket', LONG);
  await waitFor(async () => kv.put('from-kv', new TextEncoder().encode(JSON.stringify({ name: 'from kv' }))).then(() => true, () => false), 'a put after the election', LONG);
  await db.people.insert(person(2));
  await waitFor(() => db.people.findOne('from-kv').exec(), 'the KV client\'s put in RxDB', LONG);
  await r.awaitInSync();
  const value = await waitFor(() => kv.get(person(2).id).catch(() => null), 'RxDB\'s write in the bucket', LONG);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(value.value)), person(2));
  assert.deepEqual(errors.map(codeOf).filter((c) => c !== 'NATS_UNAVAILABLE'), []);
});

test('streamConfig.replicas 3 on a server that is not clustered: NATS_INVALID_OPTION naming the option', { timeout: LONG }, async (t) => {
  const server = await startNatsServer();
  const db = await createDb();
  t.after(async () => {
    await db.close();
    await server.destroy();
  });
  const r = replicatePeople(server.url, db, uniqueName('r3single'), { streamConfig: { replicas: 3 } });
  const err = await firstMatching(r.error$, (e) => codeOf(e) !== undefined, 'an error');
  const inner = err.parameters?.errors?.[0] ?? err;
  assert.equal(codeOf(err), 'NATS_INVALID_OPTION');
  assert.match(inner.message, /streamConfig\.replicas is 3.*not part of a JetStream cluster/);
});

test('more replicas than the cluster has servers: NATS_UNAVAILABLE naming streamConfig.replicas, retried', { timeout: LONG }, async (t) => {
  const cluster = await startCluster(t);
  const db = await createDb();
  cluster.closeLater(db);
  const r = replicate(cluster, db, uniqueName('r5'), { streamConfig: { replicas: 5 } });
  const errors = collectErrors(r);
  await waitFor(() => errors.length >= 2, 'the failed create to be reported and retried', LONG);
  for (const err of errors) {
    assert.equal(codeOf(err), 'NATS_UNAVAILABLE');
    assert.match((err.parameters?.errors?.[0] ?? err).message, /with 5 replicas.*streamConfig\.replicas/);
  }
});

test('kill -9 of the stream leader during a 5,000-document push: it completes after the election, each document once, a live reader gets all', { timeout: 4 * LONG }, (t) =>
  leaderKillDuringPush(t, false));

test('kill -9 of the stream leader that is also the writer\'s server, during a push: the writer moves to another node, each document once', { timeout: 4 * LONG }, (t) =>
  leaderKillDuringPush(t, true));

test('kill -9 of the node a writer is connected to: it reconnects to another node by itself, both clients converge', { timeout: 4 * LONG }, async (t) => {
  const cluster = await startCluster(t);
  const streamName = uniqueName('nodekill');
  const [a, b] = [await createDb(), await createDb()];
  cluster.closeLater(a);
  cluster.closeLater(b);
  const ra = replicate(cluster, a, streamName, { connection: { name: 'writer-a' } });
  const rb = replicate(cluster, b, streamName, { connection: { name: 'reader-b' } });
  await ra.awaitInitialReplication();
  await rb.awaitInitialReplication();
  await a.people.insert(person(0));
  await waitFor(() => b.people.findOne(person(0).id).exec(), 'the first document live at B');
  const aNode = await waitFor(() => cluster.connectedNode('writer-a'), 'A to show in /connz');
  // Only A's server dies here: the stream's leader lives on.
  await moveLeader(cluster, streamName, (l) => l !== aNode, `off ${aNode.serverName}`);

  // A writes steadily; B writes a few of its own. A's server dies in the middle: A's writer
  // holds at its 100th write until the node is dead, so 300 writes come after the kill.
  const total = 400;
  const gate = heldGate();
  let written = 1;
  const writing = (async () => {
    for (; written < total; written++) {
      if (written === 100) await gate.hold();
      await a.people.insert(person(written));
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await waitFor(() => gate.held > 0, 'A to have written 100 documents', LONG);
  await aNode.kill();
  gate.release();
  for (let i = 0; i < 10; i++) await b.people.insert({ ...person(10000 + i), name: 'from B' });
  await writing;

  const ids = [...Array.from({ length: total }, (_, i) => person(i).id), ...Array.from({ length: 10 }, (_, i) => person(10000 + i).id)];
  await waitFor(async () => (await a.people.count().exec()) === ids.length && (await b.people.count().exec()) === ids.length,
    'both clients to hold every document', 2 * LONG);
  await ra.awaitInSync();
  await rb.awaitInSync();
  assert.deepEqual(await docsOf(a), await docsOf(b));
  const aNow = await cluster.connectedNode('writer-a');
  assert.ok(aNow && aNow !== aNode, 'A is connected to another node');
  await assertEachOnce(cluster, streamName, ids);

  // After the node comes back, live replication still runs both ways.
  await aNode.start();
  await waitFor(async () => (await localStreamState(aNode, streamName))?.messages === ids.length, 'the restarted node to catch up', LONG);
  await b.people.insert({ ...person(20000), name: 'after' });
  await waitFor(() => a.people.findOne(person(20000).id).exec(), 'a write after the restart to reach A', LONG);
});

test('kill -9 of the node holding a live reader\'s consumer: the reader gets a new consumer and every later write', { timeout: 4 * LONG }, async (t) => {
  const cluster = await startCluster(t);
  const streamName = uniqueName('consumerkill');
  const [a, b] = [await createDb(), await createDb()];
  cluster.closeLater(a);
  cluster.closeLater(b);
  const ra = replicate(cluster, a, streamName, { pull: undefined, connection: { name: 'writer-a' } });
  await ra.awaitInitialReplication();
  await a.people.insert(person(0));
  await ra.awaitInSync();
  const rb = replicate(cluster, b, streamName, { push: undefined, connection: { name: 'reader-b' } });
  await rb.awaitInitialReplication();
  await waitFor(() => b.people.findOne(person(0).id).exec(), 'the first document at B');
  // B's live consumer is the one with a pull request waiting on the server.
  const liveConsumerNode = await waitFor(async () => {
    const nc = await connect({ servers: cluster.urls });
    try {
      const jsm = await nc.jetstreamManager();
      for await (const ci of jsm.consumers.list(streamName)) {
        if (ci.num_waiting > 0) return cluster.node(ci.cluster?.leader);
      }
    } finally {
      await nc.close();
    }
  }, 'the live consumer');
  await liveConsumerNode.kill();
  for (let i = 1; i <= 100; i++) await a.people.insert(person(i));
  await waitFor(async () => (await b.people.count().exec()) === 101, 'B to receive every write after the kill', LONG);
  assert.deepEqual(await docsOf(a), await docsOf(b));
  await liveConsumerNode.start();
});

test('kill -9 of the node holding a fresh client\'s pull consumer during its initial pull: it ends with every document, each applied once', { timeout: 4 * LONG }, async (t) => {
  const cluster = await startCluster(t);
  const streamName = uniqueName('pullkill');
  const [a, c] = [await createDb(), await createDb()];
  cluster.closeLater(a);
  cluster.closeLater(c);
  const ra = replicate(cluster, a, streamName, { pull: undefined, live: false, push: { batchSize: 1000 } });
  await a.people.bulkInsert(Array.from({ length: N }, (_, i) => person(i)));
  await ra.awaitInSync();

  const applied = new Map();
  // The pull is held at a known point: pull.modifier waits on the first document past HOLD_AT
  // until the consumer's node is dead. The pull reads ahead, but not the whole stream at once,
  // so the consumer has documents left to deliver then (checked below, on the server).
  const HOLD_AT = 1000;
  const gate = heldGate();
  const modifier = gate.heldAfter(HOLD_AT);
  const rc = replicate(cluster, c, streamName, { push: undefined, live: false, pull: { batchSize: 20, modifier } });
  rc.received$.subscribe((d) => applied.set(d.id, (applied.get(d.id) || 0) + 1));
  const errors = collectErrors(rc);
  await waitFor(() => gate.held > 0, 'the pull to reach the gate', LONG);
  const consumer = await waitFor(async () => {
    const nc = await connect({ servers: cluster.urls });
    try {
      const jsm = await nc.jetstreamManager();
      for await (const ci of jsm.consumers.list(streamName)) return ci;
    } finally {
      await nc.close();
    }
  }, 'the pull consumer');
  assert.ok(consumer.num_pending > 0, `the pull consumer still has documents to deliver at the kill (${consumer.num_pending} pending, ${consumer.delivered.stream_seq} delivered)`);
  const consumerNode = cluster.node(consumer.cluster?.leader);
  await consumerNode.kill();
  const atKill = applied.size;
  assert.ok(atKill < N, `the pull was still under way at the kill (${atKill} of ${N} applied)`);
  gate.release();
  await rc.awaitInitialReplication();
  assert.equal(await c.people.count().exec(), N);
  assert.equal(applied.size, N);
  assert.deepEqual([...applied.values()].filter((n) => n > 1), [], 'no document applied twice');
  assert.deepEqual(errors.filter((e) => codeOf(e) !== 'NATS_UNAVAILABLE'), [], 'at most transient errors');
  await consumerNode.start();
});
