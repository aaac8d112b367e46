import { spawn } from 'node:child_process';

/** How long a child may take to print its ready line before it is killed anyway, ms. */
const READY_LIMIT_MS = 30_000;

/**
 * Runs a crash-test child (`node script ...args`) and SIGKILLs it after `killAfterMs`; resolves
 * with what it printed. A child that exits by itself is a failure of the test, not a crash.
 *
 * `fromReady`: count `killAfterMs` from the child's `READY` line, not from the spawn. Starting
 * Node takes ~100 ms on an idle machine and several times that on a loaded one (CI runs suites
 * side by side), so a kill timed from the spawn lands after less and less work; timed from READY,
 * each run does about the same work wherever it runs. Kills meant to land during start-up and
 * recovery keep timing from the spawn.
 */
export function runUntilKilled(script: string, args: string[], killAfterMs: number, fromReady = false): Promise<{ out: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined = setTimeout(() => child.kill('SIGKILL'), fromReady ? READY_LIMIT_MS : killAfterMs);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (fromReady && timer && /^READY/m.test(out)) {
        clearTimeout(timer);
        timer = undefined;
        timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        fromReady = false;
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
