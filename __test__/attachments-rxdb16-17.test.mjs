// Attachments between a client on RxDB 17 and one on RxDB 16 (the devDependency alias rxdb-16),
// sharing one stream: both layouts of attachment data (Blob, base64) meet the same messages.
// RxDB 16's client is built the way js/index.mjs builds the package's, on RxDB 16's exports.
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import * as rx17 from 'rxdb';
import * as rx16 from 'rxdb-16';
import { RxDBAttachmentsPlugin as Attachments17 } from 'rxdb/plugins/attachments';
import { RxDBAttachmentsPlugin as Attachments16 } from 'rxdb-16/plugins/attachments';
import { getRxStorageMemory as memory17 } from 'rxdb/plugins/storage-memory';
import { getRxStorageMemory as memory16 } from 'rxdb-16/plugins/storage-memory';
import * as replication16 from 'rxdb-16/plugins/replication';
import * as leaderElection16 from 'rxdb-16/plugins/leader-election';
import * as rxjs from 'rxjs';
import { replicateNats } from './harness/rxdb.mjs';
import glue from '../js/replicate.cjs';
import { startNatsServer } from './harness/nats-server.mjs';
import { personSchema, uniqueName, waitFor, codeOf } from './harness/rxdb.mjs';

rx17.addRxPlugin(Attachments17);
rx16.addRxPlugin(Attachments16);
const { replicateNats: replicateNats16 } = glue.createReplicateNats({
  rxdb: rx16,
  replication: replication16,
  leaderElection: leaderElection16,
  rxjs,
});

test('RxDB 16 and RxDB 17 clients read each other\'s attachments, inline and from the Object Store', async () => {
  assert.match(rx16.RXDB_VERSION, /^16\./);
  const server = await startNatsServer();
  const schema = { ...personSchema, attachments: {} };
  const db17 = await rx17.createRxDatabase({ name: uniqueName('v17'), storage: memory17(), multiInstance: false });
  const db16 = await rx16.createRxDatabase({ name: uniqueName('v16'), storage: memory16(), multiInstance: false });
  try {
    await db17.addCollections({ people: { schema } });
    await db16.addCollections({ people: { schema } });
    const streamName = uniqueName('versions');
    const options = (db) => ({
      collection: db.people,
      replicationIdentifier: 'versions',
      streamName,
      subjectPrefix: `${streamName}.people`,
      connection: { servers: server.url },
      pull: {},
      push: {},
      retryTime: 200,
    });
    const r17 = replicateNats(options(db17));
    const r16 = replicateNats16(options(db16));
    const errors = [];
    r17.error$.subscribe((e) => errors.push(e));
    r16.error$.subscribe((e) => errors.push(e));
    const large = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < large.length; i++) large[i] = (i * 7 + (i >> 11)) & 255;
    const put = async (db, id, attachmentId, data) => {
      const doc = (await db.people.findOne(id).exec()) || (await db.people.insert({ id, name: id }));
      await doc.putAttachment({ id: attachmentId, data: new Blob([data]), type: 'application/octet-stream' });
    };
    const bytesOn = (db, id, attachmentId) => waitFor(async () => {
      const attachment = (await db.people.findOne(id).exec())?.getAttachment(attachmentId);
      return attachment && Buffer.from(await (await attachment.getData()).arrayBuffer());
    }, `${attachmentId} of ${id}`);

    await put(db17, 'from17', 'small.txt', 'written on RxDB 17');
    await put(db17, 'from17', 'large.bin', large);
    await put(db16, 'from16', 'small.txt', 'written on RxDB 16');
    await put(db16, 'from16', 'large.bin', large);
    assert.equal((await bytesOn(db16, 'from17', 'small.txt')).toString(), 'written on RxDB 17');
    assert.ok((await bytesOn(db16, 'from17', 'large.bin')).equals(large));
    assert.equal((await bytesOn(db17, 'from16', 'small.txt')).toString(), 'written on RxDB 16');
    assert.ok((await bytesOn(db17, 'from16', 'large.bin')).equals(large));

    // An edit on the other version keeps the attachments (their data is not handed over again).
    await (await db16.people.findOne('from17').exec()).incrementalPatch({ age: 5 });
    await waitFor(async () => (await db17.people.findOne('from17').exec()).age === 5, 'the edit from RxDB 16');
    assert.equal((await bytesOn(db17, 'from17', 'small.txt')).toString(), 'written on RxDB 17');
    assert.ok((await bytesOn(db17, 'from17', 'large.bin')).equals(large));
    assert.deepEqual(errors.map(codeOf), []);
    await r17.cancel();
    await r16.cancel();
  } finally {
    await db17.close();
    await db16.close();
    await server.destroy();
  }
});
