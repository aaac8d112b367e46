// The tree's dependencies for arm64: npm installs the arm64 builds of the optional packages
// (cbor-extract's, rolldown's, esbuild's...) when told the target's os and cpu, with install
// scripts off (they would build or fetch for the host); better-sqlite3, which ships no arm64
// binary in the registry, is then cross-compiled with node-gyp against the arm64 Node's headers.
import { existsSync, openSync, readSync, closeSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { run, which } from './run.mjs';

const AARCH64 = 183; // ELF e_machine of arm64

export function npmCiArm64(tree) {
  run('npm', ['ci', '--ignore-scripts', '--os=linux', '--cpu=arm64', '--libc=glibc', '--no-audit', '--no-fund'], { cwd: tree, inherit: true });
}

/** npm's own node-gyp (every npm bundles one): from the npm running this script, else the npm on PATH. */
function nodeGyp() {
  const npmCli = process.env.npm_execpath && existsSync(process.env.npm_execpath) ? process.env.npm_execpath : which('npm') && realpathSync(which('npm'));
  for (let d = npmCli && dirname(npmCli); d && d !== dirname(d); d = dirname(d)) {
    const gyp = join(d, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(gyp)) return gyp;
  }
  throw new Error(`node-gyp not found beside npm (${npmCli ?? 'npm is not on PATH'})`);
}

/** Whether `file` is an arm64 ELF (a host build that slipped through would fail to load only under emulation). */
export function isArm64Elf(file) {
  const b = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, b, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  return b.toString('latin1', 1, 4) === 'ELF' && b.readUInt16LE(18) === AARCH64;
}

/** Cross-compiles better-sqlite3 in the tree for arm64; returns the addon's path. */
export function buildBetterSqlite3(tree, nodeDir) {
  const pkg = join(tree, 'node_modules', 'better-sqlite3');
  const env = {
    ...process.env,
    CC: 'aarch64-linux-gnu-gcc',
    CXX: 'aarch64-linux-gnu-g++',
    AR: 'aarch64-linux-gnu-ar',
    LINK: 'aarch64-linux-gnu-g++',
  };
  run(process.execPath, [nodeGyp(), 'rebuild', '--release', '--arch=arm64', `--nodedir=${nodeDir}`, '--jobs=max'], { cwd: pkg, env });
  const addon = join(pkg, 'build', 'Release', 'better_sqlite3.node');
  if (!isArm64Elf(addon)) throw new Error(`${addon} is not an arm64 binary: the cross compiler was not used`);
  return addon;
}
