// Small shared pieces of the ARM64 tree script: running a command (its output kept for the error
// if it fails, so a cached run stays quiet), timing a step, hashing, the stamp file.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Prints a line of the script's progress (stderr: stdout stays free for a caller's data). */
export function say(text) {
  process.stderr.write(`[arm64-tree] ${text}\n`);
}

/**
 * Runs `cmd args` and returns its stdout; throws with the command and the end of its output if it
 * fails. `inherit` shows its output as it runs (long steps: npm ci, the compiler).
 */
export function run(cmd, args, { cwd, env, inherit = false } = {}) {
  const r = spawnSync(cmd, args, { cwd, env: env ?? process.env, encoding: 'utf8', stdio: inherit ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}${tail ? `:\n${tail}` : ''}`);
  }
  return r.stdout ?? '';
}

/** Whether a command is on PATH; its absolute path if so. */
export function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Times a step and prints what it did: `fn` returns a short note ('cached: ...' for a skipped step). */
export async function step(name, fn, timings) {
  const t0 = performance.now();
  const note = await fn();
  const s = (performance.now() - t0) / 1000;
  timings.push({ step: name, seconds: Math.round(s * 10) / 10, note: note ?? '' });
  say(`${name}: ${note ?? 'done'} (${s.toFixed(1)} s)`);
}

export function sha256(...parts) {
  const h = createHash('sha256');
  for (const p of parts) h.update(typeof p === 'string' ? p : Buffer.from(p)).update('\0');
  return h.digest('hex');
}

/**
 * What the last run built, so an unchanged checkout skips the slow steps: the Node version, the
 * key of the dependencies (lockfile, package.json, Node version), the checkout's content hash
 * when dist/ was built, and the list of files copied (to remove the ones that went).
 */
export class Stamp {
  constructor(dir) {
    this.file = join(dir, 'stamp.json');
    this.data = existsSync(this.file) ? JSON.parse(readFileSync(this.file, 'utf8')) : {};
  }
  get(key) {
    return this.data[key];
  }
  /** Written at once (renamed into place): a run stopped half-way leaves the steps before it stamped. */
  set(key, value) {
    this.data[key] = value;
    writeFileSync(`${this.file}.tmp`, JSON.stringify(this.data, null, 1));
    renameSync(`${this.file}.tmp`, this.file);
  }
}
