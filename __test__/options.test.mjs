// Option names and defaults have one source: js/options.cjs for replicateNats() itself, the
// native structs (src/options.rs) for the sub-options they check. index.d.ts, the README's
// tables and the native side must say the same; this test fails when one of them drifts.
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import ts from 'typescript';

const require = createRequire(import.meta.url);
const root = path.resolve(import.meta.dirname, '..');
const { OPTIONS, PULL_OPTIONS, PUSH_OPTIONS, ATTACHMENT_OPTIONS, KV_OPTIONS, DEFAULTS } = require('../js/options.cjs');
const native = require('../js/native.cjs');

/** Each interface of index.d.ts: its members' names and doc comments. */
function declaredInterfaces() {
  const file = path.join(root, 'index.d.ts');
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const interfaces = new Map();
  source.forEachChild((node) => {
    if (!ts.isInterfaceDeclaration(node)) return;
    const members = new Map();
    for (const member of node.members) {
      if (!member.name) continue;
      const docs = ts.getJSDocCommentsAndTags(member).map((doc) => doc.getText()).join('\n');
      members.set(member.name.getText(source), docs);
    }
    interfaces.set(node.name.text, members);
  });
  return interfaces;
}

/** The rows of the README table that follows `heading` (first column, second column). */
function readmeTable(heading) {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const start = readme.indexOf(heading);
  assert.ok(start >= 0, `README has ${heading}`);
  const lines = readme.slice(start).split('\n');
  const first = lines.findIndex((line) => line.startsWith('| '));
  const rows = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line.split('|').map((cell) => cell.trim());
    rows.push(cells.slice(1, -1));
  }
  return rows;
}

/** The field names the native side accepts at `where` (taken from its unknown-field error). */
function nativeFields(where) {
  const options = {
    streamName: 's',
    subjectPrefix: 'p',
    primaryPath: 'id',
    connection: {},
    streamConfig: {},
    attachments: {},
  };
  const [top, sub] = where.split('.');
  if (sub) options[top][sub] = { notAnOption: true };
  else options[top] = { notAnOption: true };
  const problem = JSON.parse(native.validateOptions(JSON.stringify(options)));
  assert.equal(problem.code, 'NATS_INVALID_OPTION');
  assert.match(problem.message, new RegExp(`^invalid option ${where.replace('.', '\\.')}\\.notAnOption: unknown field`));
  // serde lists them as "expected one of `a`, `b`, `c`" or "expected `a` or `b`".
  return [...problem.message.replace(/^.*unknown field `notAnOption`, expected /, '').matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}

const sorted = (names) => [...names].sort();
const interfaces = declaredInterfaces();

test('index.d.ts declares exactly the options js/options.cjs takes', () => {
  assert.deepEqual(sorted(interfaces.get('NatsSyncOptions').keys()), sorted(Object.keys(OPTIONS)));
  assert.deepEqual(sorted(interfaces.get('NatsAttachmentOptions').keys()), sorted(Object.keys(ATTACHMENT_OPTIONS)));
  assert.deepEqual(sorted(interfaces.get('NatsKvOptions').keys()), sorted(Object.keys(KV_OPTIONS)));
  // pull and push are RxDB's own option types minus the handlers, which the glue supplies.
  assert.deepEqual(sorted(Object.keys(PULL_OPTIONS)), ['batchSize', 'initialCheckpoint', 'modifier']);
  assert.deepEqual(sorted(Object.keys(PUSH_OPTIONS)), ['batchSize', 'initialCheckpoint', 'modifier', 'waitBeforePersist']);
});

test('index.d.ts and the README state the defaults js/options.cjs applies', () => {
  const docs = interfaces.get('NatsSyncOptions');
  const table = new Map(readmeTable('## Options').map(([name, byDefault]) => [name, byDefault]));
  for (const [name, value] of Object.entries(DEFAULTS)) {
    const shown = typeof value === 'string' ? `'${value}'` : String(value);
    if (name.includes('.')) continue; // pull.batchSize, push.batchSize: below
    assert.match(docs.get(name), new RegExp(`\\(default [\`']?${value}[\`']?[,)]`), `index.d.ts default of ${name}`);
    assert.equal(table.get(`\`${name}\``), `\`${shown}\``, `README default of ${name}`);
  }
  const meanings = new Map(readmeTable('## Options').map(([name, , meaning]) => [name, meaning]));
  for (const part of ['pull', 'push']) {
    assert.match(meanings.get(`\`${part}\``), new RegExp(`batchSize = ${DEFAULTS[`${part}.batchSize`]}\\b`));
  }
});

test('the README options table lists every option, and only those', () => {
  const names = readmeTable('## Options').map(([name]) => name.replace(/`/g, ''));
  assert.deepEqual(sorted(names), sorted(Object.keys(OPTIONS)));
});

test('the native side takes exactly the sub-options index.d.ts declares', () => {
  assert.deepEqual(sorted(nativeFields('connection')), sorted(interfaces.get('NatsConnectionOptions').keys()));
  assert.deepEqual(sorted(nativeFields('streamConfig')), sorted(interfaces.get('NatsStreamConfig').keys()));
  assert.deepEqual(sorted(nativeFields('attachments')), sorted(interfaces.get('NatsAttachmentOptions').keys()));
  assert.deepEqual(sorted(nativeFields('kv')), sorted(interfaces.get('NatsKvOptions').keys()));
  // Inline PEM is known to the native side only to be refused with a message that says why.
  assert.deepEqual(sorted(nativeFields('connection.tls')), sorted([...interfaces.get('NatsTlsOptions').keys(), 'ca', 'cert', 'key']));
  const pem = JSON.parse(
    native.validateOptions(JSON.stringify({ streamName: 's', subjectPrefix: 'p', primaryPath: 'id', connection: { tls: { ca: 'x' } } }))
  );
  assert.equal(pem.code, 'NATS_INVALID_OPTION');
  assert.match(pem.message, /tls\.ca/);
});

test('the README connection table lists every connection option', () => {
  const names = readmeTable('`connection` takes').flatMap(([name]) => name.split('/').map((part) => part.trim().replace(/`/g, '')));
  assert.deepEqual(sorted(names), sorted(interfaces.get('NatsConnectionOptions').keys()));
});
