// A loopback TCP proxy in front of one nats-server port (a client's link, or a cluster route),
// that fault tests steer: `blackhole()` stops forwarding both ways while both sockets stay open
// (what a dropped path or a firewall rule looks like: no RST, no FIN, only silence), `heal()`
// delivers what was held, in order, and forwards again, as TCP does once a partition ends.
// `holdAfter()` lets the client's bytes through up to the nth occurrence of a pattern (the nth
// message on a subject) and holds the rest: a fault then lands at a point in the protocol the
// test chose, however fast or slow the machine is.
import net from 'node:net';

export class LinkProxy {
  /** @param {number} targetPort the nats-server port behind the proxy (on 127.0.0.1) */
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.links = new Set();
    this.holding = false;
    this.rule = null;
    this.server = net.createServer((client) => this.#accept(client));
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }

  get url() {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Connections through the proxy now. */
  get connections() {
    return this.links.size;
  }

  #accept(client) {
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const link = { client, upstream, held: { up: [], down: [] }, scanned: '' };
    this.links.add(link);
    const close = () => {
      this.links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.on('data', (chunk) => this.#forward(link, 'up', chunk));
    upstream.on('data', (chunk) => this.#forward(link, 'down', chunk));
  }

  #forward(link, way, chunk) {
    if (way === 'up' && this.rule && !this.holding) chunk = this.#applyRule(link, chunk);
    if (this.holding) {
      if (chunk.length) link.held[way].push(chunk);
      return;
    }
    (way === 'up' ? link.upstream : link.client).write(chunk);
  }

  /** Forwards the part of `chunk` before the rule's nth match; holds from there on. */
  #applyRule(link, chunk) {
    const rule = this.rule;
    const text = link.scanned + chunk.toString('latin1');
    let from = 0;
    for (;;) {
      const at = text.indexOf(rule.pattern, from);
      if (at < 0) break;
      from = at + rule.pattern.length;
      if (++rule.seen > rule.count) {
        // The match starts `cut` bytes into this chunk (it may begin in the scanned tail).
        const cut = Math.max(0, at - link.scanned.length);
        link.upstream.write(chunk.subarray(0, cut));
        this.holding = true;
        this.rule = null;
        rule.reached();
        return chunk.subarray(cut);
      }
    }
    // A match may span chunks: keep the tail that could start one.
    link.scanned = text.slice(-(rule.pattern.length - 1));
    return chunk;
  }

  /**
   * From now on, lets the clients' bytes through up to and including the `count`th occurrence
   * of `pattern` (e.g. `PUB $O.files.C.`), then holds everything both ways, as `blackhole()`.
   * Resolves once it holds.
   */
  holdAfter(pattern, count) {
    return new Promise((reached) => {
      this.rule = { pattern, count, seen: 0, reached };
    });
  }

  /** Stops forwarding, both ways, on every connection; sockets stay open and bytes are held. */
  blackhole() {
    this.holding = true;
  }

  /** Delivers what was held, in order, and forwards again. */
  heal() {
    this.holding = false;
    for (const link of this.links) {
      for (const chunk of link.held.up.splice(0)) link.upstream.write(chunk);
      for (const chunk of link.held.down.splice(0)) link.client.write(chunk);
    }
  }

  /** Closes every connection through the proxy (what was held is lost) and forwards again. */
  reset() {
    for (const link of [...this.links]) {
      link.client.destroy();
      link.upstream.destroy();
    }
    this.links.clear();
    this.holding = false;
  }

  async close() {
    this.reset();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

export async function startLinkProxy(targetPort) {
  return new LinkProxy(targetPort).start();
}
