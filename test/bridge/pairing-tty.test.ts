/**
 * Pairing as an owner does it, at a terminal: `ferry pair` prints the code and asks yes/no.
 * The command runs under `script` (util-linux) so its stdin is a real pseudo-terminal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FERRY_MAIN, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { freePort } from '../helpers/brokers.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const haveScript = existsSync('/usr/bin/script');

interface Terminal {
  proc: ChildProcess;
  output: () => string;
  /** Resolves once the output matches. */
  seen(re: RegExp): Promise<void>;
  type(text: string): void;
  exit: Promise<number>;
}

/** Runs `ferry <args>` on a pseudo-terminal. */
function terminal(args: string[]): Terminal {
  const cmd = [nodeCommand(), FERRY_MAIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const proc = spawn('script', ['-qefc', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number>((res) => proc.on('exit', (code) => res(code ?? 1)));
  return {
    proc,
    output: () => out,
    async seen(re) {
      const end = Date.now() + 30_000;
      while (!re.test(out)) {
        if (Date.now() > end) throw new Error(`no ${re} in: ${out}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    type: (text) => proc.stdin!.write(text),
    exit,
  };
}

const peersOf = (dataDir: string) => Object.keys((JSON.parse(readFileSync(join(dataDir, 'bridge', 'peers.json'), 'utf8')) as { peers: object }).peers);

describe.runIf(haveScript)('pairing at a terminal', () => {
  let a: AgentProcess;
  let b: AgentProcess;
  const dirs: string[] = [];

  beforeAll(async () => {
    const port = await freePort();
    const da = mkdtempSync(join(tmpdir(), 'ferry-tty-a-'));
    const db = mkdtempSync(join(tmpdir(), 'ferry-tty-b-'));
    dirs.push(da, db);
    a = startAgentProcess(da, ['--port', String(port), '--device-id', 'pi-tty']);
    await a.ready;
    b = startAgentProcess(db, ['--broker', `mqtt://127.0.0.1:${port}`, '--device-id', 'phone-tty', '--profile', 'android-phone']);
    await b.ready;
  });

  afterAll(async () => {
    await b?.kill();
    await a?.kill();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** Starts both sides and waits until both ask; returns the two terminals and the codes they show. */
  async function bothAsking(): Promise<[Terminal, Terminal, string, string]> {
    const ta = terminal(['pair', 'phone-tty', '--data', a.dataDir]);
    await ta.seen(/ferry pair --accept pi-tty/);
    const tb = terminal(['pair', '--accept', 'pi-tty', '--data', b.dataDir]);
    await Promise.all([ta.seen(/\[y\/N\]/), tb.seen(/\[y\/N\]/)]);
    const code = (t: Terminal) => /code: (\d{3} \d{3})/.exec(t.output())![1]!;
    return [ta, tb, code(ta), code(tb)];
  }

  it('"no" on one side refuses on both; nothing is stored', async () => {
    const [ta, tb, ca, cb] = await bothAsking();
    expect(ca).toBe(cb);
    tb.type('n\r');
    expect(await tb.exit).toBe(1);
    expect(tb.output()).toMatch(/refused here.*\[PAIR_REFUSED\]/);
    ta.type('y\r');
    expect(await ta.exit).toBe(1);
    expect(ta.output()).toMatch(/\[PAIR_REFUSED\]/);
    expect(peersOf(a.dataDir)).toEqual([]);
    expect(peersOf(b.dataDir)).toEqual([]);
  });

  it('Ctrl-C at the question cancels on both sides', async () => {
    const [ta, tb] = await bothAsking();
    ta.type('\x03');
    expect(await ta.exit).toBe(1);
    expect(ta.output()).toMatch(/\[PAIR_CANCELLED\]/);
    tb.type('y\r');
    expect(await tb.exit).toBe(1);
    expect(tb.output()).toMatch(/\[PAIR_CANCELLED\]/);
    expect(peersOf(a.dataDir)).toEqual([]);
  });

  it('"yes" on both pairs them', async () => {
    const [ta, tb, ca, cb] = await bothAsking();
    expect(ca).toBe(cb);
    ta.type('y\r');
    tb.type('yes\r');
    expect(await ta.exit).toBe(0);
    expect(await tb.exit).toBe(0);
    expect(ta.output()).toMatch(/deviceId: phone-tty/);
    expect(peersOf(a.dataDir)).toEqual(['phone-tty']);
    expect(peersOf(b.dataDir)).toEqual(['pi-tty']);
  });
});
