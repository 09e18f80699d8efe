// Soak: a long stream of updates through two replications, with this process's memory sampled.
// Memory must stay flat after warm-up (bounded buffers: nothing grows with the number of
// updates), every update must arrive, and no consumer may be left on the stream after cancel().
//
// `npm test` runs a short soak (SOAK_UPDATES=20000); the soak is
//   SOAK_UPDATES=200000 node --test __test__/soak.test.mjs
import { test } from './harness/test.mjs';
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
    // Round by round: both replications caught up before the next round, so every memory
    // sample is taken in the same state (a writer that does not wait: echo-races.test.mjs).
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
