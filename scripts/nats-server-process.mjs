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

/** Runs of a server kept with their logs (for a failing test's report), and lines per run. */
const RUNS_KEPT = 6;
const LOG_KEPT = 400;

export class NatsServer {
  /** Every server this process made, for a failing test's report (`__test__/harness/test.mjs`). */
  static instances = new Set();

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
    /** What happened to the server, `{ at, what }` (start, stop, kill, exited by itself). */
    this.events = [];
    /** Each run of the process: `{ started, ended, how, log }`, the log cut to its last lines. */
    this.runs = [];
    NatsServer.instances.add(this);
  }

  #event(what) {
    this.events.push({ at: Date.now(), what });
    if (this.events.length > 50) this.events.shift();
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
    // `log` is this run's: "Server is ready" from an earlier run must not count.
    this.log = '';
    const proc = spawn(natsServerBin(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    running.add(this);
    this.#event(`start (pid ${proc.pid})`);
    const run = { started: Date.now(), ended: null, how: null, log: '' };
    this.runs.push(run);
    if (this.runs.length > RUNS_KEPT) this.runs.shift();
    const keep = (chunk) => {
      run.log += chunk;
      if (run.log.length > 200000) run.log = run.log.split('\n').slice(-LOG_KEPT).join('\n');
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    proc.once('exit', (code, signal) => {
      run.ended = Date.now();
      run.how ||= `exit ${signal || code}`;
      if (this.proc === proc && !this.stopping) this.#event(`exited by itself (${signal || code})`);
    });
    let onEarlyExit;
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
      onEarlyExit = (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with ${code}:\n${this.log}`));
      };
      proc.once('exit', onEarlyExit);
    });
    proc.off('exit', onEarlyExit);
    proc.once('exit', () => running.delete(this));
    return this;
  }

  async #stopWith(signal) {
    const proc = this.proc;
    if (!proc) return;
    if (proc.exitCode !== null || proc.signalCode !== null) {
      // It died by itself or by another process's hand: only forget it.
      this.proc = null;
      return;
    }
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    this.#event(signal === 'SIGKILL' ? 'kill -9' : `stop (${signal})`);
    const run = this.runs[this.runs.length - 1];
    if (run) run.how = signal === 'SIGKILL' ? 'kill -9' : signal;
    this.stopping = true;
    proc.kill(signal);
    await exited;
    this.stopping = false;
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

  /** The monitoring endpoint `/connz` (client connections), as JSON. */
  async connz() {
    const res = await fetch(`http://127.0.0.1:${this.monitorPort}/connz`);
    return res.json();
  }

  /** The monitoring endpoint `/jsz` (JetStream and its meta cluster), as JSON. */
  async jsz() {
    const res = await fetch(`http://127.0.0.1:${this.monitorPort}/jsz`);
    return res.json();
  }
}

export async function startNatsServer(options) {
  return new NatsServer(options).start();
}

/**
 * A JetStream cluster of `size` nats-server processes on 127.0.0.1: each node has its own
 * `server_name`, client, cluster and monitoring ports and store, and routes to all the others.
 * A node can be killed and started again on the same ports and store.
 */
export class NatsCluster {
  /**
   * @param {object} o
   * @param {number} [o.size=3]
   * @param {string} [o.name] the cluster name
   * @param {boolean} [o.noAdvertise] do not tell clients the other nodes' URLs: a client then
   *   knows only the servers it was given (proxies in front of the nodes, in partition tests)
   * @param {(from: number, to: number, clusterPort: number) => Promise<number>} [o.routeVia] the
   *   port node `from` dials to reach node `to`'s cluster port (a proxy per route, to cut them)
   */
  constructor({ size = 3, name = `c${process.pid}x${Date.now() % 100000}`, noAdvertise = false, routeVia } = {}) {
    this.size = size;
    this.name = name;
    this.noAdvertise = noAdvertise;
    this.routeVia = routeVia;
    this.nodes = [];
  }

  /** Every node's client URL, for `connection.servers`. */
  get urls() {
    return this.nodes.map((n) => n.url);
  }

  /** Starts the nodes; once more on fresh ports if they do not form a cluster (a port taken meanwhile). */
  async start() {
    try {
      return await this.#startOnce();
    } catch (first) {
      try {
        return await this.#startOnce();
      } catch (second) {
        second.message += `\n(first attempt: ${first.message})`;
        throw second;
      }
    }
  }

  async #startOnce() {
    const ports = [];
    for (let i = 0; i < this.size; i++) {
      ports.push({ client: await freePort(), cluster: await freePort(), monitor: await freePort() });
    }
    // routes[i][j]: how node i reaches node j.
    const routes = [];
    for (let i = 0; i < this.size; i++) {
      routes.push([]);
      for (let j = 0; j < this.size; j++) {
        const port = this.routeVia && i !== j ? await this.routeVia(i, j, ports[j].cluster) : ports[j].cluster;
        routes[i].push(`nats-route://127.0.0.1:${port}`);
      }
    }
    this.nodes = ports.map((p, i) => {
      // JetStream comes from the config's jetstream block (with -js -sd the store_dir is set twice).
      const node = new NatsServer({ jetstream: false, monitor: true });
      node.port = p.client;
      node.monitorPort = p.monitor;
      node.clusterPort = p.cluster;
      node.serverName = `${this.name}-n${i + 1}`;
      node.config = [
        `server_name: ${node.serverName}`,
        `jetstream { store_dir: ${JSON.stringify(node.storeDir)} }`,
        `cluster {`,
        `  name: ${this.name}`,
        `  listen: 127.0.0.1:${p.cluster}`,
        `  routes: [${routes[i].filter((_, j) => j !== i).join(', ')}]`,
        ...(this.noAdvertise ? ['  no_advertise: true'] : []),
        // Through proxies, a node must not learn another's real cluster port from gossip (it would
        // route around a cut): each advertises a port nothing listens on; the explicit routes suffice.
        ...(this.routeVia ? ['  advertise: "127.0.0.1:1"'] : []),
        `}`,
      ].join('\n');
      return node;
    });
    try {
      await Promise.all(this.nodes.map((n) => n.start()));
      await this.waitForMetaLeader();
    } catch (e) {
      await this.destroy();
      throw e;
    }
    return this;
  }

  /** Waits until every running node knows the JetStream meta leader (elected after start). */
  async waitForMetaLeader(timeoutMs = 60000) {
    const deadline = Date.now() + timeoutMs;
    let last;
    while (Date.now() < deadline) {
      const running = this.nodes.filter((n) => n.proc);
      const leaders = await Promise.all(running.map((n) => n.jsz().then((j) => j.meta_cluster?.leader, () => undefined)));
      if (leaders.length > 0 && leaders.every((l) => l && l === leaders[0])) return leaders[0];
      last = leaders;
      await new Promise((r) => setTimeout(r, 200));
    }
    const logs = this.nodes.map((n) => `--- ${n.serverName}:\n${n.log.split('\n').slice(-15).join('\n')}`).join('\n');
    throw new Error(`no JetStream meta leader after ${timeoutMs} ms (nodes report ${JSON.stringify(last)})\n${logs}`);
  }

  /** The node named `serverName`. */
  node(serverName) {
    return this.nodes.find((n) => n.serverName === serverName);
  }

  /**
   * The node leading stream `streamName` now (`$JS.API.STREAM.INFO` → `cluster.leader`), asked
   * through any running node; retried while an election is under way.
   */
  async streamLeader(streamName, timeoutMs = 30000) {
    const { connect } = await import('nats');
    const deadline = Date.now() + timeoutMs;
    let lastError;
    while (Date.now() < deadline) {
      const servers = this.nodes.filter((n) => n.proc).map((n) => n.url);
      let nc;
      try {
        nc = await connect({ servers, maxReconnectAttempts: 0, timeout: 2000 });
        const jsm = await nc.jetstreamManager({ timeout: 2000 });
        const info = await jsm.streams.info(streamName);
        const leader = info.cluster?.leader && this.node(info.cluster.leader);
        if (leader && leader.proc) return leader;
        lastError = new Error(`stream info names leader ${info.cluster?.leader}`);
      } catch (e) {
        lastError = e;
      } finally {
        await nc?.close().catch(() => {});
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`no leader for stream ${streamName} after ${timeoutMs} ms: ${lastError?.message}`);
  }

  /** The running node that holds the client connection named `connectionName` (`/connz`). */
  async connectedNode(connectionName) {
    for (const node of this.nodes.filter((n) => n.proc)) {
      const connz = await node.connz().catch(() => ({ connections: [] }));
      if ((connz.connections || []).some((c) => c.name === connectionName)) return node;
    }
    return undefined;
  }

  /** Stops every node and removes the stores. */
  async destroy() {
    await Promise.all(this.nodes.map((n) => n.destroy()));
  }
}
