// A real npm registry on 127.0.0.1: verdaccio (a devDependency, pinned) with its own temporary
// config and storage, started and stopped by the test. Our packages (rxdb-nats-native and
// rxdb-nats-native-*) exist only in it, published by the test; every other package (rxdb, rxjs and
// their dependencies) is proxied from the registry npm itself uses, as with a company mirror.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { freePort } from './nats-server.mjs';

const require = createRequire(import.meta.url);

/** A running verdaccio: `url`, `npmrc` (a userconfig with a publish token for it), `stop()`. */
export class LocalRegistry {
  constructor(dir, port, child) {
    this.dir = dir;
    this.port = port;
    this.child = child;
    this.url = `http://127.0.0.1:${port}/`;
    this.npmrc = path.join(dir, 'npmrc');
    this.output = '';
  }

  /** Stops verdaccio (SIGTERM, then SIGKILL) and removes its storage. */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** GET `path` from the registry as JSON; resolves `{ status, body }`. */
  get(pathname) {
    return request(`${this.url}${pathname}`);
  }

  /** `npm <args>` against this registry, with its userconfig; returns stdout, throws with stderr. */
  npm(args, { cwd, env = process.env } = {}) {
    try {
      return execFileSync('npm', [...args, '--registry', this.url, '--userconfig', this.npmrc], {
        cwd,
        env,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 5 * 60 * 1000,
      });
    } catch (err) {
      throw new Error(`npm ${args.join(' ')} failed in ${cwd}:\n${err.stderr || err.message}\nverdaccio:\n${this.output.slice(-3000)}`);
    }
  }
}

/**
 * One HTTP request on a connection of its own (`agent: false`): verdaccio closes idle keep-alive
 * connections, and a request sent on one it has just closed fails (fetch's pool does that).
 */
function request(url, { method = 'GET', body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let parsed = null;
        try {
          parsed = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

/** The registry npm uses here, which verdaccio proxies for every package that is not ours. */
function upstreamRegistry() {
  return execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', cwd: os.tmpdir() }).trim();
}

/** Starts verdaccio on a free 127.0.0.1 port and registers a user that may publish our packages. */
export async function startRegistry() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rxdb-nats-registry-'));
  const port = await freePort();
  const ours = { access: '$all', publish: '$authenticated', unpublish: '$authenticated' };
  // JSON is YAML: no YAML writer needed.
  const config = {
    storage: path.join(dir, 'storage'),
    plugins: path.join(dir, 'plugins'),
    web: { enable: false },
    auth: { htpasswd: { file: path.join(dir, 'htpasswd'), max_users: 1 } },
    uplinks: { upstream: { url: upstreamRegistry(), timeout: '60s', maxage: '30m' } },
    packages: {
      'rxdb-nats-native': ours,
      'rxdb-nats-native-*': ours,
      '**': { access: '$all', publish: '$authenticated', proxy: 'upstream' },
    },
    log: { type: 'stdout', format: 'pretty', level: 'warn' },
  };
  fs.mkdirSync(config.plugins);
  const configFile = path.join(dir, 'config.yaml');
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));
  const bin = path.join(path.dirname(require.resolve('verdaccio/package.json')), 'bin', 'verdaccio');
  const child = spawn(process.execPath, [bin, '--config', configFile, '--listen', `127.0.0.1:${port}`], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const registry = new LocalRegistry(dir, port, child);
  child.stdout.on('data', (d) => (registry.output += d));
  child.stderr.on('data', (d) => (registry.output += d));
  try {
    const deadline = Date.now() + 60000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`verdaccio exited with ${child.exitCode}:\n${registry.output}`);
      try {
        if ((await registry.get('-/ping')).status === 200) break;
      } catch {}
      if (Date.now() > deadline) throw new Error(`verdaccio did not answer on ${registry.url} within 60 s:\n${registry.output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const user = { name: 'publisher', password: `pw-${process.pid}-${Date.now()}` };
    const res = await request(`${registry.url}-/user/org.couchdb.user:${user.name}`, {
      method: 'PUT',
      body: { _id: `org.couchdb.user:${user.name}`, ...user, type: 'user', roles: [] },
    });
    const token = res.body && res.body.token;
    if (res.status !== 201 || !token) throw new Error(`verdaccio did not register the publishing user (${res.status})`);
    fs.writeFileSync(registry.npmrc, `//127.0.0.1:${port}/:_authToken=${token}\n`);
  } catch (err) {
    await registry.stop();
    throw err;
  }
  return registry;
}
