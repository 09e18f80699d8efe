// Tests start real nats-server processes through the same code as the demo and the bench.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export * from '../../scripts/nats-server-process.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

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
    child.once('exit', (code) => (out.includes(word) ? resolve() : reject(new Error(`the killer exited with ${code} before ${word}`))));
  });
  const ready = saw('ready');
  const done = saw('killed');
  done.catch(() => {});
  ready.catch(() => {});
  return { ready, done, child };
}

