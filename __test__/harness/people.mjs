// Numbered people and two synced databases: what the deletion tests (expiry, ttl) share.
import { createDb, waitFor, docsOf, replicatePeople } from './rxdb.mjs';

/** Person `i`, id `p000`-style so ids sort as numbers do. */
export const person = (i, extra = {}) => ({ id: `p${String(i).padStart(3, '0')}`, name: `person ${i}`, age: i, tags: [], ...extra });
/** The sorted ids of `docsOf(db)`. */
export const ids = (docs) => Object.keys(docs).sort();
/** The integers from `from` up to, not including, `to`. */
export const range = (from, to) => Array.from({ length: to - from }, (_, k) => from + k);

/** Two synced databases, A and B, replicating with `extra`, with people 0..n-1 on the stream. */
export async function twoSynced(url, streamName, n, extra = {}) {
  const a = await createDb();
  const b = await createDb();
  const ra = replicatePeople(url, a, streamName, extra);
  const rb = replicatePeople(url, b, streamName, extra);
  await Promise.all([ra.awaitInitialReplication(), rb.awaitInitialReplication()]);
  await a.people.bulkInsert(range(0, n).map((i) => person(i)));
  await waitFor(async () => ids(await docsOf(b)).length === n, `${n} documents on B`);
  await ra.awaitInSync();
  await rb.awaitInSync();
  return { a, b, ra, rb };
}
