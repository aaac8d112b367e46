/**
 * The device harness (test/harness/DESIGN.md): the kernel enforces a profile's CPU share and
 * memory cap on what runs in its group; without cgroups it fails loudly, naming why; a device
 * is an agent that answers behind its link.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getProfile } from '../../hw-profiles/index.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { caughtAsync } from '../helpers/ferry-error.js';
import { Cgroup, DeviceSlot, findCgroups, parseSevenZipRating, periodFor, runWorkload, shareFor, startDevice } from './index.js';

const HOG = fileURLToPath(new URL('../../bench/lib/memory-hog.mjs', import.meta.url));
const temp: string[] = [];
const dir = (p: string) => {
  const d = mkdtempSync(join(tmpdir(), `ferry-harness-${p}-`));
  temp.push(d);
  return d;
};
afterAll(() => {
  for (const d of temp) rmSync(d, { recursive: true, force: true });
});

describe('without cgroups the harness fails loudly', () => {
  it('no controller at all: HARNESS_NO_CGROUPS saying what is missing and how to run in a container', async () => {
    const root = dir('empty');
    const e = await caughtAsync(() => DeviceSlot.open({ profile: 'rpi-zero-2w', cgroupRoot: root }));
    expect(e.code).toBe('HARNESS_NO_CGROUPS');
    expect(e.message).toContain(`no cpu controller (no ${join(root, 'cpu', 'cpu.cfs_quota_us')})`);
    expect(e.message).toContain('no cgroup v2 hierarchy');
    expect(e.message).toContain('--privileged');
    expect(e.details.field).toBe('cgroups');
  });

  it('a v2 hierarchy without the cpu controller is named as such', () => {
    const root = dir('v2-nocpu');
    writeFileSync(join(root, 'cgroup.controllers'), 'memory pids\n');
    expect(() => findCgroups({ cpu: true, memory: true }, root)).toThrow(/does not offer the cpu controller \(cgroup\.controllers: "memory pids"\)/);
  });

  it('a profile without a CPU figure cannot be given a share: HARNESS_NO_FIGURE', async () => {
    const { cpu: _cpu, ...bare } = getProfile('rpi-zero-2w');
    const e = await caughtAsync(() => DeviceSlot.open({ profile: { ...bare, name: 'no-figure' }, cgroupRoot: dir('nofig') }));
    expect(e.code).toBe('HARNESS_NO_FIGURE');
    expect(e.details.field).toBe('profile.cpu');
  });

  it('options are checked by field', async () => {
    const bad = await caughtAsync(() => DeviceSlot.open({ profile: 'rpi-zero-2w', cpu: 'yes' as unknown as boolean }));
    expect([bad.code, bad.details.field]).toEqual(['BAD_OPTION', 'options.cpu']);
    expect((await caughtAsync(() => DeviceSlot.open({ profile: 'no-such-device' }))).code).toBe('PROFILE_UNKNOWN');
    const port = await caughtAsync(() => startDevice({ profile: 'rpi-4b', id: 'x', dataDir: dir('opt'), brokerPort: 0 }));
    expect([port.code, port.details.field]).toEqual(['BAD_OPTION', 'options.brokerPort']);
  });
});

describe('the v2 files a group writes (a v2 layout in a directory)', () => {
  it('cpu.max holds "quota period", memory.max the cap, swap off, the children get both controllers', () => {
    const root = dir('v2');
    writeFileSync(join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    writeFileSync(join(root, 'cgroup.subtree_control'), '');
    const g = Cgroup.create('rpi-zero-2w', { cpu: true, memory: true }, root);
    const d = join(root, g.name);
    writeFileSync(join(d, 'memory.swap.max'), 'max');
    g.setCpu(2505, 10_000);
    g.setMemory(512 * 1024 * 1024);
    expect(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8')).toBe('+cpu +memory');
    expect(readFileSync(join(d, 'cpu.max'), 'utf8')).toBe('2505 10000');
    expect(readFileSync(join(d, 'memory.max'), 'utf8')).toBe(String(512 * 1024 * 1024));
    expect(readFileSync(join(d, 'memory.swap.max'), 'utf8')).toBe('0');
    expect(g.wrap(['node', 'x.js'])).toEqual(['/bin/sh', '-c', `echo $$ > '${join(d, 'cgroup.procs')}' && exec "$@"`, 'ferry-device', 'node', 'x.js']);
  });
});

describe('shares and ratings', () => {
  it("parses 7-Zip's 22: line (decompression rating, the last column)", () => {
    const out = ['Dict     Speed Usage    R/U Rating  |      Speed Usage    R/U Rating', '22:       6816   100   6634   6631  |      55677   100   4762   4754', 'Tot:             100   5698   5692'].join('\n');
    expect(parseSevenZipRating(out)).toBe(4754);
    expect(() => parseSevenZipRating('Tot: 100 5698 5692')).toThrow(/no "22:" line/);
  });

  it('the share is the profile rating over the host core, capped at a whole core; the period keeps the quota ≥ 1 ms', () => {
    const host = { rating: 4400, model: 'x', bootId: 'b', measuredAt: '' };
    const zero = shareFor(1101, host);
    expect(zero.share).toBeCloseTo(1101 / 4400, 6);
    expect(zero.periodUs).toBe(10_000);
    expect(zero.quotaUs).toBe(Math.round((1101 / 4400) * 10_000));
    const j2me = shareFor(121, host);
    expect(j2me.quotaUs).toBeGreaterThanOrEqual(1000);
    expect(j2me.periodUs).toBeGreaterThan(10_000);
    expect(j2me.quotaUs / j2me.periodUs).toBeCloseTo(121 / 4400, 2);
    expect(shareFor(9000, host)).toMatchObject({ share: 1, limitedByHost: true });
    expect(periodFor(1)).toBe(10_000);
    expect(periodFor(0.001)).toBe(100_000);
  });
});

describe('on this machine (cgroup v1 as root)', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startAedes();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it("a process in an rpi-zero-2w group gets no more CPU than the Zero's share, and the kernel throttles it", async () => {
    const slot = await DeviceSlot.open({ profile: 'rpi-zero-2w', memory: false });
    try {
      const share = slot.cpu!.quotaUs / slot.cpu!.periodUs;
      expect(share).toBeGreaterThan(0.05);
      expect(share).toBeLessThan(1);
      const run = await runWorkload(800, slot.group);
      // CPU time over wall time is bounded by the quota whatever else the machine does.
      expect(run.cpuMs / run.wallMs).toBeLessThanOrEqual(share * 1.15 + 0.01);
      expect(run.cpuMs).toBeGreaterThan(0);
      expect(slot.group!.throttling().throttled).toBeGreaterThan(0);
    } finally {
      await slot.close();
    }
  });

  it('a process in an rpi-zero-2w group that takes more than 512 MiB is stopped at the cap', async () => {
    const slot = await DeviceSlot.open({ profile: 'rpi-zero-2w', cpu: false });
    try {
      expect(slot.memoryCapBytes).toBe(512 * 1024 * 1024);
      const [file, ...argv] = slot.wrap([nodeCommand(), HOG, String(640 * 1024 * 1024)]);
      const child = spawn(file!, argv, { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const { signal } = await new Promise<{ signal: NodeJS.Signals | null }>((r) => child.on('exit', (_c, s) => r({ signal: s })));
      expect(out).not.toContain('done');
      expect(signal).toBe('SIGKILL');
      expect(slot.group!.memoryPeakBytes()).toBeLessThanOrEqual(512 * 1024 * 1024);
      expect(slot.group!.oomKills()).toBeGreaterThanOrEqual(1);
    } finally {
      await slot.close();
    }
  });

  it('a PDA has no memory cap (its RAM cannot hold Node): the heap budget is the emulation', async () => {
    const slot = await DeviceSlot.open({ profile: 'palm-pda', cpu: false });
    expect(slot.memoryCapBytes).toBeNull();
    expect(slot.group).toBeUndefined();
    await slot.close();
  });

  it('a device: an agent on its profile, in its group, behind its link, on its own data directory', async () => {
    const dataDir = dir('device');
    mkdirSync(dataDir, { recursive: true });
    const d = await startDevice({ profile: 'android-phone', id: `phone-${process.pid}`, dataDir, brokerPort: broker.port });
    try {
      const pid = d.agent.proc.pid!;
      expect(d.slot.group!.pids()).toContain(pid);
      expect(d.brokerUrl).toBe(d.link!.url);
      const status = (await d.agent.control('status')) as { deviceId: string; profile: { name: string } | string; broker: { connected: boolean } };
      expect(status.deviceId).toBe(`phone-${process.pid}`);
      expect(JSON.stringify(status.profile)).toContain('android-phone');
      expect(d.link!.stats.connectionsAccepted).toBeGreaterThanOrEqual(1);
    } finally {
      await d.stop();
    }
    expect(d.slot.group!.pids()).toEqual([]);
  });
});
