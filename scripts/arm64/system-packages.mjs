// The Debian packages an ARM64 tree needs on an x86-64 host: the user-mode emulator, the arm64 C
// and C++ libraries it loads the arm64 Node against, and the cross compiler for better-sqlite3.
// Installed with apt-get when running as root; otherwise the script fails naming them.
import { existsSync } from 'node:fs';
import { run, say, which } from './run.mjs';

/** The library root of Debian's arm64 cross packages: qemu's -L, where the arm64 loader and libc are. */
export const SYSROOT = '/usr/aarch64-linux-gnu';
export const QEMU = 'qemu-aarch64-static';

const NEEDED = [
  { pkg: 'qemu-user-static', has: () => which(QEMU) !== undefined },
  { pkg: 'libc6-arm64-cross', has: () => existsSync(`${SYSROOT}/lib/ld-linux-aarch64.so.1`) },
  { pkg: 'libstdc++6-arm64-cross', has: () => existsSync(`${SYSROOT}/lib/libstdc++.so.6`) },
  { pkg: 'g++-aarch64-linux-gnu', has: () => which('aarch64-linux-gnu-g++') !== undefined },
  // node-gyp's own needs (a native build of Ferry needs them too).
  { pkg: 'make', has: () => which('make') !== undefined },
  { pkg: 'python3', has: () => which('python3') !== undefined },
];

/** Makes sure the packages are there; returns a note for the step's line. */
export function ensureSystemPackages() {
  const missing = NEEDED.filter((n) => !n.has()).map((n) => n.pkg);
  if (missing.length === 0) return `present (${NEEDED.map((n) => n.pkg).join(', ')})`;
  if (process.getuid?.() !== 0) {
    throw new Error(`an ARM64 tree needs Debian packages that are missing: ${missing.join(' ')}. Install them with: sudo apt-get install -y ${missing.join(' ')}`);
  }
  say(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-q'], { env, inherit: true });
  run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env, inherit: true });
  const still = NEEDED.filter((n) => !n.has()).map((n) => n.pkg);
  if (still.length > 0) throw new Error(`apt-get installed ${missing.join(' ')} but these are still missing: ${still.join(' ')}`);
  return `installed ${missing.join(', ')}`;
}
