// `npm run test:stress -- [files...] [--runs N] [--burners N] [--suite S] [--jobs N]`: runs test
// files N times in a row (5 by default) while N processes (2 by default) burn a CPU core each
// (`node -e 'for(;;);'`), so a test that only passes on an idle machine fails here. Without
// files: the fault-heavy ones. Each run goes through scripts/test-js.mjs (files in parallel,
// durations at the end); the summary says which runs passed. Exit status 1 unless all did.
import { spawn } from 'node:child_process';
import { runSuites } from './test-js.mjs';

const FAULT_HEAVY = [
  'cluster.test.mjs', 'server-kill.test.mjs', 'faults.test.mjs', 'outage.test.mjs', 'slow-link.test.mjs',
  'convergence.test.mjs', 'echo-races.test.mjs',
];

const argv = process.argv.slice(2);
let runs = 5;
let burners = 2;
const passOn = [];
const files = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--runs') runs = Number(argv[++i]);
  else if (argv[i] === '--burners') burners = Number(argv[++i]);
  else if (argv[i] === '--suite' || argv[i] === '--jobs') passOn.push(argv[i], argv[++i]);
  else files.push(argv[i]);
}
if (!passOn.includes('--suite')) passOn.push('--suite', 'main');
if (files.length === 0) files.push(...FAULT_HEAVY);

const burning = Array.from({ length: burners }, () => spawn(process.execPath, ['-e', 'for(;;);'], { stdio: 'ignore' }));
const stopBurning = () => burning.forEach((b) => b.kill('SIGKILL'));
process.on('exit', stopBurning);
console.log(`# stress: ${files.join(', ')}; ${runs} runs in a row beside ${burners} CPU-burning processes`);

const outcomes = [];
for (let run = 1; run <= runs; run++) {
  const started = Date.now();
  console.log(`\n# stress run ${run} of ${runs}`);
  const ok = await runSuites([...passOn, ...files]);
  outcomes.push({ run, ok, ms: Date.now() - started });
}
stopBurning();
console.log(`\n# stress summary (${burners} CPU burners beside, files: ${files.join(', ')}):`);
for (const o of outcomes) console.log(`#   run ${o.run}: ${o.ok ? 'passed' : 'FAILED'} in ${(o.ms / 1000).toFixed(0)} s`);
const passed = outcomes.filter((o) => o.ok).length;
console.log(`# ${passed} of ${runs} runs passed`);
process.exit(passed === runs ? 0 : 1);
