// Credentials made fresh for each test run, in a temporary folder: a CA with server and client
// certificates (openssl), nkey pairs, and an operator/account/user JWT set for operator mode.
// Nothing here is ever committed.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as jwt from '@nats-io/jwt';

/** A temporary folder removed by `cleanup()`. */
export function tempDir(base = 'rxdb-nats-secrets-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), base));
}

/** Remembers a secret, so a failing test's report (harness/test.mjs) masks it. */
function secret(value) {
  (globalThis.__rxdbNatsTestSecrets ||= new Set()).add(value);
  return value;
}

/** A random string that cannot appear anywhere by chance. */
export function randomSecret(label) {
  return secret(`${label}-${randomBytes(12).toString('hex')}`);
}

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A CA and certificates it signs, as PEM files in `dir`: `makeCa` makes a CA, `issueCert` a certificate
 * it signs, for 127.0.0.1 (IP SAN) or for a client. Each returns the paths of its PEM files.
 */
export function makeCa(dir, name) {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.pem`);
  openssl(dir, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { key, cert };
}

/** A certificate signed by `ca`: `usage` is 'serverAuth' (SAN IP:127.0.0.1) or 'clientAuth'. */
export function issueCert(dir, ca, name, usage) {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.pem`);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(ext, [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${usage}`,
    // DNS:localhost too: nats.js checks an IP address URL's certificate against 'localhost'.
    usage === 'serverAuth' ? 'subjectAltName=IP:127.0.0.1,DNS:localhost' : `subjectAltName=DNS:${name}`,
  ].join('\n'));
  openssl(dir, [
    'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', csr, '-subj', `/CN=${name}`,
  ]);
  openssl(dir, [
    'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial',
    '-out', cert, '-days', '2', '-extfile', ext,
  ]);
  return { key, cert };
}

/** A fresh user nkey pair: `{ seed, publicKey }`. */
export function userNkey() {
  const kp = jwt.createUser();
  return { seed: secret(new TextDecoder().decode(kp.getSeed())), publicKey: kp.getPublicKey() };
}

/**
 * Operator mode: an operator, a system account and an account `APP` with JetStream, all
 * generated now. `config` is the nats-server config text; `creds(name, permissions)` writes a
 * `.creds` file for a new user of APP and returns its path and the secrets in it.
 */
export async function makeOperator(dir) {
  const operator = jwt.createOperator();
  const sys = jwt.createAccount();
  const app = jwt.createAccount();
  const operatorJwt = await jwt.encodeOperator('test-operator', operator, {
    system_account: sys.getPublicKey(),
  });
  const sysJwt = await jwt.encodeAccount('SYS', sys, {}, { signer: operator });
  const appJwt = await jwt.encodeAccount('APP', app, {
    limits: {
      subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1,
      mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1,
    },
  }, { signer: operator });
  const config = [
    `operator: ${operatorJwt}`,
    `system_account: ${sys.getPublicKey()}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    `  ${sys.getPublicKey()}: ${sysJwt}`,
    `  ${app.getPublicKey()}: ${appJwt}`,
    '}',
  ].join('\n');
  let users = 0;
  // `opts.exp`: the JWT expires then (seconds since the epoch); `opts.file`: (over)write there.
  const creds = async (name, user = {}, opts = {}) => {
    const ukp = jwt.createUser();
    const userJwt = await jwt.encodeUser(name, ukp, app, user, opts.exp ? { exp: opts.exp } : {});
    const file = opts.file || path.join(dir, `${name}-${++users}.creds`);
    const text = new TextDecoder().decode(jwt.fmtCreds(userJwt, ukp));
    // Written next to it and renamed: a reader sees the old file or the new one, never half.
    fs.writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
    return { file, jwt: secret(userJwt), seed: secret(new TextDecoder().decode(ukp.getSeed())), text };
  };
  return { config, creds };
}
