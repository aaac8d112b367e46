import { spawn, type ChildProcess } from 'node:child_process';
import { nodeCommand } from '../../agent/runtime/node-command.js';
import { slowed } from './scale.js';

/** How long a child may take to print its ready line before it is killed anyway, ms. */
const READY_LIMIT_MS = 30_000;

/** The line of a crash child's output its kill is timed from. */
export type KillFrom =
  /** Printed once its imports are done, before it opens anything: the kill lands in its open and recovery (or just after). */
  | 'LOADED'
  /** Printed once it is open and in its loop: the kill lands mid-loop. */
  | 'READY';

/**
 * Runs a crash-test child (`node script ...args`) and SIGKILLs it `killAfterMs` after it printed
 * its `from` line; resolves with what it printed. A child that exits by itself is a failure of
 * the test, not a crash.
 *
 * Never timed from the spawn: starting Node takes ~100 ms on an idle machine, several times that
 * on a loaded one (CI runs suites side by side) and ~1 s on an emulated ARM64 Node, so a kill
 * timed from the spawn lands after less and less work, down to none. Timed from a line the
 * child prints, each run does about the same work wherever it runs. A child that prints
 * nothing is killed after READY_LIMIT_MS anyway (its output then lacks the line: tests check).
 * `killAfterMs` is work time on a native Node, × FERRY_TEST_SLOWDOWN (scale.ts) on a slower one.
 */
export function runUntilKilled(script: string, args: string[], killAfterMs: number, from: KillFrom): Promise<{ out: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(nodeCommand(), [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const marker = new RegExp(`^${from}`, 'm');
    let out = '';
    let stderr = '';
    let timed = false;
    let timer = setTimeout(() => child.kill('SIGKILL'), READY_LIMIT_MS);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!timed && marker.test(out)) {
        timed = true;
        clearTimeout(timer);
        timer = setTimeout(() => child.kill('SIGKILL'), slowed(killAfterMs));
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`child exited by itself (code ${code}): ${stderr}`));
      else resolve({ out, stderr });
    });
  });
}

/**
 * A crash-test child started ahead of its turn: Node's start and the child's imports (a few
 * hundred ms on a loaded machine, more than a run itself) overlap the runs and checks before
 * it. The script prints `WARM` once loaded and waits for a line on stdin before it touches
 * anything (it exits if stdin closes first: a test that failed leaves no child waiting).
 * `run` gives it that line and SIGKILLs it `killAfterMs` later, or that long after its `READY`
 * line (`fromReady`); a kill not timed from READY lands in its open and recovery, since its
 * start-up is behind it (so neither timing depends on how long Node takes to start).
 */
export class WarmChild {
  private readonly child: ChildProcess;
  private out = '';
  private stderr = '';
  private readonly warm: Promise<void>;
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private onOut: () => void = () => undefined;

  constructor(script: string, args: string[]) {
    this.child = spawn(nodeCommand(), [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    this.warm = new Promise((resolve, reject) => {
      this.child.on('error', reject);
      this.exited.then(({ code, signal }) => reject(new Error(`child exited before it was loaded (code ${code}, signal ${signal}): ${this.stderr}`)));
      this.onOut = () => {
        if (/^WARM$/m.test(this.out)) resolve();
      };
    });
    this.warm.catch(() => undefined); // reported by run
    this.child.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString();
      this.onOut();
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.child.stdin!.on('error', () => undefined); // a child that died: its exit is reported
  }

  /** Starts the loaded child and kills it as `runUntilKilled` does; resolves with what it printed. */
  async run(killAfterMs: number, fromReady = false): Promise<{ out: string; stderr: string }> {
    await this.warm;
    const ready = () => /^READY/m.test(this.out);
    let timer: NodeJS.Timeout | undefined;
    const kill = () => this.child.kill('SIGKILL');
    this.onOut = () => {
      if (fromReady && ready()) {
        fromReady = false;
        clearTimeout(timer);
        timer = setTimeout(kill, slowed(killAfterMs));
      }
    };
    timer = setTimeout(kill, fromReady ? READY_LIMIT_MS : slowed(killAfterMs));
    this.child.stdin!.write('GO\n');
    const { code, signal } = await this.exited;
    clearTimeout(timer);
    if (signal !== 'SIGKILL') throw new Error(`child exited by itself (code ${code}): ${this.stderr}`);
    return { out: this.out, stderr: this.stderr };
  }

  /** Ends a child that was never run. */
  async discard(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}
