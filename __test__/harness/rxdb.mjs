// Real RxDB databases on memory storage, and small waiting helpers.
import { createRxDatabase } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { connect } from 'nats';
import { replicateNats as replicateNatsOfThePackage } from 'rxdb-nats-native';
import { watchReplication } from './test.mjs';

/** replicateNats() of the package, watched: a failing test prints the state's stats() and errors. */
export function replicateNats(options) {
  return watchReplication(replicateNatsOfThePackage(options), options?.replicationIdentifier);
}

let counter = 0;

export const personSchema = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 200 },
    name: { type: 'string' },
    age: { type: 'integer' },
    tags: { type: 'array', items: { type: 'string' } },
  },
  required: ['id', 'name'],
};

/** A fresh in-memory database with a `people` collection. */
export async function createDb(collectionOptions = {}) {
  const db = await createRxDatabase({
    name: `testdb${process.pid}x${++counter}`,
    storage: getRxStorageMemory(),
    multiInstance: false,
    eventReduce: true,
  });
  await db.addCollections({ people: { schema: personSchema, ...collectionOptions } });
  return db;
}

export function uniqueName(base) {
  return `${base}${process.pid}x${++counter}`;
}

/** Polls `check` until it returns truthy; fails with `what` after `timeoutMs`. */
export async function waitFor(check, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/**
 * A gate that holds whoever calls `hold()` until `release()`: a fault test stops the replication
 * at a known point (in a pull.modifier, a push.modifier or its own writer), causes the fault,
 * then lets it go on. `heldAfter(n)` is a modifier that passes the first `n` documents and holds
 * each later one at the gate.
 */
export function heldGate() {
  let release;
  const open = new Promise((resolve) => (release = resolve));
  let held = 0;
  const hold = () => {
    held++;
    return open;
  };
  return {
    hold,
    get held() {
      return held;
    },
    heldAfter(n) {
      let seen = 0;
      return async (doc) => {
        if (++seen > n) await hold();
        return doc;
      };
    },
    release,
  };
}

/** Resolves with the first value of `observable` that satisfies `predicate`. */
export function firstMatching(observable, predicate, what, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`timed out waiting for ${what}`));
    }, timeoutMs);
    const sub = observable.subscribe((value) => {
      if (predicate(value)) {
        clearTimeout(timer);
        sub.unsubscribe();
        resolve(value);
      }
    });
  });
}

/** Every message of a stream, read with nats.js: what the server really holds. */
export async function streamMessages(url, streamName) {
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(streamName);
    const out = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      try {
        const m = await jsm.streams.getMessage(streamName, { seq });
        out.push({ subject: m.subject, seq: m.seq, body: new TextDecoder().decode(m.data) });
      } catch {}
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** The number of messages stream `streamName` holds (-1 while the server does not answer). */
export async function streamMessageCount(url, streamName) {
  let nc;
  try {
    nc = await connect({ servers: url, maxReconnectAttempts: 0 });
    return (await (await nc.jetstreamManager()).streams.info(streamName)).state.messages;
  } catch {
    return -1;
  } finally {
    await nc?.close().catch(() => {});
  }
}

/** Publishes a raw body to a subject with nats.js (as another writer would). */
export async function publishRaw(url, subject, body) {
  const nc = await connect({ servers: url });
  try {
    const js = nc.jetstream();
    return await js.publish(subject, typeof body === 'string' ? new TextEncoder().encode(body) : body);
  } finally {
    await nc.close();
  }
}

/** The number of consumers on a stream. */
export async function consumerCount(url, streamName) {
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    return (await jsm.streams.info(streamName)).state.consumer_count;
  } finally {
    await nc.close();
  }
}

export async function docsOf(db) {
  const docs = await db.people.find().exec();
  return Object.fromEntries(docs.map((d) => [d.id, d.toJSON()]));
}

/** The rxdb-nats-native code of an error on error$ (RxDB wraps handler errors in RC_PULL/RC_PUSH). */
export function codeOf(err) {
  if (err && typeof err.code === 'string' && err.code.startsWith('NATS_')) return err.code;
  const inner = err && err.parameters && err.parameters.errors && err.parameters.errors[0];
  return inner ? inner.code : undefined;
}

/** Collects error$ of one replication state or several, into one live array. */
export function collectErrors(replications) {
  const errors = [];
  for (const r of [].concat(replications)) r.error$.subscribe((e) => errors.push(e));
  return errors;
}

/**
 * replicateNats() of a test database's `people` collection on `<streamName>.people`, pulling and
 * pushing, retrying every 200 ms; `extra` overrides any option.
 */
export function replicatePeople(url, db, streamName, extra = {}) {
  return replicateNats({
    collection: db.people,
    replicationIdentifier: `test-${streamName}`,
    streamName,
    subjectPrefix: `${streamName}.people`,
    connection: { servers: url },
    pull: {},
    push: {},
    retryTime: 200,
    ...extra,
  });
}
