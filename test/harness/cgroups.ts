/**
 * Linux control groups for the device harness (DESIGN.md beside this file, "CPU share" and
 * "Memory cap"): one group per emulated device, with a CPU quota (`cpu` controller) and a
 * memory limit (`memory` controller), on cgroup v1 (a hierarchy per controller, as on this
 * project's CI machines) or v2 (one unified hierarchy: `cpu.max`, `memory.max`).
 *
 * A process enters its group before it runs anything: the command is wrapped in a shell that
 * writes its own pid into the group and then execs the real program, so no instruction of the
 * agent runs outside the quota, and everything it spawns inherits the group.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.js';

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';
const PREFIX = 'ferry-device-';

export interface CgroupWants {
  cpu: boolean;
  memory: boolean;
}

/** Where each controller's group directories live, or why they cannot be used. */
export interface CgroupLayout {
  version: 1 | 2;
  /** Parent directory for new groups, per controller (v2: the same directory for both). */
  cpu: string;
  memory: string;
}

const HOW_TO = 'run the tests as root on a host (or VM) with the cgroup v1 cpu and memory controllers or cgroup v2 with both enabled; in a container, start it with --privileged (Docker/Podman: --privileged --cgroupns=host) so /sys/fs/cgroup is writable';

function unavailable(reason: string): FerryError {
  return new FerryError('HARNESS_NO_CGROUPS', `the device harness needs Linux cgroups to enforce a profile's CPU share and memory cap, and ${reason}; ${HOW_TO}`, { field: 'cgroups' });
}

function writable(dir: string): string | undefined {
  const probe = join(dir, `${PREFIX}probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return undefined;
  } catch (e) {
    return `${dir} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
  }
}

/** Finds the controllers asked for under `root`; throws HARNESS_NO_CGROUPS saying what is missing. */
export function findCgroups(wants: CgroupWants, root = DEFAULT_CGROUP_ROOT): CgroupLayout {
  const controllers = join(root, 'cgroup.controllers');
  const v1cpu = join(root, 'cpu');
  const v1mem = join(root, 'memory');
  const v1 = {
    cpu: existsSync(join(v1cpu, 'cpu.cfs_quota_us')),
    memory: existsSync(join(v1mem, 'memory.limit_in_bytes')),
  };
  if ((!wants.cpu || v1.cpu) && (!wants.memory || v1.memory) && (v1.cpu || v1.memory)) {
    for (const [want, dir] of [[wants.cpu, v1cpu], [wants.memory, v1mem]] as const) {
      const why = want ? writable(dir) : undefined;
      if (why) throw unavailable(why);
    }
    return { version: 1, cpu: v1cpu, memory: v1mem };
  }
  if (existsSync(controllers)) {
    const have = readFileSync(controllers, 'utf8').trim().split(/\s+/);
    const missing = (['cpu', 'memory'] as const).filter((c) => wants[c] && !have.includes(c));
    if (missing.length > 0) throw unavailable(`the cgroup v2 hierarchy at ${root} does not offer the ${missing.join(' and ')} controller (cgroup.controllers: "${have.join(' ')}")`);
    const why = writable(root);
    if (why) throw unavailable(why);
    // Children only get a controller the parent enables for its subtree.
    const enable = (['cpu', 'memory'] as const).filter((c) => wants[c]).map((c) => `+${c}`).join(' ');
    try {
      if (enable) writeFileSync(join(root, 'cgroup.subtree_control'), enable);
    } catch (e) {
      throw unavailable(`enabling "${enable}" in ${join(root, 'cgroup.subtree_control')} failed (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    return { version: 2, cpu: root, memory: root };
  }
  const what = [wants.cpu && !v1.cpu ? `no cpu controller (no ${join(v1cpu, 'cpu.cfs_quota_us')})` : '', wants.memory && !v1.memory ? `no memory controller (no ${join(v1mem, 'memory.limit_in_bytes')})` : '']
    .filter(Boolean)
    .join(' and ');
  throw unavailable(`${root} has ${what || 'no usable controller'}, and no cgroup v2 hierarchy (no ${controllers})`);
}

/** One emulated device's group. */
export class Cgroup {
  private readonly dirs: string[];
  private closed = false;

  private constructor(
    readonly name: string,
    readonly layout: CgroupLayout,
    private readonly cpuDir: string | undefined,
    private readonly memoryDir: string | undefined,
  ) {
    this.dirs = [...new Set([cpuDir, memoryDir].filter((d): d is string => d !== undefined))];
  }

  static create(tag: string, wants: CgroupWants, root = DEFAULT_CGROUP_ROOT): Cgroup {
    const layout = findCgroups(wants, root);
    sweepStale(layout);
    const name = `${PREFIX}${process.pid}-${tag.replace(/[^a-z0-9-]/gi, '-')}-${Math.random().toString(36).slice(2, 8)}`;
    const cpuDir = wants.cpu ? join(layout.cpu, name) : undefined;
    const memoryDir = wants.memory ? join(layout.memory, name) : undefined;
    for (const d of new Set([cpuDir, memoryDir])) if (d) mkdirSync(d);
    return new Cgroup(name, layout, cpuDir, memoryDir);
  }

  /** Limits the group to `quotaUs` of CPU time in every `periodUs` (both 1,000 .. 1,000,000 µs). */
  setCpu(quotaUs: number, periodUs: number): void {
    if (!this.cpuDir) throw new FerryError('BAD_OPTION', 'this group was made without the cpu controller', { field: 'cpu' });
    const q = Math.round(quotaUs);
    const p = Math.round(periodUs);
    if (this.layout.version === 1) {
      // The period first: a quota is checked against the period in force.
      writeFileSync(join(this.cpuDir, 'cpu.cfs_period_us'), String(p));
      writeFileSync(join(this.cpuDir, 'cpu.cfs_quota_us'), String(q));
    } else {
      writeFileSync(join(this.cpuDir, 'cpu.max'), `${q} ${p}`);
    }
  }

  /** Caps the group's memory (and, where the kernel accounts swap, memory plus swap) at `bytes`. */
  setMemory(bytes: number): void {
    if (!this.memoryDir) throw new FerryError('BAD_OPTION', 'this group was made without the memory controller', { field: 'memory' });
    const b = String(Math.round(bytes));
    if (this.layout.version === 1) {
      writeFileSync(join(this.memoryDir, 'memory.limit_in_bytes'), b);
      const memsw = join(this.memoryDir, 'memory.memsw.limit_in_bytes');
      if (existsSync(memsw)) writeFileSync(memsw, b);
    } else {
      writeFileSync(join(this.memoryDir, 'memory.max'), b);
      const swap = join(this.memoryDir, 'memory.swap.max');
      if (existsSync(swap)) writeFileSync(swap, '0');
    }
  }

  /** The most memory the group has used since it was made, bytes. */
  memoryPeakBytes(): number {
    if (!this.memoryDir) return 0;
    const file = this.layout.version === 1 ? 'memory.max_usage_in_bytes' : 'memory.peak';
    return Number(readFileSync(join(this.memoryDir, file), 'utf8').trim());
  }

  /** How many processes of the group the kernel killed for exceeding the cap (0 where not counted). */
  oomKills(): number {
    if (!this.memoryDir) return 0;
    const file = this.layout.version === 1 ? 'memory.oom_control' : 'memory.events';
    const m = /oom_kill (\d+)/.exec(readFileSync(join(this.memoryDir, file), 'utf8'));
    return m ? Number(m[1]) : 0;
  }

  /** Periods in which the group ran out of quota, and for how long it waited in all, µs. */
  throttling(): { periods: number; throttled: number; throttledUs: number } {
    if (!this.cpuDir) return { periods: 0, throttled: 0, throttledUs: 0 };
    const text = readFileSync(join(this.cpuDir, 'cpu.stat'), 'utf8');
    const get = (k: string) => Number(new RegExp(`^${k} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return this.layout.version === 1
      ? { periods: get('nr_periods'), throttled: get('nr_throttled'), throttledUs: get('throttled_time') / 1000 }
      : { periods: get('nr_periods'), throttled: get('nr_throttled'), throttledUs: get('throttled_usec') };
  }

  /** Pids in the group now. */
  pids(): number[] {
    const d = this.dirs[0];
    if (!d || !existsSync(d)) return [];
    return readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  }

  /** Moves a running process (all its threads) into the group. */
  add(pid: number): void {
    for (const d of this.dirs) writeFileSync(join(d, 'cgroup.procs'), String(pid));
  }

  /**
   * `argv` run inside the group: a shell writes its own pid into each of the group's
   * `cgroup.procs` and execs the program, which keeps that pid (and the group).
   */
  wrap(argv: readonly string[]): string[] {
    const enter = this.dirs.map((d) => `echo $$ > '${join(d, 'cgroup.procs')}'`).join(' && ');
    return ['/bin/sh', '-c', `${enter} && exec "$@"`, 'ferry-device', ...argv];
  }

  /** Kills what is left in the group and removes it. */
  async remove(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await removeGroupDirs(this.dirs);
  }
}

async function removeGroupDirs(dirs: string[]): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    let left = false;
    for (const d of dirs) {
      if (!existsSync(d)) continue;
      for (const pid of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        left = true;
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone already
        }
      }
      if (!left) {
        try {
          rmdirSync(d);
        } catch {
          left = true; // the last task is still leaving
        }
      }
    }
    if (!left) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Groups left by harness processes that died without removing them (their pid is gone). */
function sweepStale(layout: CgroupLayout): void {
  for (const parent of new Set([layout.cpu, layout.memory])) {
    let names: string[];
    try {
      names = readdirSync(parent).filter((n) => n.startsWith(PREFIX));
    } catch {
      continue;
    }
    for (const n of names) {
      const pid = Number(/^ferry-device-(\d+)-/.exec(n)?.[1]);
      if (!pid || pid === process.pid || alive(pid)) continue;
      try {
        if (readFileSync(join(parent, n, 'cgroup.procs'), 'utf8').trim() === '') rmdirSync(join(parent, n));
      } catch {
        // in use or gone: leave it
      }
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
