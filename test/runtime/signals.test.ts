/**
 * Stopping `ferry start` the ways a terminal and a supervisor do. `ferry start` run by a plain
 * `node` re-runs itself with the agent's flags (a wrapper and the agent), so a signal to the
 * process group reaches both, and the wrapper passes it on again: any number of SIGINT/SIGTERM
 * must give one clean, checkpointed stop, and no agent may outlive a wrapper killed outright.
 * (systemd's default KillMode=control-group sends SIGTERM to every process of the unit the same way.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { controlRequest } from '../../agent/cli/control-client.js';
import { FERRY_MAIN, startAgentProcess } from '../helpers/agent-process.js';
import { caughtAsync } from '../helpers/ferry-error.js';
import { alive, until } from '../helpers/process-group.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const dirs: string[] = [];
const procs: ChildProcess[] = [];
const pids: number[] = [];

afterEach(() => {
  for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Started {
  wrapper: ChildProcess;
  dataDir: string;
  /** The agent's own pid (the wrapper's child). */
  agentPid: number;
  output: () => string;
  exit: Promise<number | null>;
}

/** `node main.js start` in a process group of its own, like a terminal's foreground job. */
async function start(): Promise<Started> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ferry-signals-'));
  dirs.push(dataDir);
  const wrapper = spawn(nodeCommand(), [FERRY_MAIN, 'start', '--port', '0', '--data', dataDir], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  procs.push(wrapper);
  let out = '';
  wrapper.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  wrapper.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((r) => wrapper.on('exit', (code) => r(code)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const s = (await controlRequest(dataDir, 'status', {}, 2000)) as { pid: number };
      pids.push(s.pid);
      expect(s.pid).not.toBe(wrapper.pid); // really two processes
      await controlRequest(dataDir, 'install', { path: join(process.cwd(), 'apps', 'counter.mjs') });
      await controlRequest(dataDir, 'run', { app: 'counter' });
      await controlRequest(dataDir, 'call', { instance: 'counter', handler: 'increment', message: null });
      return { wrapper, dataDir, agentPid: s.pid, output: () => out, exit };
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const stoppedLines = (out: string) => out.split('\n').filter((l) => l.includes('"event":"agent.stopped"')).length;

/** The next start on the same data directory is not refused and finds the counter where it was. */
async function resumesCleanly(dataDir: string): Promise<void> {
  const again = startAgentProcess(dataDir, ['--port', '0']);
  try {
    await again.ready;
    expect(await again.control('call', { instance: 'counter', handler: 'get', message: null })).toEqual({ count: 1 });
  } finally {
    await again.kill('SIGTERM');
  }
}

describe('stopping ferry start', () => {
  it.each([
    ['SIGTERM to the process group, three times (a supervisor, then its impatience)', 'SIGTERM', 3],
    ['SIGINT to the process group, twice (Ctrl-C, Ctrl-C)', 'SIGINT', 2],
  ] as const)('%s: one clean, checkpointed stop, exit 0', async (_what, signal, times) => {
    const s = await start();
    for (let i = 0; i < times; i++) process.kill(-s.wrapper.pid!, signal);
    expect(await s.exit).toBe(0);
    await until(() => !alive(s.agentPid), 'the agent to exit');
    expect(stoppedLines(s.output())).toBe(1);
    expect((await caughtAsync(() => controlRequest(s.dataDir, 'status', {}, 2000))).code).toBe('AGENT_UNREACHABLE');
    await resumesCleanly(s.dataDir);
  });

  it('the wrapper killed outright (SIGKILL): the agent stops cleanly too, and the next start is not refused', async () => {
    const s = await start();
    s.wrapper.kill('SIGKILL');
    await s.exit;
    await until(() => !alive(s.agentPid), 'the orphaned agent to stop');
    await until(() => stoppedLines(s.output()) === 1, 'the agent.stopped line');
    expect(s.output()).toContain('the ferry start process that ran this agent is gone');
    await resumesCleanly(s.dataDir);
  });
});
