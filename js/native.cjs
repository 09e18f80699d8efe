'use strict';
/**
 * Loads the native addon through the loader `napi build` generates (native.js). When no binary
 * fits, that loader's error names neither the package that carries it nor what to do; this one
 * does, and keeps the loader's error as `cause`.
 */
const { readFileSync } = require('fs');
const { version } = require('../package.json');

/** The platform package for this machine, as `napi create-npm-dirs` names them. */
function platformPackage() {
  const { platform, arch } = process;
  let abi = '';
  if (platform === 'linux') abi = isMusl() ? '-musl' : '-gnu';
  else if (platform === 'win32') abi = '-msvc';
  return `rxdb-nats-native-${platform}-${arch}${abi}`;
}

function isMusl() {
  try {
    return readFileSync('/usr/bin/ldd', 'utf8').includes('musl');
  } catch {
    const report = process.report && process.report.getReport && process.report.getReport();
    return !!report && !(report.header && report.header.glibcVersionRuntime);
  }
}

function loadNative() {
  try {
    return require('../native.js');
  } catch (cause) {
    const name = platformPackage();
    const wanted = `${name}@${version}`;
    const published = Object.keys(require('../package.json').optionalDependencies || {}).includes(name);
    let message;
    if (installed(name)) {
      message = `the native addon in ${wanted} could not be loaded (${cause.cause ? cause.cause.message : cause.message}): ` +
        'reinstall it, on the machine and Node.js that run it';
    } else if (published) {
      message = `the native addon for ${process.platform}-${process.arch} (package ${wanted}) is not installed. npm ` +
        'installs it as an optional dependency: install again without --omit=optional / --no-optional, and not with ' +
        `a lock file or node_modules made on another platform, or add it: npm install ${wanted}`;
    } else {
      message = `there is no prebuilt native addon for ${process.platform}-${process.arch}: build it from source with ` +
        'a Rust toolchain (npm run build in a clone of rxdb-nats-native)';
    }
    const error = new Error(`rxdb-nats-native: ${message}`);
    error.code = 'NATS_NATIVE_MISSING';
    error.cause = cause;
    throw error;
  }
}

function installed(name) {
  try {
    require.resolve(`${name}/package.json`);
    return true;
  } catch {
    return false;
  }
}

module.exports = loadNative();
