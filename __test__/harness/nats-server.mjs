// Tests start real nats-server processes through the same code as the demo and the bench.
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export * from '../../scripts/nats-server-process.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { natsServerBin } = createRequire(import.meta.url)('../../scripts/nats-server.cjs');

/** The version of the nats-server the tests start ("2.15.1"), from its own `--version` line. */
export function natsServerVersion() {
  return execFileSync(natsServerBin(), ['--version'], { encoding: 'utf8' }).trim().replace(/^nats-server: v/, '');
}

/**
 * node:test options that skip a test unless the tests' nats-server is at least `major.minor`
 * (`{ below: true }`: unless it is older), saying why.
 */
export function onServer(major, minor, { below = false } = {}) {
  const version = natsServerVersion();
  const [have, haveMinor] = version.split('.').map(Number);
  const atLeast = have > major || (have === major && haveMinor >= minor);
  if (atLeast !== below) return { skip: false };
  return { skip: `nats-server ${version} is ${below ? 'not older than' : 'older than'} ${major}.${minor}` };
}

/**
 * A separate process that subscribes to `subject` on `url` and sends SIGKILL to `pid` when the
 * `count`th message arrives. `ready` resolves once it listens, `done` once it killed.
 */
export function killOnMessage(url, subject, count, pid) {
  const script = `
    import { connect } from 'nats';
    const nc = await connect({ servers: ${JSON.stringify(url)} });
    let seen = 0;
    nc.subscribe(${JSON.stringify(subject)}, { callback: () => {
      if (++seen === ${count}) { process.kill(${pid}, 'SIGKILL'); console.log('killed'); process.exit(0); }
    } });
    await nc.flush();
    console.log('ready');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const saw = (word) => new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes(word)) resolve();
    });
    // 'close', not 'exit': the process can exit before its last output reached us.
    child.once('close', (code) => (out.includes(word) ? resolve() : reject(new Error(`the killer exited with ${code} before ${word}`))));
  });
  const ready = saw('ready');
  const done = saw('killed');
  done.catch(() => {});
  ready.catch(() => {});
  return { ready, done, child };
}

