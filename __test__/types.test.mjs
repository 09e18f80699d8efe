// The public types, as a TypeScript user meets them: a small consumer project (types/) that
// imports rxdb-nats-native from ESM and requires it from CommonJS, checked with `tsc --strict`.
import { test } from './harness/test.mjs';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const require = createRequire(import.meta.url);
const project = fileURLToPath(new URL('./types/tsconfig.json', import.meta.url));
const MARK = /^\s*\/\/ @ts-expect-error\b/;

test('a strict TypeScript consumer compiles: the document type flows from the collection to the replication state', () => {
  const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', project], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, `tsc --strict reported:\n${tsc.stdout}${tsc.stderr}`);
});

test('every marked option mistake is a type error, on its own line', () => {
  const config = ts.getParsedCommandLineOfConfigFile(project, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(d.messageText) });
  // The fixtures with the @ts-expect-error comments blanked out (line numbers unchanged).
  const fixtures = new Set(config.fileNames.map((f) => path.resolve(f)));
  const host = ts.createCompilerHost(config.options);
  const readFile = host.readFile.bind(host);
  host.readFile = (file) => {
    const text = readFile(file);
    return fixtures.has(path.resolve(file)) ? text.split('\n').map((line) => (MARK.test(line) ? '' : line)).join('\n') : text;
  };
  const program = ts.createProgram(config.fileNames, config.options, host);
  const found = ts.getPreEmitDiagnostics(program).map((d) => {
    assert.ok(d.file && fixtures.has(path.resolve(d.file.fileName)), `error outside the fixtures: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    return `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}`;
  });
  const expected = [];
  for (const file of fixtures) {
    readFile(file).split('\n').forEach((line, i) => MARK.test(line) && expected.push(`${path.basename(file)}:${i + 2}`));
  }
  assert.ok(expected.length >= 10, `the fixtures mark their mistakes (${expected.length})`);
  assert.deepEqual([...new Set(found)].sort(), expected.sort());
});
