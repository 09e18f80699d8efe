// Soak: a long stream of updates through two replications, with this process's memory sampled.
// Memory must stay flat after warm-up (bounded buffers: nothing grows with the number of
// updates), every update must arrive, and no consumer may be left on the stream after cancel().
//
// `npm test` runs a short soak (SOAK_UPDATES=20000); the soak is
//   SOAK_UPDATES=200000 node --test __test__/soak.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, waitFor, replicatePeople, consumerCount, collectErrors } from './harness/rxdb.mjs';

const UPDATES = Number(process.env.SOAK_UPDATES || 20000);
const DOCS = 500;
const ROUND = DOCS; // one bulk upsert of every document per round

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

test(`soak: ${UPDATES} updates of ${DOCS} documents, memory flat, nothing left behind`, async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const streamName = uniqueName('soak');
  const writer = await createDb();
  const reader = await createDb();
  const rw = replicatePeople(server.url, writer, streamName, { pull: { batchSize: 200 }, push: { batchSize: 200 } });
  const rr = replicatePeople(server.url, reader, streamName, { pull: { batchSize: 200 }, push: { batchSize: 200 } });
  const errors = collectErrors([rw, rr]);
  await rw.awaitInitialReplication();
  await rr.awaitInitialReplication();

  const rounds = Math.ceil(UPDATES / ROUND);
  const samples = [];
  const started = Date.now();
  for (let round = 1; round <= rounds; round++) {
    await writer.people.bulkUpsert(
      Array.from({ length: DOCS }, (_, i) => ({ id: `doc-${i}`, name: `round ${round}`, age: round, tags: [] }))
    );
    // Round by round: both replications caught up (the writer with its own echo, see the
    // known problem below) before the next round.
    await rw.awaitInSync();
    await waitFor(async () => (await rr.stats()).lag === 0 && (await rw.stats()).lag === 0, 'both to catch up', 60000);
    samples.push(process.memoryUsage().rss);
  }
  await rw.awaitInSync();
  await waitFor(
    async () => (await reader.people.find({ selector: { age: rounds } }).exec()).length === DOCS,
    'the last round on the reader',
    60000
  ).catch(async (e) => {
    const ages = {};
    for (const d of await reader.people.find().exec()) ages[d.age] = (ages[d.age] || 0) + 1;
    throw new Error(`${e.message}; reader documents by round: ${JSON.stringify(ages)}; stats ${JSON.stringify(await rr.stats())}`);
  });
  const seconds = (Date.now() - started) / 1000;
  const sw = await rw.stats();
  const sr = await rr.stats();
  // RxDB pushes the newest state of a document, so rounds written while a push ran coalesce.
  assert.ok(sw.documentsPushed >= DOCS && sw.documentsPushed <= rounds * DOCS);
  assert.equal(sr.lag, 0);
  assert.deepEqual(errors, []);

  // Memory: after a warm-up of the first quarter, the last quarter's median RSS stays within 25 %
  // (plus 32 MiB of slack for the allocator) of the second quarter's.
  const q = Math.floor(samples.length / 4);
  const early = median(samples.slice(q, 2 * q));
  const late = median(samples.slice(3 * q));
  const mib = (b) => (b / 1048576).toFixed(0);
  console.log(
    `# soak: ${rounds * DOCS} updates in ${seconds.toFixed(1)} s (${Math.round((rounds * DOCS) / seconds)}/s); ` +
      `RSS ${mib(samples[0])} -> ${mib(early)} -> ${mib(late)} MiB (first, 2nd-quarter median, last-quarter median); ` +
      `reader pulled ${sr.documentsPulled} (${mib(sr.bytesPulled)} MiB)`
  );
  assert.ok(late <= early * 1.25 + 32 * 1048576, `RSS grew from ${mib(early)} to ${mib(late)} MiB`);

  await rw.cancel();
  await rr.cancel();
  assert.equal(await consumerCount(server.url, streamName), 0, 'no consumer left after cancel()');
});

// Known problem, kept visible: a writer that rewrites documents faster than its own writes come
// back from the stream loses writes. RxDB's downstream applies the returning revisions while its
// upstream records the next push, the upstream's metadata write loses as a conflict (RxDB's
// upstream.ts: "TODO what happens when we have conflicts here?"), the assumed master state stays
// old, and every later write of those documents is resolved as a conflict in the server's favour.
// Seen: 40 rounds of 500 documents, the writer itself ends on round 18-24 for ~499 documents.
test('a writer that outpaces its own echo keeps every round', { todo: 'lost updates under echo races, see comment' }, async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const streamName = uniqueName('outpace');
  const writer = await createDb();
  const reader = await createDb();
  const rw = replicatePeople(server.url, writer, streamName, { pull: { batchSize: 200 }, push: { batchSize: 200 } });
  const rr = replicatePeople(server.url, reader, streamName, { pull: { batchSize: 200 }, push: { batchSize: 200 } });
  await rw.awaitInitialReplication();
  await rr.awaitInitialReplication();
  // As in the dbg runs that showed it: a reader keeps up, the writer does not wait for its echo.
  for (let round = 1; round <= 40; round++) {
    await writer.people.bulkUpsert(
      Array.from({ length: DOCS }, (_, i) => ({ id: `doc-${i}`, name: `round ${round}`, age: round, tags: [] }))
    );
    await waitFor(async () => (await rr.stats()).lag < 3 * DOCS, 'the reader to keep up', 60000);
  }
  // Bounded: with the problem, RxDB may keep resolving conflicts and never report being in sync.
  await Promise.race([rw.awaitInSync(), new Promise((r) => setTimeout(r, 15000))]);
  await new Promise((r) => setTimeout(r, 3000));
  const stale = (await writer.people.find().exec()).filter((d) => d.age !== 40).length;
  await rw.cancel();
  await rr.cancel();
  await writer.close();
  await reader.close();
  assert.equal(stale, 0, `${stale} documents lost their last write`);
});
