/**
 * `ferry service install|uninstall` and the agent run the way its systemd unit runs it. The unit
 * is written into a temporary --root, parsed, and checked by `systemd-analyze verify` (it needs no
 * systemd as PID 1; scripts/ensure-system-packages.mjs installs it). Where systemd is not running,
 * the agent is started from the unit's own ExecStart in a process group of its own (the stand-in
 * for the unit's cgroup) and stopped and killed the ways systemd does (test/helpers/process-group.ts).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { profileForModel, UNIT_MARK } from '../../agent/cli/service-command.js';
import { AGENT_NODE_FLAGS } from '../../agent/runtime/sandbox.js';
import { FERRY_MAIN, runFerry, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { groupPids, signalGroup, stopLikeSystemd, until } from '../helpers/process-group.js';
import { Temp } from '../heap/graph.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const temp = new Temp();
afterAll(() => temp.cleanup());

/** A unit file as systemd reads it: `[Section]` headers and `Key=value` lines; comments and blank lines skipped. */
function parseUnit(text: string): Map<string, string> {
  const keys = new Map<string, string>();
  let section = '';
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    expect(eq, `a Key=value line: ${line}`).toBeGreaterThan(0);
    const key = `${section}.${line.slice(0, eq)}`;
    expect(keys.has(key), `${key} set once`).toBe(false);
    keys.set(key, line.slice(eq + 1));
  }
  return keys;
}

/** ExecStart's words: double-quoted ones unquoted, systemd's `%%` and `$$` undone. */
function execArgv(execStart: string): string[] {
  const words = execStart.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? [];
  return words.map((w) => (w.startsWith('"') ? w.slice(1, -1).replace(/\\(.)/g, '$1') : w).replace(/%%/g, '%').replace(/\$\$/g, '$'));
}

/** `120s`, `2min`, `90` (seconds) as ms. */
function seconds(v: string): number {
  const m = /^(\d+)(s|min)?$/.exec(v);
  if (!m) throw new Error(`a time span systemd takes: ${v}`);
  return Number(m[1]) * (m[2] === 'min' ? 60_000 : 1000);
}

const json = async (args: string[]) => {
  const r = await runFerry([...args, '--json']);
  return { ...r, value: JSON.parse(r.stdout) as Record<string, unknown> };
};

const UNIT = 'etc/systemd/system/ferry.service';
const CONFIG = 'etc/ferry/ferry.config.json';

describe('ferry service install', () => {
  it('writes the unit and a starter config into --root: ExecStart runs this ferry; systemd-analyze verify accepts it', async () => {
    const root = temp.dir('root');
    const r = await runFerry(['service', 'install', '--root', root]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`wrote ${join(root, UNIT)}`);
    expect(r.stdout).toContain('useradd --root');
    expect(r.stdout).toContain(`systemctl --root=${root} enable ferry`);

    const text = readFileSync(join(root, UNIT), 'utf8');
    expect(text).toContain(UNIT_MARK);
    const unit = parseUnit(text);
    expect(Object.fromEntries(unit)).toMatchObject({
      'Service.Type': 'exec',
      'Service.User': 'ferry',
      'Service.Group': 'ferry',
      'Service.StateDirectory': 'ferry',
      'Service.ConfigurationDirectory': 'ferry',
      'Service.ReadWritePaths': '/var/lib/ferry',
      'Service.Restart': 'on-failure',
      'Service.KillMode': 'control-group',
      'Service.KillSignal': 'SIGTERM',
      'Service.NoNewPrivileges': 'yes',
      'Service.ProtectSystem': 'strict',
      'Service.ProtectHome': 'yes',
      'Service.PrivateTmp': 'yes',
      'Install.WantedBy': 'multi-user.target',
    });
    for (const k of ['Service.RestartSec', 'Unit.StartLimitIntervalSec', 'Unit.StartLimitBurst', 'Service.TimeoutStopSec']) expect(unit.has(k), k).toBe(true);
    expect(seconds(unit.get('Service.TimeoutStopSec')!)).toBeGreaterThanOrEqual(60_000);
    // Settings that break Node are not there.
    expect(unit.has('Service.MemoryDenyWriteExecute')).toBe(false);

    const argv = execArgv(unit.get('Service.ExecStart')!);
    const main = argv[1 + AGENT_NODE_FLAGS.length]!;
    // The agent's Node flags are given: the agent is the main process, with no wrapper.
    expect(argv).toEqual([nodeCommand(), ...AGENT_NODE_FLAGS, main, 'start', '--config', '/etc/ferry/ferry.config.json']);
    expect(main).toMatch(/\/dist\/agent\/cli\/main\.js$/);
    expect(existsSync(main)).toBe(true);
    expect(readFileSync(main, 'utf8')).toBe(readFileSync(FERRY_MAIN, 'utf8'));

    // The config: JSON, no secrets, the service's data directory (start accepts it: the tests below run it).
    expect(JSON.parse(readFileSync(join(root, CONFIG), 'utf8'))).toEqual({ data: '/var/lib/ferry', profile: 'rpi-4b', logLevel: 'info' });

    // systemd's own check of the unit file: no unknown key, no bad value, ExecStart executable.
    const v = spawnSync('systemd-analyze', ['verify', join(root, UNIT)], { encoding: 'utf8' });
    expect(v.error, 'systemd-analyze (Debian package systemd; npm test installs it)').toBeUndefined();
    expect(v.stderr.split('\n').filter((l) => l.includes('ferry.service')), v.stderr).toEqual([]);
    expect(v.status, v.stderr).toBe(0);
  });

  it('a second install keeps an edited config and rewrites its own unit; a unit it did not write is left alone', async () => {
    const root = temp.dir('again');
    expect((await runFerry(['service', 'install', '--root', root])).code).toBe(0);
    const edited = `${JSON.stringify({ data: '/var/lib/ferry', profile: 'rpi-5', broker: 'mqtt://127.0.0.1:1883' }, null, 2)}\n`;
    writeFileSync(join(root, CONFIG), edited);
    const again = await json(['service', 'install', '--root', root, '--user', 'edge']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.value.files).toEqual([
      { file: 'config', path: join(root, CONFIG), action: 'kept' },
      { file: 'unit', path: join(root, UNIT), action: 'replaced' },
    ]);
    expect(readFileSync(join(root, CONFIG), 'utf8')).toBe(edited);
    expect(parseUnit(readFileSync(join(root, UNIT), 'utf8')).get('Service.User')).toBe('edge');
    expect((await json(['service', 'install', '--root', root, '--user', 'edge'])).value.files).toMatchObject([{ action: 'kept' }, { action: 'unchanged' }]);

    writeFileSync(join(root, UNIT), '[Service]\nExecStart=/usr/bin/true\n');
    const refused = await json(['service', 'install', '--root', root]);
    expect(refused.code).toBe(1);
    expect(refused.value.error).toMatchObject({ code: 'SERVICE_INSTALL_FAILED', field: join(root, UNIT) });
    expect(readFileSync(join(root, UNIT), 'utf8')).toBe('[Service]\nExecStart=/usr/bin/true\n');
  });

  it('--dry-run writes nothing and shows both files', async () => {
    const root = temp.dir('dry');
    const r = await runFerry(['service', 'install', '--root', root, '--dry-run', '--data', '/srv/ferry', '--config-dir', '/etc/ferry-edge']);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(root)).toEqual([]);
    expect(r.stdout).toContain(`would write ${join(root, 'etc/ferry-edge/ferry.config.json')}`);
    expect(r.stdout).toContain('"data": "/srv/ferry"');
    expect(r.stdout).toContain('ReadWritePaths=/srv/ferry');
    expect(r.stdout).toContain('--config /etc/ferry-edge/ferry.config.json');
    // Outside /var/lib the operator makes the data directory; no StateDirectory= then.
    expect(r.stdout).not.toContain('StateDirectory=');
    expect(r.stdout).toContain('install -d -o ferry -g ferry -m 0750 /srv/ferry');
    const j = await json(['service', 'install', '--root', root, '--dry-run']);
    expect(j.value).toMatchObject({ command: 'install', dryRun: true, files: [{ file: 'config', action: 'written' }, { file: 'unit', action: 'written' }] });
    expect(readdirSync(root)).toEqual([]);
  });

  it.each([
    [['service'], 'subcommand'],
    [['service', 'reinstall'], 'subcommand'],
    [['service', 'install', 'now'], 'arguments'],
    [['service', 'install', '--user', 'Ferry User'], '--user'],
    [['service', 'install', '--user', 'root'], '--user'],
    [['service', 'install', '--data', 'ferry-data'], '--data'],
    [['service', 'install', '--data', '/home/pi/ferry'], '--data'],
    [['service', 'install', '--data', '/tmp/ferry'], '--data'],
    [['service', 'install', '--data', '/var/lib/my ferry'], '--data'],
    [['service', 'install', '--data', '/'], '--data'],
    [['service', 'install', '--config-dir', 'etc'], '--config-dir'],
    [['service', 'install', '--root', '/nonexistent/image'], '--root'],
    [['service', 'install', '--dry-run', '--verbose'], '--verbose'],
    [['service', 'uninstall', '--user', 'ferry'], '--user'],
  ])('ferry %j: CLI_USAGE naming %s', async (args, field) => {
    // A --root of its own unless the case is about --root: nothing may reach the real /etc.
    const r = await json(args.includes('--root') ? args : [...args, '--root', temp.dir('bad')]);
    expect(r.code).toBe(1);
    expect(r.value.error).toMatchObject({ code: 'CLI_USAGE', field });
  });

  it('writing into / needs root: SERVICE_INSTALL_FAILED, nothing written', async (ctx) => {
    let as: { uid?: number; gid?: number } = {};
    if (process.getuid!() === 0) {
      // Run by root here (CI): run the command as nobody, if nobody can read it.
      const probe = spawnSync(nodeCommand(), ['-e', `require('fs').accessSync(${JSON.stringify(FERRY_MAIN)}, require('fs').constants.R_OK)`], { uid: 65534, gid: 65534, cwd: tmpdir() });
      if (probe.status !== 0) ctx.skip(); // the checkout is not readable by other users
      as = { uid: 65534, gid: 65534 };
    }
    const r = await runFerry(['service', 'install', '--json'], { cwd: tmpdir(), ...as });
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as { error: unknown }).error).toMatchObject({ code: 'SERVICE_INSTALL_FAILED', field: '--root' });
    expect(JSON.parse(r.stdout).error.message).toContain('sudo ferry service install');
    // --dry-run writes nothing, so it needs no root.
    expect((await runFerry(['service', 'install', '--dry-run'], { cwd: tmpdir(), ...as })).code).toBe(0);
  });

  it('uninstall removes the unit and the link `systemctl --root enable` made, and keeps the config', async () => {
    const root = temp.dir('uninstall');
    expect((await runFerry(['service', 'install', '--root', root])).code).toBe(0);
    const enable = spawnSync('systemctl', [`--root=${root}`, 'enable', 'ferry'], { encoding: 'utf8' });
    expect(enable.status, enable.stderr).toBe(0);
    const link = join(root, 'etc/systemd/system/multi-user.target.wants/ferry.service');
    expect(existsSync(link) || readdirSync(join(root, 'etc/systemd/system/multi-user.target.wants')).includes('ferry.service')).toBe(true);
    const dry = await json(['service', 'uninstall', '--root', root, '--dry-run']);
    expect(dry.value.files).toEqual([
      { file: 'enable link', path: link, action: 'removed' },
      { file: 'unit', path: join(root, UNIT), action: 'removed' },
      { file: 'config', path: join(root, CONFIG), action: 'kept' },
    ]);
    expect(existsSync(join(root, UNIT))).toBe(true);
    const r = await runFerry(['service', 'uninstall', '--root', root]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(root, UNIT))).toBe(false);
    expect(readdirSync(join(root, 'etc/systemd/system/multi-user.target.wants'))).toEqual([]);
    expect(existsSync(join(root, CONFIG))).toBe(true);
    expect((await json(['service', 'uninstall', '--root', root])).value.files).toEqual([{ file: 'unit', path: join(root, UNIT), action: 'absent' }]);
  });

  it('ferry service --help and ferry help service give its usage; ferry help lists it', async () => {
    for (const args of [['service', '--help'], ['help', 'service']]) {
      const r = await runFerry(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('usage: ferry service install|uninstall [--user <name>] [--data <dir>] [--config-dir <dir>] [--root <dir>] [--dry-run]');
      expect(r.stdout).toContain('--dry-run');
    }
    expect((await runFerry(['help'])).stdout).toContain('service install|uninstall');
  });

  it('a Raspberry Pi model string picks its profile', () => {
    expect(profileForModel('Raspberry Pi 5 Model B Rev 1.0')).toBe('rpi-5');
    expect(profileForModel('Raspberry Pi 4 Model B Rev 1.4')).toBe('rpi-4b');
    expect(profileForModel('Raspberry Pi Zero 2 W Rev 1.0')).toBe('rpi-zero-2w');
    expect(profileForModel('Raspberry Pi 3 Model B Plus Rev 1.3')).toBeUndefined();
  });
});

/** What the installed unit runs, and the config it names (its `data` moved to a temporary folder). */
interface AsUnit {
  argv: string[];
  timeoutStopMs: number;
  dataDir: string;
}

async function installed(): Promise<AsUnit> {
  const root = temp.dir('unit');
  expect((await runFerry(['service', 'install', '--root', root])).code).toBe(0);
  const unit = parseUnit(readFileSync(join(root, UNIT), 'utf8'));
  const argv = execArgv(unit.get('Service.ExecStart')!);
  // The unit's config, as install wrote it, but with the data in a temporary folder (a StateDirectory
  // stand-in, mode 0750 as systemd makes it) and the embedded broker on any free port.
  const dataDir = join(temp.dir('state'), 'ferry');
  mkdirSync(dataDir, { mode: 0o750 });
  chmodSync(dataDir, 0o750);
  const config = join(temp.dir('etc'), 'ferry.config.json');
  writeFileSync(config, JSON.stringify({ ...JSON.parse(readFileSync(join(root, CONFIG), 'utf8')), data: dataDir, brokerPort: 0 }));
  const c = argv.indexOf('--config');
  argv[c + 1] = config;
  return { argv, timeoutStopMs: seconds(unit.get('Service.TimeoutStopSec')!), dataDir };
}

/** systemd's environment for a system service: no FERRY_* from the test runner, its default PATH. */
const SYSTEMD_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

const running: AgentProcess[] = [];
afterEach(async () => {
  for (const a of running.splice(0)) {
    signalGroup(a.proc.pid!, 'SIGKILL');
    await a.kill('SIGKILL');
  }
});

interface Started {
  agent: AgentProcess;
  /** The main PID (ExecStart's process, the agent itself), and the process group standing in for the cgroup. */
  mainPid: number;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the unit's ExecStart as systemd would: its own process group, systemd's environment. */
async function startUnit(u: AsUnit): Promise<Started> {
  const agent = startAgentProcess(u.dataDir, [], { argv: u.argv, detached: true, env: SYSTEMD_ENV });
  running.push(agent);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => agent.proc.on('exit', (code, signal) => r({ code, signal })));
  const status = await agent.ready;
  expect(status.pid).toBe(agent.proc.pid); // the agent is the main process
  expect(groupPids(agent.proc.pid!)).toEqual([agent.proc.pid!]); // and the only one
  return { agent, mainPid: agent.proc.pid!, exit };
}

const count = async (a: AgentProcess) => ((await a.control('call', { instance: 'counter', handler: 'get', message: null })) as { count: number }).count;

/** The counter app, installed and run, incremented three times: three committed checkpoints' worth of state. */
async function withCounter(a: AgentProcess): Promise<void> {
  await a.control('install', { path: join(process.cwd(), 'apps', 'counter.mjs') });
  await a.control('run', { app: 'counter' });
  for (let i = 0; i < 3; i++) await a.control('call', { instance: 'counter', handler: 'increment', message: null });
  expect(await count(a)).toBe(3);
}

/** The restart systemd makes (same ExecStart, same data): not refused, and the counter where it was. */
async function restartFindsCounter(u: AsUnit): Promise<void> {
  const again = await startUnit(u);
  expect(await count(again.agent)).toBe(3);
  expect(await stopLikeSystemd(again.mainPid, u.timeoutStopMs)).toEqual([]);
  expect((await again.exit).code).toBe(0);
}

const STOP_TEST_MS = 240_000; // past TimeoutStopSec (120 s) twice: the waits are bounded by it, not by the test timeout

describe("the agent as its unit runs it: systemd's stop and restart paths", () => {
  it(
    'systemctl stop (SIGTERM + SIGCONT to every process at once): exit 0, agent.stopped, nothing left; a restart has the state',
    async () => {
      const u = await installed();
      const s = await startUnit(u);
      await withCounter(s.agent);
      const killed = await stopLikeSystemd(s.mainPid, u.timeoutStopMs);
      expect(killed).toEqual([]); // all exited within TimeoutStopSec: no SIGKILL
      expect(await s.exit).toEqual({ code: 0, signal: null });
      expect(groupPids(s.mainPid)).toEqual([]);
      expect(s.agent.logs.filter((l) => l.event === 'agent.stopped')).toHaveLength(1);
      await restartFindsCounter(u);
    },
    STOP_TEST_MS,
  );

  it(
    'Restart=on-failure after the agent is SIGKILLed (a crash, the OOM killer): nothing is left behind, and the restart is not refused and recovers',
    async () => {
      const u = await installed();
      const s = await startUnit(u);
      await withCounter(s.agent);
      process.kill(s.mainPid, 'SIGKILL');
      expect((await s.exit).signal).toBe('SIGKILL'); // a failure: Restart=on-failure acts on it
      expect(groupPids(s.mainPid)).toEqual([]);
      expect(s.agent.logs.some((l) => l.event === 'agent.stopped')).toBe(false);
      await restartFindsCounter(u);
    },
    STOP_TEST_MS,
  );

  it(
    'every process SIGKILLed at once (systemd past TimeoutStopSec, a power cut): the restart recovers the last committed checkpoint',
    async () => {
      const u = await installed();
      const s = await startUnit(u);
      await withCounter(s.agent);
      signalGroup(s.mainPid, 'SIGKILL');
      expect((await s.exit).signal).toBe('SIGKILL');
      await until(() => groupPids(s.mainPid).length === 0, 'the processes to die', u.timeoutStopMs);
      expect(s.agent.logs.some((l) => l.event === 'agent.stopped')).toBe(false);
      await restartFindsCounter(u);
    },
    STOP_TEST_MS,
  );
});
