// Checks a Linux .node file by its ELF headers, without loading it (a foreign binary cannot run
// here): the machine (x86-64 or AArch64) and the C library it links, read with `readelf`. glibc:
// NEEDED libc.so.6 and GLIBC_x.y symbol versions. musl: NEEDED libc.musl-<arch>.so.1 (a build on
// Alpine) or libc.so (a build through zig: musl's loader takes any libc.* name as itself), and no
// glibc library or symbol version. `node scripts/elf.mjs <file>...` checks files named
// `<binary>.linux-<arch>-<gnu|musl>.node` and prints one line each; it exits 1 on a wrong one.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** What readelf prints as Machine for each npm `cpu`, and the musl loader's name for it. */
const ARCHES = {
  x64: { machine: 'Advanced Micro Devices X86-64', musl: 'libc.musl-x86_64.so.1' },
  arm64: { machine: 'AArch64', musl: 'libc.musl-aarch64.so.1' },
};

function readelf(args, file) {
  try {
    return execFileSync('readelf', [...args, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if (err.code === 'ENOENT') throw new Error('readelf is not on PATH: install binutils to check the Linux binaries');
    throw new Error(`readelf ${args.join(' ')} ${file} failed: ${err.stderr || err.message}`);
  }
}

/**
 * Reads `file`'s ELF headers and throws unless it is a 64-bit shared object for `platform`
 * (`linux-x64-gnu`, `linux-arm64-musl`, ...) linking that C library and not the other. Returns
 * `{ file, platform, machine, needed, glibc }` where `glibc` is the newest GLIBC_x.y symbol
 * version it needs (null for musl).
 */
export function checkElf(file, platform) {
  const match = /^linux-(x64|arm64)-(gnu|musl)$/.exec(platform);
  if (!match) throw new Error(`${platform} is not a Linux platform package (linux-<x64|arm64>-<gnu|musl>)`);
  const [, cpu, libc] = match;
  const header = readelf(['-h'], file);
  const field = (name) => (new RegExp(`^\\s*${name}:\\s*(.+?)\\s*$`, 'm').exec(header) || [])[1];
  const machine = field('Machine');
  const needed = [...readelf(['-d'], file).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const problems = [];
  if (field('Class') !== 'ELF64') problems.push(`class ${field('Class')}, not ELF64`);
  if (!/^DYN\b/.test(field('Type') || '')) problems.push(`type ${field('Type')}, not a shared object (DYN)`);
  if (machine !== ARCHES[cpu].machine) problems.push(`machine ${machine}, not ${ARCHES[cpu].machine}`);
  const glibcLibs = needed.filter((n) => /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|ld-linux-.*)$/.test(n));
  const glibcVersions = [...readelf(['-V'], file).matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [+m[1], +m[2], +(m[3] || 0)]);
  if (libc === 'musl') {
    if (!needed.some((n) => n === ARCHES[cpu].musl || n === 'libc.so')) {
      problems.push(`does not link musl (${ARCHES[cpu].musl} or libc.so; NEEDED: ${needed.join(', ') || 'none'})`);
    }
    if (glibcLibs.length) problems.push(`links glibc's ${glibcLibs.join(', ')}`);
    if (glibcVersions.length) problems.push('needs GLIBC_ symbol versions');
  } else {
    if (!needed.includes('libc.so.6')) problems.push(`does not link glibc's libc.so.6 (NEEDED: ${needed.join(', ') || 'none'})`);
    if (needed.some((n) => n.startsWith('libc.musl-') || n.startsWith('ld-musl-'))) problems.push('links musl');
    if (!glibcVersions.length) problems.push('needs no GLIBC_ symbol version');
  }
  if (problems.length) {
    throw new Error(`${file} is not a ${platform} binary: ${problems.join('; ')}`);
  }
  let newestGlibc = null;
  if (glibcVersions.length) {
    const [last] = glibcVersions.sort((a, b) => b[0] - a[0] || b[1] - a[1] || b[2] - a[2]);
    newestGlibc = last.filter((n, i) => i < 2 || n).join('.');
  }
  return { file, platform, machine, needed, glibc: newestGlibc };
}

/** One line for a checked binary, e.g. `x.node: linux-arm64-musl, AArch64, NEEDED libc.musl-aarch64.so.1`. */
export function describeElf({ file, platform, machine, needed, glibc }) {
  return `${path.basename(file)}: ${platform} ok (${machine}; NEEDED ${needed.join(', ')}${glibc ? `; newest symbol GLIBC_${glibc}` : ''})`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  let failed = false;
  for (const file of process.argv.slice(2)) {
    const platform = (/\.(linux-[a-z0-9]+-[a-z]+)\.node$/.exec(file) || [])[1];
    try {
      if (!platform) throw new Error(`${file}: the name does not say its platform (<binary>.linux-<arch>-<libc>.node)`);
      console.log(describeElf(checkElf(file, platform)));
    } catch (err) {
      console.error(`FAIL ${err.message}`);
      failed = true;
    }
  }
  if (failed) process.exit(1);
}
