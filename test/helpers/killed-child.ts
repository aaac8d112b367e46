import { spawn } from 'node:child_process';

/**
 * Runs a crash-test child (`node script ...args`) and SIGKILLs it after `killAfterMs`; resolves
 * with what it printed. A child that exits by itself is a failure of the test, not a crash.
 */
export function runUntilKilled(script: string, args: string[], killAfterMs: number): Promise<{ out: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`child exited by itself (code ${code}): ${stderr}`));
      else resolve({ out, stderr });
    });
  });
}
