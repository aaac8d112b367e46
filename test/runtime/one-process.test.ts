/**
 * The `ferry` command's file gives Node the agent's flags on its `#!` line, so `ferry start` run
 * as installed (npx, npm install -g, a systemd unit) is one process: no wrapper re-running Node
 * (which cost a second Node's memory and a second recipient of every signal).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { controlRequest } from '../../agent/cli/control-client.js';
import { AGENT_NODE_FLAGS } from '../../agent/runtime/sandbox.js';
import { FERRY_MAIN } from '../helpers/agent-process.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('ferry start as installed', () => {
  it("main.js's #! line carries every agent flag, in the sources and the build, and the build is executable", () => {
    for (const file of [join(process.cwd(), 'agent', 'cli', 'main.ts'), FERRY_MAIN]) {
      const first = readFileSync(file, 'utf8').split('\n', 1)[0]!;
      expect(first.startsWith('#!/usr/bin/env -S node ')).toBe(true);
      for (const f of AGENT_NODE_FLAGS) expect(first.split(' ')).toContain(f);
    }
    expect(() => accessSync(FERRY_MAIN, constants.X_OK)).not.toThrow();
  });

  it('run through its #! line, the agent is the process started: one process, and SIGTERM stops it cleanly', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ferry-one-'));
    dirs.push(dataDir);
    const child = spawn(FERRY_MAIN, ['start', '--port', '0', '--data', dataDir, '--samples'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      let status: { pid: number } | undefined;
      for (let i = 0; i < 600 && !status; i++) {
        status = (await controlRequest(dataDir, 'status', {}, 2000).catch(() => undefined)) as { pid: number } | undefined;
        if (!status) await new Promise((r) => setTimeout(r, 50));
      }
      expect(status?.pid).toBe(child.pid);
      expect(await controlRequest(dataDir, 'call', { instance: 'counter', handler: 'increment' })).toEqual({ count: 1 });
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
      expect(out).toContain('"event":"agent.stopped"');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
