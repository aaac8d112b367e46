// The checkout's files, copied into the ARM64 tree: what git tracks plus the new files it would
// add (untracked, not ignored), each as it is in the working tree, so a change not yet committed
// is what runs. Only files whose content changed are written; files gone from the checkout are
// removed from the tree. node_modules/ and dist/ are the tree's own (arm64 packages, a fresh build).
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { run, sha256 } from './run.mjs';

/** The checkout's files, relative paths, sorted (tracked ones deleted in the working tree are left out). */
export function checkoutFiles(root) {
  const list = (args) => run('git', ['-C', root, 'ls-files', '-z', ...args]).split('\0').filter(Boolean);
  const files = new Set([...list([]), ...list(['--others', '--exclude-standard'])]);
  return [...files].filter((f) => existsSync(join(root, f)) && statSync(join(root, f)).isFile()).sort();
}

/**
 * Copies `files` from `root` into `dest`; returns the checkout's content hash (paths, modes and
 * bytes: the key of the dist/ build) and how many files were written and removed.
 */
export function syncFiles(root, dest, files, previous = []) {
  const parts = [];
  let written = 0;
  for (const f of files) {
    const from = join(root, f);
    const bytes = readFileSync(from);
    const mode = statSync(from).mode & 0o777;
    parts.push(f, String(mode), bytes);
    const to = join(dest, f);
    if (existsSync(to) && (statSync(to).mode & 0o777) === mode && readFileSync(to).equals(bytes)) continue;
    mkdirSync(dirname(to), { recursive: true });
    writeFileSync(to, bytes);
    chmodSync(to, mode);
    written++;
  }
  const now = new Set(files);
  const gone = previous.filter((f) => !now.has(f));
  for (const f of gone) rmSync(join(dest, f), { force: true });
  return { hash: sha256(...parts), written, removed: gone.length };
}
