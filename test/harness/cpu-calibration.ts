/**
 * How fast this host's core is, and what CPU quota makes a device's core out of it
 * (DESIGN.md, "CPU share").
 *
 * - The host's rating on the profiles' scale: 7-Zip's single-thread decompression rating at a
 *   4 MiB dictionary (`7z b -mmt1 -md22`), the figure each profile's `cpu.singleCoreMips` is
 *   sourced from. About 6 s; kept for the boot (a file in the temp directory, keyed by the
 *   kernel's boot id and the CPU model) so a test run pays it once.
 * - The share a profile needs: its rating ÷ the host's (one core's worth; see DESIGN.md on cores).
 * - The quota that delivers it: `share × period`, then checked with a fixed workload
 *   (cpu-workload.mjs) run unthrottled and inside the group, and corrected once by the ratio of
 *   what it achieved to what was wanted, within ±15 % (CFS accounting and wake-up costs are
 *   small; a larger miss means the host is busy, and correcting for it would be wrong later).
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FerryError } from '../../core/errors.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';
import type { Cgroup } from './cgroups.js';

const WORKLOAD = fileURLToPath(new URL('./cpu-workload.mjs', import.meta.url));

export interface HostCpu {
  /** 7-Zip's `-mmt1 -md22` decompression rating of one host core ("MIPS"). */
  rating: number;
  model: string;
  bootId: string;
  measuredAt: string;
}

export interface WorkloadRun {
  chunks: number;
  wallMs: number;
  cpuMs: number;
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** Parses `7z b`'s output: the `22:` line's last column (the decompression rating). */
export function parseSevenZipRating(output: string): number {
  const m = /^22:\s+\d+\s+\d+\s+\d+\s+\d+\s+\|\s+\d+\s+\d+\s+\d+\s+(\d+)\s*$/m.exec(output);
  if (!m) throw new FerryError('HARNESS_CALIBRATION', `7z b printed no "22:" line with a decompression rating: ${output.slice(-400)}`, { field: 'hostRating' });
  return Number(m[1]);
}

function runSevenZip(): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile('7z', ['b', '-mmt1', '-md22'], { timeout: 120_000 }, (err, stdout) => {
      if (err) {
        const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
        reject(new FerryError('HARNESS_CALIBRATION', missing ? "7z is not installed: the device harness rates the host's CPU with 7-Zip's benchmark, as the profiles' figures were; install Debian's p7zip-full (npm test's pretest step does)" : `7z b failed: ${err.message}`, { field: 'hostRating' }));
        return;
      }
      try {
        resolve(parseSevenZipRating(stdout));
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}

/** The host's rating, measured once per boot and CPU model (`fresh` measures again). */
export async function hostCpu(options: { fresh?: boolean; cacheDir?: string } = {}): Promise<HostCpu> {
  const dir = options.cacheDir ?? tmpdir();
  const file = join(dir, 'ferry-host-cpu.json');
  const model = cpus()[0]?.model ?? 'unknown';
  const id = bootId();
  const cached = (): HostCpu | undefined => {
    try {
      const c = JSON.parse(readFileSync(file, 'utf8')) as HostCpu;
      return c.bootId === id && c.model === model && c.rating > 0 ? c : undefined;
    } catch {
      return undefined;
    }
  };
  if (!options.fresh) {
    const c = cached();
    if (c) return c;
  }
  return withLock(file, async () => {
    const c = options.fresh ? undefined : cached();
    if (c) return c;
    const measured: HostCpu = { rating: await runSevenZip(), model, bootId: id, measuredAt: new Date().toISOString() };
    writeFileSync(file, JSON.stringify(measured));
    return measured;
  });
}

/**
 * Runs `fn` while holding `<file>.lock` (created exclusively): one measurement at a time on the
 * machine, since parallel test files measuring at once would slow each other's. After two
 * minutes of waiting the lock is taken as left by a dead process.
 */
async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch {
      if (Date.now() > deadline) rmSync(lock, { force: true });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

/**
 * Runs the fixed workload for `windowMs`, inside `group` when given: the child starts outside,
 * warms up, and is moved into the group just before its window, so neither Node's start-up
 * nor the JIT's warm-up runs at the device's speed.
 */
export function runWorkload(windowMs: number, group?: Cgroup): Promise<WorkloadRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(nodeCommand(), [WORKLOAD, String(windowMs), '--wait'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let started = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!started && out.startsWith('ready\n')) {
        started = true;
        out = out.slice('ready\n'.length);
        try {
          group?.add(child.pid!);
          child.stdin.end('go\n');
        } catch (e) {
          child.kill('SIGKILL');
          reject(e as Error);
        }
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        if (code !== 0) throw new Error(`exit ${code}: ${err}`);
        resolve(JSON.parse(out) as WorkloadRun);
      } catch (e) {
        reject(new FerryError('HARNESS_CALIBRATION', `the CPU workload failed: ${(e as Error).message}`, { field: 'workload' }));
      }
    });
  });
}

export interface CpuShare {
  /** Wanted: the profile's core ÷ the host's core (capped at 1: see limitedByHost). */
  share: number;
  /** The profile's core is faster than the host's: the device runs at the host's speed. */
  limitedByHost: boolean;
  quotaUs: number;
  periodUs: number;
  /** What the workload achieved in the group ÷ unthrottled, when measured. */
  achievedShare?: number;
}

/**
 * The CFS period for a share: 10 ms where the quota stays ≥ 1 ms (the kernel's floor), longer
 * for the slowest devices. A short period spreads the throttling thin, which is closer to a
 * uniformly slower core than long runs and long stops.
 */
export function periodFor(share: number): number {
  return Math.min(100_000, Math.max(10_000, Math.ceil(1000 / share / 1000) * 1000));
}

export function shareFor(singleCoreMips: number, host: HostCpu): CpuShare {
  const raw = singleCoreMips / host.rating;
  const share = Math.min(1, raw);
  const periodUs = periodFor(share);
  return { share, limitedByHost: raw > 1, quotaUs: Math.max(1000, Math.round(share * periodUs)), periodUs };
}

/**
 * Sets the group's quota for `wanted` and checks it with the workload: the achieved share
 * (chunks a millisecond inside ÷ outside), corrected once when it is off by more than 5 %.
 */
export async function calibrate(group: Cgroup, wanted: CpuShare, options: { windowMs?: number } = {}): Promise<CpuShare> {
  if (wanted.share >= 1) {
    group.setCpu(wanted.periodUs, wanted.periodUs); // a whole core: quota = period
    return { ...wanted, quotaUs: wanted.periodUs, achievedShare: 1 };
  }
  const free = await runWorkload(500);
  const freeRate = free.chunks / free.wallMs;
  // ≥ 60 periods: the kernel checks a group's quota on its ticks and scheduling events, so a
  // tiny quota (1 ms for the slowest devices) is overrun in one period and repaid in the next.
  const window = options.windowMs ?? Math.max(1000, (60 * wanted.periodUs) / 1000);
  let quotaUs = wanted.quotaUs;
  let achieved = 0;
  for (let round = 0; round < 2; round++) {
    group.setCpu(quotaUs, wanted.periodUs);
    const inside = await runWorkload(window, group);
    achieved = inside.chunks / inside.wallMs / freeRate;
    if (Math.abs(achieved / wanted.share - 1) <= 0.05) break;
    if (round === 0) {
      const factor = Math.min(1.15, Math.max(0.85, wanted.share / achieved));
      quotaUs = Math.max(1000, Math.round(quotaUs * factor));
    }
  }
  return { ...wanted, quotaUs, achievedShare: achieved };
}

interface QuotaCache {
  bootId: string;
  hostRating: number;
  shares: Record<string, CpuShare>;
}

/**
 * A profile's calibrated share, kept for the boot beside the host's rating (a test run
 * calibrates each profile once, not once per device); `fresh` calibrates again.
 */
export async function calibratedShare(profile: string, group: Cgroup, wanted: CpuShare, host: HostCpu, options: { fresh?: boolean; cacheDir?: string } = {}): Promise<CpuShare> {
  const file = join(options.cacheDir ?? tmpdir(), 'ferry-device-quotas.json');
  const read = (): QuotaCache => {
    try {
      const c = JSON.parse(readFileSync(file, 'utf8')) as QuotaCache;
      if (c.bootId === host.bootId && c.hostRating === host.rating) return c;
    } catch {
      // none yet
    }
    return { bootId: host.bootId, hostRating: host.rating, shares: {} };
  };
  const usable = (hit: CpuShare | undefined) => !options.fresh && hit !== undefined && hit.periodUs === wanted.periodUs && hit.share === wanted.share;
  const first = read().shares[profile];
  if (usable(first)) {
    group.setCpu(first!.quotaUs, first!.periodUs);
    return first!;
  }
  return withLock(file, async () => {
    // Another process may have calibrated it while this one waited.
    const cache = read();
    const hit = cache.shares[profile];
    if (usable(hit)) {
      group.setCpu(hit!.quotaUs, hit!.periodUs);
      return hit!;
    }
    const got = await calibrate(group, wanted);
    cache.shares[profile] = got;
    // Written whole under a temporary name: a reader never sees half a file.
    const tmp = `${file}.${process.pid}`;
    writeFileSync(tmp, JSON.stringify(cache));
    renameSync(tmp, file);
    return got;
  });
}

