import { execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
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

/** Runs the built `ferry` command as a user would (no extra Node flags). */
function ferry(args: string[], cwd?: string): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(nodeCommand(), [FERRY_MAIN, ...args], { cwd, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const json = async (args: string[]) => {
  const r = await ferry([...args, '--json']);
  return { ...r, value: JSON.parse(r.stdout) as unknown };
};

describe('the ferry command, end to end against a real agent', () => {
  let agent: AgentProcess;
  let data: string;
  const d = () => ['--data', data];
  beforeAll(async () => {
    data = temp.dir('cli');
    agent = startAgentProcess(data, ['--port', '0', '--samples']);
    await agent.ready;
  });
  afterAll(async () => {
    await agent.kill('SIGTERM');
    temp.cleanup();
  });

  it('calls a handler and prints its result; --json prints JSON', async () => {
    const r = await ferry(['call', 'counter', 'increment', ...d()]);
    expect(r).toMatchObject({ code: 0, stdout: 'count: 1\n' });
    const j = await json(['call', 'counter', 'increment', '{"by":5}', ...d()]);
    expect(j.value).toEqual({ count: 6 });
  });

  it('lists apps, status, services, leases and profiles', async () => {
    const apps = (await json(['apps', ...d()])).value as { apps: Array<{ name: string }>; instances: Array<{ instance: string; state: string }> };
    expect(apps.apps.map((a) => a.name).sort()).toEqual(['counter', 'notes', 'sensor-log']);
    expect(apps.instances.every((i) => i.state === 'running')).toBe(true);
    expect((await ferry(['apps', ...d()])).stdout).toMatch(/instance\s+app\s+appVersion\s+state/);
    expect((await json(['status', ...d()])).value).toMatchObject({ profile: 'rpi-4b', embeddedBroker: true, running: 3 });
    const services = (await json(['services', ...d()])).value as Array<{ type: string }>;
    expect(services.map((s) => s.type)).toContain('sensor');
    expect((await json(['leases', ...d()])).value).toMatchObject([{ instance: 'sensor-log', type: 'sensor' }]);
    const profiles = (await json(['profiles'])).value as Array<{ name: string }>;
    expect(profiles.map((p) => p.name)).toEqual(expect.arrayContaining(['rpi-4b', 'android-phone', 'palm-pda']));
  });

  it('shows each running instance\'s object size limit, heap.maxObjectBytes, in apps and apps --json', async () => {
    const apps = (await json(['apps', ...d()])).value as { instances: Array<{ instance: string; heap?: { budgetBytes: number; maxObjectBytes: number } }> };
    const counter = apps.instances.find((i) => i.instance === 'counter')!;
    // rpi-4b: a 64 MiB budget, so the default min(64 KiB, budget / 4) is 64 KiB.
    expect(counter.heap).toMatchObject({ budgetBytes: 64 * 1024 * 1024, maxObjectBytes: 64 * 1024 });
    expect((await ferry(['apps', ...d()])).stdout).toMatch(/^ *counter .*"maxObjectBytes":65536/m);
  });

  it('refuses an app with an async handler at install, in one line naming the handler, and installs nothing', async () => {
    const r = await ferry(['install', join(import.meta.dirname, 'fixtures', 'async-handler.mjs'), ...d()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ferry: app\.handlers\.increment must be a synchronous function, got an async function.* \[APP_BAD_DEFINITION\]\n$/);
    const apps = (await json(['apps', ...d()])).value as { apps: Array<{ name: string }> };
    expect(apps.apps.map((a) => a.name)).not.toContain('async-counter');
  });

  it('suspends, resumes, browses checkpoints, restores one and removes one', async () => {
    await ferry(['call', 'notes', 'add', '{"text":"first"}', ...d()]);
    await ferry(['call', 'notes', 'add', '{"text":"second"}', ...d()]);
    expect((await json(['suspend', 'notes', ...d()])).value).toMatchObject({ state: 'suspended' });
    const off = await json(['call', 'notes', 'outline', ...d()]);
    expect(off.code).toBe(1);
    expect(off.value).toMatchObject({ error: { code: 'APP_NOT_RUNNING' } });
    expect((await json(['resume', 'notes', ...d()])).value).toMatchObject({ state: 'running' });
    const cps = (await json(['checkpoints', 'notes', ...d()])).value as Array<{ version: number; current: boolean; bytes: number; createdAt: string }>;
    expect(cps.length).toBeGreaterThan(2);
    expect(cps[0]!.createdAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    // Back to the checkpoint holding one page.
    let back: number | undefined;
    for (const c of cps) {
      await ferry(['restore', 'notes', '--version', String(c.version), ...d()]);
      const o = (await json(['call', 'notes', 'outline', ...d()])).value as { pages: unknown[] };
      if (o.pages.length === 1) {
        back = c.version;
        break;
      }
    }
    expect(back).toBeDefined();
    const now = (await json(['checkpoints', 'notes', ...d()])).value as Array<{ version: number; current: boolean; reason?: string }>;
    // Each version says why it was taken: calls committed, the suspend, and the restore (of which version).
    const reasons = now.map((c) => c.reason);
    expect(reasons).toContain('group');
    expect(reasons).toContain('suspend');
    expect(now.find((c) => c.current)!.reason).toBe(`restore of ${back}`);
    const old = now.find((c) => !c.current)!.version;
    expect((await json(['checkpoint', 'rm', 'notes', String(old), ...d()])).value).toEqual({ instance: 'notes', version: old });
    expect(((await json(['checkpoints', 'notes', ...d()])).value as Array<{ version: number }>).some((c) => c.version === old)).toBe(false);
  });

  it('installs, runs, stops and removes an app', async () => {
    const r = await json(['install', join(import.meta.dirname, 'fixtures', 'ledger.mjs'), ...d()]);
    expect(r.value).toEqual({ name: 'ledger', version: '1.0.0', replaced: false, oldCodeRunning: [] });
    expect((await json(['run', 'ledger', '--instance', 'book', ...d()])).value).toMatchObject({ instance: 'book', state: 'running' });
    expect((await json(['call', 'book', 'apply', '{"n":3}', ...d()])).value).toEqual({ n: 3, length: 1 });
    expect((await json(['stop', 'book', ...d()])).value).toMatchObject({ state: 'stopped' });
    expect((await json(['remove', 'ledger', ...d()])).value).toEqual({ removed: ['book'] });
    expect((await json(['call', 'book', 'list', ...d()])).value).toMatchObject({ error: { code: 'APP_UNKNOWN' } });
  });

  it('installing a new version while an instance runs says the instance keeps its code, and upgrade moves it', async () => {
    const dir = temp.dir('module');
    const v = (n: number) => {
      const f = join(dir, `tally-${n}.mjs`);
      writeFileSync(f, `export default { name: 'tally', version: '${n}', handlers: { which() { return ${n}; } } };`);
      return f;
    };
    await json(['install', v(1), ...d()]);
    await json(['run', 'tally', ...d()]);
    try {
      const r = await ferry(['install', v(2), ...d()]);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('still running the code installed before: tally; move each with ferry upgrade <instance> (or it moves at its next resume or agent start)\n');
      expect((await json(['call', 'tally', 'which', ...d()])).value).toBe(1);
      expect((await json(['upgrade', 'tally', ...d()])).value).toMatchObject({ instance: 'tally', from: '1', to: '2', upgraded: true });
      expect((await json(['call', 'tally', 'which', ...d()])).value).toBe(2);
    } finally {
      await json(['remove', 'tally', ...d()]);
    }
  });

  it('a call to an app installed but not run says to run it (not that it is unknown)', async () => {
    await json(['install', join(import.meta.dirname, 'fixtures', 'ledger.mjs'), ...d()]);
    try {
      const r = await ferry(['call', 'ledger', 'list', ...d()]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe('ferry: app ledger is installed but no instance of it runs; start one with ferry run ledger [APP_NOT_RUNNING]\n');
    } finally {
      await json(['remove', 'ledger', ...d()]);
    }
  });

  it.each([
    [['frobnicate'], 'CLI_USAGE', 'command'],
    [['call', 'counter'], 'CLI_USAGE', 'handler'],
    [['call', 'counter', 'increment', '{by:2}'], 'CLI_USAGE', 'json'],
    [['call', 'counter', 'increment', '1', 'extra'], 'CLI_USAGE', 'arguments'],
    [['resume', 'counter', '--version', 'abc'], 'CLI_USAGE', '--version'],
    [['restore', 'counter'], 'CLI_USAGE', '--version'],
    [['checkpoint', 'drop', 'counter', '1'], 'CLI_USAGE', 'subcommand'],
    [['apps', '--colour', 'blue'], 'CLI_USAGE', '--colour'],
    [['run', 'nope'], 'APP_UNKNOWN', 'app'],
    [['call', 'counter', 'nope'], 'APP_NO_HANDLER', 'body.handler'],
    [['install', 'missing.mjs'], 'APP_BAD_MODULE', 'path'],
    [['install', join(import.meta.dirname, 'fixtures', 'async-handler.mjs')], 'APP_BAD_DEFINITION', 'app.handlers.increment'],
    [['restore', 'counter', '--version', '999999'], 'STORE_UNKNOWN_VERSION', 'version'],
  ])('%j fails with one line: %s naming %s', async (args, code, field) => {
    const r = await ferry([...args, ...d()]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^ferry: .+ \\[${code}\\]\\n$`));
    const j = await json([...args, ...d()]);
    expect(j.value).toMatchObject({ error: { code, field } });
  });

  it('a second agent on the same data directory is refused', async () => {
    const r = await ferry(['start', '--port', '0', ...d()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[AGENT_RUNNING\]/);
  });
});

describe('the ferry command without an agent', () => {
  it('-h and help list the commands; --version and -V print the package version; <command> --help and help <command> give its usage', async () => {
    for (const args of [['-h'], ['--help'], ['help']]) {
      const r = await ferry(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^usage: ferry <command>/);
      expect(r.stdout).toContain('pair <peer>');
    }
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const args of [['--version'], ['-V']]) expect((await ferry(args)).stdout).toBe(`ferry ${pkg.version}\n`);
    for (const args of [['restore', '--help'], ['restore', '-h'], ['help', 'restore']]) {
      const r = await ferry(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^usage: ferry restore <instance> --version <n>\n/);
      expect(r.stdout).toContain('--version, --data <dir>');
    }
    const bad = await ferry(['help', 'nosuch']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('ferry: unknown command "nosuch" (ferry help lists them) [CLI_USAGE]\n');
  });

  it('says no agent runs there, in one line', async () => {
    const r = await ferry(['status', '--data', temp.dir('none')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ferry: no agent runs on .+ \[AGENT_UNREACHABLE\]\n$/);
  });

  it('reads ferry.config.json and names a bad field', async () => {
    const dir = temp.dir('cfg');
    writeFileSync(join(dir, 'ferry.config.json'), JSON.stringify({ profile: 'rpi-4b', colour: 'blue' }));
    const r = await ferry(['status'], dir);
    expect(r.stderr).toMatch(/ferry\.config\.json: colour is not a known option.*\[CONFIG_INVALID\]/);
    writeFileSync(join(dir, 'ferry.config.json'), JSON.stringify({ data: 'here' }));
    const r2 = await ferry(['status'], dir);
    expect(r2.stderr).toContain(join(dir, 'here'));
  });

  it('$FERRY_CONFIG names the config file when --config does not', async () => {
    const dir = temp.dir('cfg-env');
    const cfg = join(dir, 'elsewhere.json');
    writeFileSync(cfg, JSON.stringify({ data: 'from-env' }));
    const r = await new Promise<Ran>((resolve) =>
      execFile(nodeCommand(), [FERRY_MAIN, 'status'], { env: { ...process.env, FERRY_CONFIG: cfg } }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(join(dir, 'from-env'));
  });

  it('keepVersions in ferry.config.json sets how many checkpoint versions an instance keeps; 0 is refused naming it', async () => {
    const dir = temp.dir('cfg-keep');
    const cfg = join(dir, 'ferry.config.json');
    writeFileSync(cfg, JSON.stringify({ keepVersions: 0 }));
    const bad = await ferry(['start', '--port', '0', '--config', cfg, '--data', join(dir, 'data')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/ferry\.config\.json: keepVersions must be an integer in 1\.\.1000, got 0 \[CONFIG_INVALID\]/);
    writeFileSync(cfg, JSON.stringify({ keepVersions: 2 }));
    const a = startAgentProcess(join(dir, 'data'), ['--port', '0', '--config', cfg]);
    try {
      await a.ready;
      await a.control('install', { path: join(process.cwd(), 'apps', 'counter.mjs') });
      await a.control('run', { app: 'counter' });
      for (let i = 0; i < 5; i++) await a.control('call', { instance: 'counter', handler: 'increment', message: null });
      const kept = (await a.control('checkpoints', { instance: 'counter' })) as unknown[];
      expect(kept).toHaveLength(2);
    } finally {
      await a.kill('SIGTERM');
    }
  });

  it('exactly-once settings in ferry.config.json: a wrong type or an out-of-range value is refused naming the field', async () => {
    const dir = temp.dir('cfg-replay');
    writeFileSync(join(dir, 'ferry.config.json'), JSON.stringify({ replayHorizonMs: '1h' }));
    const r = await ferry(['status'], dir);
    expect(r.stderr).toMatch(/ferry\.config\.json: replayHorizonMs must be .*\[CONFIG_INVALID\]/);
    writeFileSync(join(dir, 'ferry.config.json'), JSON.stringify({ rememberReplies: 64, replayHorizonMs: 1000 }));
    const r2 = await ferry(['start', '--port', '0', '--data', join(dir, 'data')], dir);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/^ferry: ferry\.config\.json: replayHorizonMs must be an integer in 60000\.\.2592000000, got 1000 \[CONFIG_INVALID\]\n$/);
  });

  it('start with a bad profile fails in one line before doing anything', async () => {
    const dir = temp.dir('bad');
    const r = await ferry(['start', '--profile', 'toaster', '--port', '0', '--data', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ferry: profile "toaster" is not built in .+ \[PROFILE_UNKNOWN\]\n$/);
  });

  it('the start banner of an agent with no app running suggests installing and running one, not a call', async () => {
    const dir = temp.dir('banner');
    const child = spawn(nodeCommand(), [FERRY_MAIN, 'start', '--port', '0', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const deadline = Date.now() + 20_000;
    while (!err.includes('stop with Ctrl-C') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const exit = new Promise((r) => child.on('exit', r));
    child.kill('SIGTERM');
    await exit;
    expect(err).toContain('apps running: none');
    expect(err).toContain('ferry install <app.mjs>');
    expect(err).not.toContain('ferry call');
  });

  it('start re-runs itself with the flags app modules need, and SIGTERM checkpoints and stops it', async () => {
    const dir = temp.dir('plain');
    const child = spawn(nodeCommand(), [FERRY_MAIN, 'start', '--port', '0', '--samples', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const deadline = Date.now() + 20_000;
    while (!err.includes('ferry call counter increment') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(err).toContain('apps running: counter, notes, sensor-log');
    expect(err).toContain('ferry call counter increment');
    expect((await ferry(['call', 'counter', 'increment', '--data', dir])).stdout).toBe('count: 1\n');
    const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    child.kill('SIGTERM');
    expect(await exit).toBe(0);
    // Stopped cleanly: the next start resumes the apps where they were.
    const again = startAgentProcess(dir, ['--port', '0']);
    try {
      await again.ready;
      expect((await ferry(['call', 'counter', 'get', '--data', dir])).stdout).toBe('count: 1\n');
    } finally {
      await again.kill('SIGTERM');
    }
  });
});
