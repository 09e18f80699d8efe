// A slow link on loopback: a TCP proxy that forwards to a NATS server and delays every chunk by
// `delayMs` in each direction (a round trip costs 2 × delayMs), keeping the order of each
// direction. This kernel has no netem; the bench and the tests use this instead.
import net from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Starts a proxy on 127.0.0.1 (a free port) to `target` ({ host, port }). Returns
 * `{ url, port, close() }`; `close()` ends every connection through it.
 */
export async function startDelayProxy(target, delayMs = 20) {
  const sockets = new Set();
  const forward = (from, to) => {
    // Chunks leave in arrival order: timers of equal delay fire in the order they were set.
    from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), delayMs));
    from.on('end', () => setTimeout(() => to.end(), delayMs));
    from.on('error', () => to.destroy());
    from.on('close', () => setTimeout(() => to.destroy(), delayMs));
  };
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect(target.port, target.host || '127.0.0.1');
    upstream.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    delayMs,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Starts this file as a proxy process of its own (so the timers of the measuring process cannot
 * delay the link) to the server on 127.0.0.1:`targetPort`. Resolves `{ url, stop() }`.
 */
export async function spawnDelayProxy(targetPort, delayMs) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), String(targetPort), String(delayMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const { port } = await new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (line) => resolve(JSON.parse(line)));
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => (child.exitCode !== null ? resolve() : (child.once('exit', resolve), child.kill()))),
  };
}

// Run as a process of its own (so the timers of the measured process cannot delay the link):
// `node scripts/delay-proxy.mjs <target port> <delay ms>` prints `{"port":N}` once it listens.
if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  const [port, delay] = process.argv.slice(2).map(Number);
  const proxy = await startDelayProxy({ port }, delay);
  console.log(JSON.stringify({ port: proxy.port }));
}
