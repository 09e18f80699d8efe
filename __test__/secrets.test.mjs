// Credentials never appear in errors or logs: every kind (password, token, nkey seed, creds file)
// is made to fail, wrong or malformed, and every error is rendered every way an application
// might (own properties, String(), stack, JSON, util.inspect, console output of a child process).
import { test, before, after } from './harness/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NatsServer } from './harness/nats-server.mjs';
import { tempDir, userNkey, makeOperator, randomSecret } from './harness/secrets.mjs';
import { provoke } from './fixtures/provoke-errors.mjs';

let dir;
let servers = [];
let cases;
/** Every secret used by any case: none may appear in any output of any case. */
let secrets;

before(async () => {
  dir = tempDir();
  const password = randomSecret('password');
  const token = randomSecret('token');
  const user = userNkey();
  const users = await new NatsServer({
    config: `authorization { users: [{ user: app, password: "${password}" }, { nkey: ${user.publicKey} }] }`,
  }).start();
  const tokens = await new NatsServer({ config: `authorization { token: "${token}" }` }).start();
  const op = await makeOperator(dir);
  const operator = await new NatsServer({ config: op.config }).start();
  servers = [users, tokens, operator];

  const wrongPassword = randomSecret('wrong-password');
  const urlPassword = randomSecret('url-password');
  const typedPassword = randomSecret('typed-password');
  const wrongToken = randomSecret('wrong-token');
  const urlToken = randomSecret('url-token');
  const exclusiveToken = randomSecret('exclusive-token');
  const unknownSeed = userNkey().seed;
  const malformedSeed = `${userNkey().seed.slice(0, -6)}ZZZZZZ`;
  const inlineKey = randomSecret('inline-key');
  const stranger = await (await makeOperator(dir)).creds('stranger');
  // A creds file whose seed does not decode: its JWT and its seed must stay hidden too.
  const broken = await op.creds('broken');
  const brokenSeed = `${broken.seed.slice(0, -6)}ZZZZZZ`;
  fs.writeFileSync(broken.file, broken.text.replace(broken.seed, brokenSeed));
  const hostPort = (s) => s.url.replace('nats://', '');

  cases = [
    { name: 'wrong password', code: 'NATS_AUTH_FAILED', connection: { servers: users.url, user: 'app', pass: wrongPassword } },
    { name: 'password in the URL', code: 'NATS_AUTH_FAILED', connection: { servers: `nats://app:${urlPassword}@${hostPort(users)}` } },
    { name: 'password of the wrong type', code: 'NATS_INVALID_OPTION', connection: { servers: users.url, user: 'app', pass: [typedPassword] } },
    { name: 'wrong token', code: 'NATS_AUTH_FAILED', connection: { servers: tokens.url, token: wrongToken } },
    { name: 'token in the URL', code: 'NATS_AUTH_FAILED', connection: { servers: `nats://${urlToken}@${hostPort(tokens)}` } },
    { name: 'token with user', code: 'NATS_INVALID_OPTION', connection: { servers: tokens.url, user: 'app', token: exclusiveToken } },
    { name: 'unknown nkey seed', code: 'NATS_AUTH_FAILED', connection: { servers: users.url, nkeySeed: unknownSeed } },
    { name: 'malformed nkey seed', code: 'NATS_INVALID_OPTION', connection: { servers: users.url, nkeySeed: malformedSeed } },
    { name: 'creds of another operator', code: 'NATS_AUTH_FAILED', connection: { servers: operator.url, credsFile: stranger.file } },
    { name: 'creds with a broken seed', code: 'NATS_INVALID_OPTION', connection: { servers: operator.url, credsFile: broken.file } },
    { name: 'missing creds file', code: 'NATS_INVALID_OPTION', connection: { servers: operator.url, credsFile: path.join(dir, 'missing.creds') } },
    { name: 'inline TLS key', code: 'NATS_INVALID_OPTION', connection: { servers: users.url, tls: { key: inlineKey } } },
  ];
  secrets = {
    password, token, userSeed: user.seed, wrongPassword, urlPassword, typedPassword, wrongToken, urlToken,
    exclusiveToken, unknownSeed, malformedSeed, inlineKey,
    strangerJwt: stranger.jwt, strangerSeed: stranger.seed, brokenJwt: broken.jwt, brokenSeed,
    // Parts long enough to be recognised if an error quoted a piece of a credential.
    strangerSeedBody: stranger.seed.slice(2, 30), malformedSeedBody: malformedSeed.slice(2, 30),
    strangerJwtSignature: stranger.jwt.split('.')[2], brokenJwtSignature: broken.jwt.split('.')[2],
  };
});

after(async () => {
  for (const s of servers) await s.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Own properties, nested (non-enumerable ones too, as `message` and `stack` are). */
function ownProperties(value, seen = new Set()) {
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  const out = {};
  for (const key of Object.getOwnPropertyNames(value)) out[key] = ownProperties(value[key], seen);
  return out;
}

function renderings(err) {
  return [
    JSON.stringify(ownProperties(err)),
    String(err),
    String(err && err.stack),
    JSON.stringify(err),
    util.inspect(err, { depth: null, showHidden: true }),
  ].join('\n');
}

function assertNoSecret(text, where) {
  for (const [name, secret] of Object.entries(secrets)) {
    assert.ok(!text.includes(secret), `${where} shows ${name}:\n${text}`);
  }
}

test('no error of a failed replication shows a password, token, nkey seed or creds content', async () => {
  const rendered = [];
  const seen = await provoke(cases, (name, err) => rendered.push([name, renderings(err)]));
  for (const c of cases) assert.ok(seen[c.name].includes(c.code), `${c.name}: expected ${c.code}, saw ${seen[c.name]}`);
  for (const [name, text] of rendered) assertNoSecret(text, `an error of case "${name}"`);
});

test('an application that logs every error prints no secret, nor does RXDB_NATS_LOG=trace', async () => {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/provoke-errors.mjs', import.meta.url))], {
    // The native log at its most verbose, async-nats' included (it prints server URLs as given).
    env: { ...process.env, PROVOKE_CASES: JSON.stringify(cases), RXDB_NATS_LOG: 'trace' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, output);
  const codes = JSON.parse(output.match(/^codes (.*)$/m)[1]);
  for (const c of cases) assert.ok(codes[c.name].includes(c.code), `${c.name}: expected ${c.code}, saw ${codes[c.name]}`);
  // The log was on: connects, refusals and the addresses tried, with credentials masked.
  assert.match(output, /INFO rxdb_nats_native::connection: connecting servers=/);
  assert.match(output, /WARN rxdb_nats_native::connection: connect failed: .* code="NATS_AUTH_FAILED"/);
  assert.match(output, /TRACE async_nats/);
  assert.match(output, /password: Some\("\*\*\*"\)/, 'the password of a URL, masked where async-nats prints it');
  assertNoSecret(output, 'the child process output');
});
