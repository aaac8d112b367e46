/**
 * `ferry logs` against a real agent process: an instance's lines only, `--follow` seeing a line
 * logged after it started (and ending with status 0 on Ctrl-C), the notice for lines the ring
 * dropped before a follower read them, and a follower told when the agent goes away.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FERRY_MAIN, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { Temp } from '../heap/graph.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const temp = new Temp();

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function ferry(args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(nodeCommand(), [FERRY_MAIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** `ferry logs ... --follow` as its own process, its output collected. */
function follow(args: string[]): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null>; until(re: RegExp, what: string): Promise<void> } {
  const child = spawn(nodeCommand(), [FERRY_MAIN, 'logs', ...args, '--follow'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return {
    child,
    out: () => out,
    err: () => err,
    exit,
    async until(re, what) {
      const end = Date.now() + 20_000;
      while (!re.test(out)) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`ferry logs --follow never printed ${what}; stdout: ${out.slice(-2000)} stderr: ${err}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

/** The instance column of a human log line. */
const instanceOf = (line: string) => line.split(' ').filter(Boolean)[2];

describe('ferry logs, against a real agent', () => {
  let agent: AgentProcess;
  let data: string;
  const d = () => ['--data', data];
  beforeAll(async () => {
    data = temp.dir('logs');
    agent = startAgentProcess(data, ['--port', '0']);
    await agent.ready;
    await agent.control('install', { path: join(import.meta.dirname, 'fixtures', 'chatty.mjs') });
    await agent.control('run', { app: 'chatty', instance: 'chat-a' });
    await agent.control('run', { app: 'chatty', instance: 'chat-b' });
  });
  afterAll(async () => {
    await agent.kill('SIGTERM');
    temp.cleanup();
  });

  it("shows one instance's lines only: its ctx.log lines and the agent's events about it", async () => {
    await agent.control('call', { instance: 'chat-a', handler: 'say', message: { text: 'hello from a' } });
    await agent.control('call', { instance: 'chat-b', handler: 'say', message: { text: 'hello from b', level: 'warn' } });
    const r = await ferry(['logs', 'chat-a', ...d()]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.every((l) => instanceOf(l) === 'chat-a')).toBe(true);
    expect(r.stdout).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info  chat-a app\.running app=chatty checkpoint=\d+$/m);
    expect(r.stdout).toMatch(/^\S+Z info  chat-a app\.log message="hello from a" data=\{"n":1\}$/m);
    expect(r.stdout).not.toContain('hello from b');

    const all = await ferry(['logs', ...d()]);
    expect(all.stdout).toContain('hello from b');
    expect(all.stdout).toMatch(/^\S+ info  - app\.installed app=chatty /m);

    // --json: one JSON object per line, with its sequence number.
    const j = await ferry(['logs', 'chat-b', '--lines', '1', '--json', ...d()]);
    const parsed = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed).toEqual([{ seq: expect.any(Number), ts: expect.stringMatching(/Z$/), level: 'warn', event: 'app.log', instance: 'chat-b', message: 'hello from b', data: { n: 1 } }]);
  });

  it('a handler timeout is logged about its instance', async () => {
    await agent.control('call', { instance: 'chat-a', handler: 'loops' }).catch(() => undefined);
    const r = await ferry(['logs', 'chat-a', '--lines', '3', ...d()]);
    expect(r.stdout).toMatch(/ warn  chat-a handler\.timeout app=chat-a handler=loops error=/);
  });

  it('an unknown instance is the error every command gives for one: APP_UNKNOWN', async () => {
    const logs = await ferry(['logs', 'nope', '--json', ...d()]);
    const checkpoints = await ferry(['checkpoints', 'nope', '--json', ...d()]);
    expect(logs.code).toBe(1);
    expect(JSON.parse(logs.stdout)).toEqual(JSON.parse(checkpoints.stdout));
    expect(JSON.parse(logs.stdout)).toMatchObject({ error: { code: 'APP_UNKNOWN', field: 'app' } });
    const human = await ferry(['logs', 'nope', ...d()]);
    expect(human.stderr).toMatch(/^ferry: no app or instance "nope" here .*\[APP_UNKNOWN\]\n$/);
  });

  it('--help and bad flags', async () => {
    const h = await ferry(['logs', '--help']);
    expect(h.stdout).toMatch(/^usage: ferry logs \[instance\] \[--follow\] \[--lines <n>\]\n/);
    expect(h.stdout).toContain('--follow, --lines, --data <dir>');
    expect((await ferry(['help'])).stdout).toContain('logs [instance] [--follow]');
    const bad = await ferry(['logs', 'chat-a', '--lines', 'many', ...d()]);
    expect(bad.stderr).toMatch(/--lines must be an integer .*\[CLI_USAGE\]/);
  });

  it('--follow prints a line logged after it started; Ctrl-C ends it with status 0', async () => {
    const f = follow(['chat-a', '--lines', '1', ...d()]);
    try {
      await f.until(/chat-a/, 'the newest line');
      await agent.control('call', { instance: 'chat-b', handler: 'say', message: { text: 'not for a' } });
      await agent.control('call', { instance: 'chat-a', handler: 'say', message: { text: 'later line' } });
      await f.until(/message="later line"/, 'the later line');
      f.child.kill('SIGINT');
      expect(await f.exit).toBe(0);
      expect(f.out()).not.toContain('not for a');
      expect(f.err()).toBe('');
    } finally {
      f.child.kill('SIGKILL');
    }
  });

  it('--follow says how many lines the ring dropped before it read them', async () => {
    const f = follow(['chat-b', '--lines', '1', ...d()]);
    try {
      await f.until(/chat-b/, 'the newest line');
      // 100 lines of about 15 KB in one call: 1.5 MB, more than the ring's 1 MiB. They are all
      // logged before the follower's waiting read resumes, so the oldest are gone by then.
      await agent.control('call', { instance: 'chat-b', handler: 'burst', message: { n: 100, bytes: 15_000 } });
      await f.until(/message="line 99"/, 'the last line of the burst');
      const m = /^… (\d+) lines skipped/m.exec(f.out());
      expect(m, f.out().slice(0, 300)).not.toBeNull();
      const shown = f.out().match(/message="line \d+"/g)!.length;
      // Every line of the burst was either shown or counted as skipped (the count is over every
      // instance; here only chat-b logs).
      expect(Number(m![1]) + shown).toBe(100);
      f.child.kill('SIGINT');
      expect(await f.exit).toBe(0);
    } finally {
      f.child.kill('SIGKILL');
    }
  });

  it('--follow ends with an error when the agent goes away', async () => {
    const f = follow(['--lines', '1', ...d()]);
    try {
      await f.until(/\n/, 'a line');
      await agent.kill('SIGTERM');
      expect(await f.exit).toBe(1);
      expect(f.err()).toMatch(/^ferry: the agent on .+ went away \(it stopped or was killed\); no more lines to follow \[AGENT_UNREACHABLE\]\n$/);
    } finally {
      f.child.kill('SIGKILL');
    }
  });
});
