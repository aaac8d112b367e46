/**
 * The headline demo, run as a newcomer runs it: `npm run demo:handoff` (scripts/demo-handoff.ts)
 * exits 0 and says that no request was lost or applied twice; Ctrl-C in the middle of a move
 * stops its agents and removes its files. Each run gets a TMPDIR of its own, so what the demo
 * leaves behind (files, agent processes naming them) is seen.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const dirs: string[] = [];

interface DemoRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  tmp: string;
}

/** Runs the npm script in a process group of its own (as a terminal runs it); `onOutput` may signal the group. */
function runDemo(args: string[], onOutput?: (out: string, pid: number) => void): Promise<DemoRun> {
  const tmp = mkdtempSync(join(tmpdir(), 'ferry-demo-test-'));
  dirs.push(tmp);
  // --no-build: test/global-setup.ts has just built dist/ for this run.
  const p = spawn('npm', ['run', '--silent', 'demo:handoff', '--', '--no-build', ...args], { cwd: ROOT, env: { ...process.env, TMPDIR: tmp }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const take = (d: Buffer) => {
    out += d.toString();
    onOutput?.(out, p.pid!);
  };
  p.stdout.on('data', take);
  p.stderr.on('data', take);
  return new Promise((resolve) => p.on('close', (code, signal) => resolve({ code, signal, out, tmp })));
}

/** Processes whose command line names `dir` (the demo's agents run with `--data <dir>/...`). */
function processesNaming(dir: string): string[] {
  if (!existsSync('/proc')) return [];
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(dir)) found.push(`${pid}: ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('npm run demo:handoff', () => {
  it('moves counter to the phone and back under load and reports 0 lost, 0 duplicated', async () => {
    // A limit no busy test machine breaks: this checks what the demo shows, not how fast (bench/ does).
    const r = await runDemo(['--downtime-limit', '10000']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/move 1: counter rpi \(rpi-4b\) -> phone \(android-phone\).*\n {2}downtime \d+ ms/);
    expect(r.out).toMatch(/move 2: counter phone \(android-phone\) -> rpi \(rpi-4b\).*\n {2}downtime \d+ ms/);
    expect(r.out).toMatch(/\b0 lost, 0 duplicated, all applied in order\b/);
    expect(r.out).toMatch(/counter reads \d+ on rpi: exactly the number of increments answered/);
    expect(readdirSync(r.tmp).filter((f) => f.startsWith('ferry-')), 'the demo left files behind').toEqual([]); // (tsx keeps its cache here)
    expect(processesNaming(r.tmp)).toEqual([]);
  }, 120_000);

  it('stops its agents and removes its files on Ctrl-C', async () => {
    let sent = false;
    const r = await runDemo([], (out, pid) => {
      if (!sent && out.includes('moving counter to phone')) {
        sent = true;
        process.kill(-pid, 'SIGINT'); // the whole group, as Ctrl-C at a terminal does
      }
    });
    expect(sent, r.out).toBe(true);
    expect(r.code === 0, r.out).toBe(false);
    expect(r.out).toContain('Ctrl-C: stopping the agents and removing their files.');
    expect(readdirSync(r.tmp).filter((f) => f.startsWith('ferry-')), 'the demo left files behind').toEqual([]); // (tsx keeps its cache here)
    expect(processesNaming(r.tmp)).toEqual([]);
  }, 120_000);
});
