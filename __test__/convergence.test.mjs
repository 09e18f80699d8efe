// Seeded, randomized convergence: K clients do random inserts, updates and deletes on shared ids
// while the server is restarted (gracefully or with kill -9) at random; then every client must
// equal the server's last state of every document, and no write the server accepted may vanish.
//
// CONVERGENCE_SEED=<n> replays a run's operations (the seed is printed); CONVERGENCE_MS sets how
// long the clients write (default 15 s; e.g. CONVERGENCE_MS=300000 for a long run).
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { NatsServer, onServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, streamMessages, replicatePeople, collectErrors } from './harness/rxdb.mjs';

const SEED = Number(process.env.CONVERGENCE_SEED || Math.floor(Math.random() * 2 ** 31));
const WRITE_MS = Number(process.env.CONVERGENCE_MS || 15000);
const CLIENTS = 3;
const IDS = 24;

/** mulberry32: a small seeded generator, so a failing run can be replayed. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Every write appends its own token to `log`: a later server revision of a document that does not
// extend the previous revision's log has lost a write the server had accepted.
const schema = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 100 },
    name: { type: 'string' },
    counter: { type: 'integer' },
    log: { type: 'array', items: { type: 'string' } },
  },
  required: ['id', 'name', 'counter', 'log'],
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test(`${CLIENTS} clients converge through random writes and server restarts (seed ${SEED})`, (t) =>
  converge(t, { seed: SEED, writeMs: WRITE_MS, checkHistory: true }));

// A stream that keeps one revision per document has no history to check; convergence, and a
// fresh client that joins at the end, must hold all the same.
test(`${CLIENTS} clients converge on a stream with maxMsgsPerSubject 1 (seed ${SEED + 1})`, (t) =>
  converge(t, { seed: SEED + 1, writeMs: Math.min(WRITE_MS, 10000), streamConfig: { maxMsgsPerSubject: 1 } }));

// Deletions that expire (nats-server >= 2.11): a tombstone rolls up its document's history, and
// once every TTL has passed no deletion is left on the stream; the clients must still equal it (a
// client that missed a tombstone during a restart reconciles).
test(`${CLIENTS} clients converge on a stream with tombstoneTtl (seed ${SEED + 2})`, onServer(2, 11), (t) =>
  converge(t, { seed: SEED + 2, writeMs: Math.min(WRITE_MS, 10000), streamConfig: { tombstoneTtl: 1000 } }));

async function converge(t, { seed: SEED, writeMs: WRITE_MS, streamConfig, checkHistory = false }) {
  t.diagnostic(`CONVERGENCE_SEED=${SEED} CONVERGENCE_MS=${WRITE_MS}`);
  console.log(`# convergence: CONVERGENCE_SEED=${SEED} CONVERGENCE_MS=${WRITE_MS}${streamConfig ? ` streamConfig ${JSON.stringify(streamConfig)}` : ''}`);
  const rand = random(SEED);
  const pick = (n) => Math.floor(rand() * n);
  const server = await new NatsServer().start();
  t.after(() => server.destroy());
  const streamName = uniqueName('converge');
  const prefix = `${streamName}.people`;

  const clients = [];
  for (let c = 0; c < CLIENTS; c++) {
    const db = await createDb({ schema });
    const replication = replicatePeople(server.url, db, streamName, {
      connection: { servers: server.url, reconnectTimeWait: 250 },
      pull: { batchSize: 1 + pick(20) },
      push: { batchSize: 1 + pick(20) },
      streamConfig,
    });
    const errors = collectErrors(replication);
    await replication.awaitInitialReplication();
    clients.push({ name: `c${c}`, db, replication, errors, rand: random(SEED + c + 1), ops: 0, deletedLogs: new Map() });
  }

  // Each client writes on its own seeded schedule until the deadline.
  const deadline = Date.now() + WRITE_MS;
  const counts = { insert: 0, update: 0, delete: 0, refused: 0, restarts: 0 };
  // However slow the machine: the clients write through at least one restart and MIN_WRITES writes.
  const MIN_WRITES = 100;
  const writing = () => Date.now() < deadline || counts.restarts < 1 || counts.insert + counts.update + counts.delete < MIN_WRITES;
  const writer = async (client) => {
    const r = client.rand;
    while (writing()) {
      const id = `doc-${Math.floor(r() * IDS)}`;
      const token = `${client.name}:${++client.ops}`;
      const roll = r();
      try {
        const doc = await client.db.people.findOne(id).exec();
        if (!doc) {
          // A document this client deleted itself goes on from its log: if the deletion was not
          // pushed yet, this insert replaces the revision the deletion was based on.
          const log = [...(client.deletedLogs.get(id) || []), token];
          await client.db.people.insert({ id, name: token, counter: 0, log });
          client.deletedLogs.delete(id);
          counts.insert++;
        } else if (roll < 0.85) {
          await doc.incrementalModify((d) => ({ ...d, name: token, counter: d.counter + 1, log: [...d.log, token] }));
          counts.update++;
        } else {
          client.deletedLogs.set(id, doc.log);
          await doc.incrementalRemove();
          counts.delete++;
        }
      } catch {
        counts.refused++; // a local race with a replicated write: RxDB refused it, nothing to check
      }
      await sleep(Math.floor(r() * 40));
    }
  };
  // The server restarts at random: graceful stop or kill -9, down for up to 2 s. The first
  // restart comes whatever the time, while the clients write.
  const restarter = async () => {
    while (true) {
      await sleep(2000 + pick(3000));
      if (counts.restarts >= 1 && Date.now() > deadline - 2000) return;
      if (rand() < 0.5) await server.kill();
      else await server.stop();
      await sleep(pick(2000));
      await server.start();
      counts.restarts++;
    }
  };
  await Promise.all([...clients.map(writer), restarter()]);
  console.log(`# convergence: ${JSON.stringify(counts)}`);
  assert.ok(counts.restarts >= 1, 'the server was restarted at least once');

  // Settle: every client pushes what it has and pulls everything.
  const serverState = async () => {
    const last = new Map();
    const history = new Map();
    for (const m of await streamMessages(server.url, streamName)) {
      const doc = JSON.parse(m.body);
      last.set(doc.id, doc);
      if (!history.has(doc.id)) history.set(doc.id, []);
      history.get(doc.id).push({ seq: m.seq, doc });
      assert.equal(m.subject, `${prefix}.${doc.id}`);
    }
    return { last, history };
  };
  const visible = (doc) => (doc && !doc._deleted ? JSON.stringify([doc.name, doc.counter, doc.log]) : null);
  const differences = async () => {
    const { last } = await serverState();
    const out = [];
    for (const client of clients) {
      const local = new Map((await client.db.people.find().exec()).map((d) => [d.id, d.toJSON()]));
      for (let i = 0; i < IDS; i++) {
        const id = `doc-${i}`;
        if (visible(local.get(id)) !== visible(last.get(id))) out.push(`${client.name}/${id}`);
      }
    }
    return out;
  };
  let diff;
  await waitFor(async () => {
    for (const c of clients) c.replication.reSync();
    await Promise.all(clients.map((c) => c.replication.awaitInSync()));
    diff = await differences();
    return diff.length === 0;
  }, 'every client to equal the server', 120000).catch((e) => {
    throw new Error(`${e.message}; differing client/doc: ${diff.join(', ')} (CONVERGENCE_SEED=${SEED})`);
  });

  const { last, history } = await serverState();
  if (streamConfig?.maxMsgsPerSubject) {
    assert.ok([...history.values()].every((revs) => revs.length <= streamConfig.maxMsgsPerSubject));
  }
  if (streamConfig?.tombstoneTtl) {
    // A tombstone replaced every earlier revision of its document: nothing precedes one.
    for (const [id, revs] of history) {
      const late = revs.findIndex((r, i) => i > 0 && r.doc._deleted);
      assert.equal(late, -1, `${id}: a tombstone after other revisions, at sequence ${revs[late]?.seq}`);
    }
    await waitFor(async () => [...(await serverState()).last.values()].every((d) => !d._deleted), 'every tombstone to expire', 60000);
    diff = await differences();
    assert.deepEqual(diff, [], `the clients equal the server after the expiry (CONVERGENCE_SEED=${SEED})`);
    const resyncs = (await Promise.all(clients.map((c) => c.replication.stats()))).map((s) => s.resyncs);
    console.log(`# convergence: resyncs per client after the expiry: ${resyncs.join(', ')}`);
  }
  if (!checkHistory) {
    // A client that joins now reads each document's one revision and equals the server.
    const db = await createDb({ schema });
    const replication = replicatePeople(server.url, db, streamName, { streamConfig });
    await replication.awaitInitialReplication();
    clients.push({ name: 'fresh', db, replication, errors: collectErrors(replication) });
    diff = await differences();
    assert.deepEqual(diff, [], `the fresh client equals the server (CONVERGENCE_SEED=${SEED})`);
    console.log(`# convergence: ${last.size} documents, ${counts.insert + counts.update + counts.delete} writes, ${[...history.values()].reduce((n, r) => n + r.length, 0)} messages on the server`);
  }
  // No write the server accepted vanished: each revision extends the one before (after a delete a
  // new document may start afresh).
  let revisions = 0;
  const lost = [];
  for (const [id, revs] of history) {
    revisions += revs.length;
    for (let i = 1; i < revs.length; i++) {
      const before = revs[i - 1].doc;
      const now = revs[i].doc;
      if (before._deleted) continue;
      if (JSON.stringify(now.log.slice(0, before.log.length)) !== JSON.stringify(before.log)) {
        lost.push(`${id}: revision at sequence ${revs[i].seq} lost writes of sequence ${revs[i - 1].seq}`);
      }
    }
  }
  assert.deepEqual(lost, [], `no write the server accepted may vanish (CONVERGENCE_SEED=${SEED})`);
  if (checkHistory) {
    console.log(`# convergence: ${revisions} revisions of ${last.size} documents checked on the server`);
    assert.ok(revisions > 50, 'the run wrote a meaningful amount');
  } else {
    assert.ok(counts.insert + counts.update + counts.delete > 50, 'the run wrote a meaningful amount');
  }
  for (const c of clients) {
    // Only transient errors (outages) are expected; never a malformed or invalid document.
    const bad = c.errors.filter((e) => /MALFORMED|INVALID|TOO_LARGE/.test(String(e.code)));
    assert.deepEqual(bad, []);
    await c.replication.cancel();
  }
}
