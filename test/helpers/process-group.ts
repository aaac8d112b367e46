/**
 * Processes as a supervisor sees them: is a pid alive, which processes a group holds, and
 * systemd's stop of a unit (KillMode=control-group) done on a process group, which stands in
 * for the unit's cgroup where systemd is not PID 1.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** The process exists (a zombie counts: it is not reaped yet). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `cond` holds; throws naming `what` after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The live processes (not zombies) of process group `pgid`, from /proc. */
export function groupPids(pgid: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') pids.push(Number(name));
  }
  return pids;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // exited meanwhile
  }
}

/** Kills every live process of the group with `sig`, each by its pid (as systemd does a cgroup's). */
export function signalGroup(pgid: number, sig: NodeJS.Signals): number[] {
  const pids = groupPids(pgid);
  for (const pid of pids) signal(pid, sig);
  return pids;
}

/**
 * `systemctl stop` of a unit with KillMode=control-group: KillSignal and SIGCONT to every process
 * of the unit at once, up to TimeoutStopSec for all of them to exit, then SIGKILL to what is left
 * (SendSIGKILL=yes). Returns the pids that needed the SIGKILL (none, for a clean stop).
 */
export async function stopLikeSystemd(pgid: number, timeoutStopMs: number, killSignal: NodeJS.Signals = 'SIGTERM'): Promise<number[]> {
  for (const pid of groupPids(pgid)) {
    signal(pid, killSignal);
    signal(pid, 'SIGCONT');
  }
  const end = Date.now() + timeoutStopMs;
  while (groupPids(pgid).length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
  return signalGroup(pgid, 'SIGKILL');
}
