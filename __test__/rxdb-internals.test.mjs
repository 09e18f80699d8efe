// The race guards rest on RxDB internals (js/rxdb-internals.cjs). A future RxDB that renames one
// must not turn the guards off silently: the replication reports it on error$. These tests
// simulate such an RxDB by hiding a hook after RxDB's own start().
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { RXDB_VERSION } from 'rxdb';
import { RxReplicationState } from 'rxdb/plugins/replication';
import { startNatsServer } from './harness/nats-server.mjs';
import { createDb, uniqueName, replicatePeople, firstMatching, collectErrors, docsOf, waitFor, codeOf } from './harness/rxdb.mjs';

/** Runs `body` while RxDB's start() is followed by `change(replicationState)`. */
async function withPatchedStart(change, body) {
  const original = RxReplicationState.prototype.start;
  RxReplicationState.prototype.start = async function patchedStart() {
    await original.call(this);
    change(this);
  };
  try {
    return await body();
  } finally {
    RxReplicationState.prototype.start = original;
  }
}

test('an RxDB without the conflict handler hook the guards need is reported on error$, naming version and hook', async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const db = await createDb();
  t.after(() => db.close());
  const hidden = {};
  await withPatchedStart(
    (state) => {
      // As if RxDB had renamed it: the guard cannot find it.
      const input = state.internalReplicationState.input;
      hidden.conflictHandler = input.conflictHandler;
      delete input.conflictHandler;
    },
    async () => {
      const replication = replicatePeople(server.url, db, uniqueName('unsupported'), { push: undefined });
      t.after(() => replication.cancel());
      const error = await firstMatching(replication.error$, (e) => e.code === 'NATS_RXDB_UNSUPPORTED', 'the report');
      assert.equal(error.name, 'RxNatsError');
      assert.ok(error.message.includes(`RxDB ${RXDB_VERSION}`), error.message);
      assert.match(error.message, /internalReplicationState\.input\.conflictHandler/);
      assert.match(error.message, /a write can be lost/);
      // Nothing was wrapped around a handler that is not there.
      assert.equal(state(replication).input.conflictHandler, undefined);
      state(replication).input.conflictHandler = hidden.conflictHandler;
    }
  );
});

test('a downstream equality context the guards do not know is reported once; known ones are not', async (t) => {
  const server = await startNatsServer();
  t.after(() => server.destroy());
  const streamName = uniqueName('contexts');
  const db = await createDb();
  const other = await createDb();
  t.after(async () => {
    await db.close();
    await other.close();
  });
  const replication = replicatePeople(server.url, db, streamName);
  const writer = replicatePeople(server.url, other, streamName);
  t.after(async () => {
    await replication.cancel();
    await writer.cancel();
  });
  const errors = collectErrors([replication, writer]);
  await replication.awaitInitialReplication();
  // Real traffic through the guarded handler: every context RxDB uses today is known.
  await other.people.insert({ id: 'ada', name: 'Ada', age: 36, tags: [] });
  await waitFor(async () => (await docsOf(db)).ada !== undefined, 'ada to arrive');
  await (await other.people.findOne('ada').exec()).incrementalPatch({ age: 37 });
  await waitFor(async () => (await docsOf(db)).ada.age === 37, 'the update to arrive');
  assert.deepEqual(errors.map(codeOf), []);

  // A release that checks equality in a new downstream context.
  const handler = state(replication).input.conflictHandler;
  const doc = { id: 'x', name: 'X', age: 1, tags: [], _deleted: false };
  assert.equal(handler.isEqual(doc, { ...doc }, 'downstream-check-if-equal-2'), true);
  assert.equal(handler.isEqual(doc, { ...doc, age: 2 }, 'downstream-check-if-equal-2'), false);
  await waitFor(async () => errors.length > 0, 'the report');
  assert.deepEqual(errors.map(codeOf), ['NATS_RXDB_UNSUPPORTED'], 'reported once');
  assert.match(errors[0].message, /unknown conflict-handler context "downstream-check-if-equal-2"/);
});

const state = (replication) => replication.internalReplicationState;
