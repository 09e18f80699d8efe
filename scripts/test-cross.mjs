// `npm run test:cross [-- <dir>]`: what `npm test` leaves out because it takes ~20 minutes here:
// builds the four Linux binaries through zig (`npm run pack:local -- --cross <dir>`, default
// dist-cross/), then runs the registry test with those real tarballs (RXDB_NATS_TARBALLS=<dir>): each Linux target
// installed by name with npm's --os/--cpu/--libc gets its own, ELF-checked binary, and the
// linux-x64-gnu one (glibc 2.17 build) replicates on this machine.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.resolve(process.argv[2] || path.join(root, 'dist-cross'));

const run = (args, env = process.env) => {
  const result = spawnSync(process.execPath, args, { cwd: root, env, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
};
run([path.join(root, 'scripts', 'pack-local.mjs'), '--cross', outDir]);
run(['--test', '--test-concurrency=1', path.join(root, '__test__', 'registry.test.mjs')], { ...process.env, RXDB_NATS_TARBALLS: outDir });
