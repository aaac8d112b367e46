/**
 * Faults at every step of the handoff, the destination's side and the messages between the two:
 * the destination SIGKILLed at each of its steps (FERRY_FAULT=destination:<step>:kill) and
 * restarted on the same data directory, one message dropped (the switch, the commit, the
 * origin's answer about its decision), and the destination's disk failing at the install, then
 * really full (its data directory on a small tmpfs).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { Dirs } from '../bridge/helpers.js';
import { migrate } from './helpers.js';
import { checkLedger, checkReport, INSTANCE, runFault, startRig, type Expect, type Rig } from './fault-helpers.js';

/** A small tmpfs (root only): `mount` fails clearly when the test runs without the right. */
function mountTmpfs(dir: string, bytes: number): () => void {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`the full-disk test mounts a ${bytes}-byte tmpfs and needs root (mount -t tmpfs) to do so: ${String((e as { stderr?: Buffer }).stderr ?? e)}`);
  }
  return () => {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    } catch {
      // already gone
    }
  };
}

/** Fills the file system of `file` until `leaveBytes` are left free (ENOSPC tells where the end is). */
function fillDisk(file: string, leaveBytes: number): number {
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(64 * 1024, 0x5a);
  let written = 0;
  try {
    for (;;) written += writeSync(fd, block);
  } catch {
    // ENOSPC: full
  } finally {
    closeSync(fd);
  }
  // Give back what the agent may use for small writes (registry, keys), not enough for a heap.
  execFileSync('truncate', ['-s', String(Math.max(0, written - leaveBytes)), file]);
  return written - leaveBytes;
}

describe('handoff faults: the destination and the messages', () => {
  let broker: TestBroker;
  let rig: Rig | undefined;
  beforeEach(async () => {
    broker = await startAedes({ persistent: true });
  });
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
    await broker.stop();
  });

  // [step, where the instance runs after recovery, the abort's code]
  const steps: Array<[string, Expect, string | undefined]> = [
    // Not prepared: the origin hears nothing, aborts when the step times out, and serves on; the
    // restarted destination undoes the unprepared move at its start.
    ['incoming', 'origin', 'MIGRATE_ABORTED'],
    ['staged', 'origin', 'MIGRATE_ABORTED'],
    // The final delta never installed: the switch goes unanswered, as below.
    ['install', 'origin', 'MIGRATE_DOWNTIME_EXCEEDED'],
    // Prepared but the answer never left: the origin aborts at its downtime limit; the restarted
    // destination asks for the decision and hears "aborted".
    ['prepared', 'origin', 'MIGRATE_DOWNTIME_EXCEEDED'],
    // Decided at the origin: the restarted destination asks and hears "moved".
    ['commit', 'destination', undefined],
    ['running', 'destination', undefined],
  ];

  it.each(steps)('destination SIGKILLed at %s: the instance runs on the %s, every request applied once, in order', async (step, where, code) => {
    rig = await startRig(broker, { destinationFault: `destination:${step}:kill` });
    const out = await runFault(rig, { kill: 'destination', expect: where, ...(code ? { code } : {}) });
    expect(out.ledger.length).toBeGreaterThan(40);
  }, 180_000);

  it('a pre-copy round is lost: the origin aborts when the step times out and serves on; the destination undoes', async () => {
    rig = await startRig(broker, { destinationFault: 'destination:round:drop' });
    await runFault(rig, { expect: 'origin', code: 'MIGRATE_ABORTED' });
    expect(rig.phone.allLogs().some((l) => l.event === 'move.undone')).toBe(true);
  }, 180_000);

  it('the switch is lost: the origin aborts within its downtime limit and serves on; the destination undoes', async () => {
    rig = await startRig(broker, { destinationFault: 'destination:switch:drop' });
    // The lost answer is waited for up to the limit: the pause, resume included, must stay within it.
    const out = await runFault(rig, { expect: 'origin', code: 'MIGRATE_DOWNTIME_EXCEEDED', migrateArgs: ['--downtime-limit', '1000'] });
    expect(out.migrated.report!.switchSteps).toBeDefined();
  }, 180_000);

  /** A step timeout longer than the destination's questions take (they go every 2 s, each waiting 10 s at most). */
  const ASK_FIRST = ['--downtime-limit', '3000', '--step-timeout', '60000'];

  it('the commit is lost: the destination asks for the decision and runs the instance; the origin reports moved', async () => {
    rig = await startRig(broker, { destinationFault: 'destination:commit:drop' });
    // The origin resends a lost commit after its step timeout: long here, so the destination's question comes first.
    await runFault(rig, { expect: 'destination', migrateArgs: ASK_FIRST });
    expect(rig.phone.allLogs().some((l) => l.event === 'move.decided' && l.asked === true)).toBe(true);
  }, 180_000);

  it("the origin's answer about its decision is lost too: the destination asks again and runs the instance", async () => {
    rig = await startRig(broker, { destinationFault: 'destination:commit:drop', originFault: 'origin:decision:drop', logLevel: 'debug' });
    await runFault(rig, { expect: 'destination', migrateArgs: ASK_FIRST });
    const logs = rig.phone.allLogs();
    // Its first question went unanswered, a later one was answered "moved".
    expect(logs.some((l) => l.event === 'move.ask-failed')).toBe(true);
    expect(logs.some((l) => l.event === 'move.decided' && l.asked === true)).toBe(true);
  }, 180_000);

  it("the destination's disk fails at the install: the origin aborts and serves on; nothing stays behind there", async () => {
    rig = await startRig(broker, { destinationFault: 'destination:install:fail' });
    const out = await runFault(rig, { expect: 'origin', code: 'MIGRATE_ABORTED' });
    expect(out.migrated.report!.message).toMatch(/STORE_IO/);
  }, 180_000);

  it("the destination's disk is full: the move aborts, the origin serves on, and once there is room again the move succeeds", async () => {
    const dirs = new Dirs();
    const mnt = dirs.make('tmpfs');
    const unmount = mountTmpfs(mnt, 24 * 1024 * 1024);
    try {
      const data = join(mnt, 'data');
      mkdirSync(data);
      // 400 KB of heap to send; the destination keeps room for its small writes only.
      rig = await startRig(broker, { phoneDataDir: data, heap: { count: 200, size: 2000 } });
      const filler = join(mnt, 'filler');
      fillDisk(filler, 96 * 1024);
      const out = await runFault(rig, { expect: 'origin' });
      expect(out.migrated.report!.message).toMatch(/STORE_NO_SPACE/);
      // Room again: the same move goes through, with everything applied so far.
      rmSync(filler);
      const m = await migrate(rig.pi, INSTANCE, rig.phone.id);
      checkReport(m, 'destination');
      expect(await rig.phone.state()).toBe('running');
      expect(await rig.pi.state()).toBe('moved');
      await checkLedger(rig.phone, rig.stream);
    } finally {
      await rig?.close();
      rig = undefined;
      unmount();
      dirs.cleanup();
    }
  }, 240_000);
});
