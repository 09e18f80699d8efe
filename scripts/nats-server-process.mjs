// Starts real nats-server processes (tests, demo, bench): 127.0.0.1 only, a free port, a temporary store.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { natsServerBin } = require('./nats-server.cjs');

const running = new Set();
process.on('exit', () => {
  for (const server of running) server.proc?.kill('SIGKILL');
});

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export class NatsServer {
  /**
   * @param {object} o
   * @param {boolean} [o.jetstream=true] start with -js
   * @param {string} [o.config] extra nats-server config text
   * @param {boolean} [o.monitor=false] open the HTTP monitoring port (for /connz)
   */
  constructor({ jetstream = true, config = '', monitor = false } = {}) {
    this.jetstream = jetstream;
    this.config = config;
    this.monitor = monitor;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rxdb-nats-test-'));
    this.storeDir = path.join(this.dir, 'store');
    this.log = '';
    this.proc = null;
  }

  get url() {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    if (this.monitor && !this.monitorPort) this.monitorPort = await freePort();
    const confFile = path.join(this.dir, 'server.conf');
    fs.writeFileSync(confFile, this.config);
    const args = ['-a', '127.0.0.1', '-p', String(this.port), '-c', confFile];
    if (this.jetstream) args.push('-js', '-sd', this.storeDir);
    if (this.monitor) args.push('-m', String(this.monitorPort));
    const proc = spawn(natsServerBin(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    running.add(this);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start:\n${this.log}`)), 15000);
      const onData = (chunk) => {
        this.log += chunk;
        if (this.log.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with ${code}:\n${this.log}`));
      });
    });
    proc.removeAllListeners('exit');
    proc.once('exit', () => running.delete(this));
    return this;
  }

  async #stopWith(signal) {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    await exited;
    this.proc = null;
    this.log = '';
  }

  /** Graceful stop. */
  stop() {
    return this.#stopWith('SIGTERM');
  }

  /** kill -9: no goodbye to clients, no flush. */
  kill() {
    return this.#stopWith('SIGKILL');
  }

  /** Stops and removes the store. */
  async destroy() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Number of client connections, from the monitoring endpoint. */
  async connectionCount() {
    const res = await fetch(`http://127.0.0.1:${this.monitorPort}/connz`);
    return (await res.json()).num_connections;
  }
}

export async function startNatsServer(options) {
  return new NatsServer(options).start();
}
