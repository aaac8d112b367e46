/**
 * Faults of the network under a handoff: the destination's link cut while the heap is on its way
 * and at the switch (the phone behind the link emulator, on a slow link, with a heap of a few
 * hundred KB so the cut lands mid-move), and the broker restarted mid-move (Mosquitto with
 * persistence: sessions and queued requests survive it, connections do not). Either outcome is
 * allowed, moved or aborted; what is checked is that it is one of them, said so, and that after
 * recovery the instance runs on exactly one device with every request applied once, in order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { controlRequest } from '../../agent/cli/control-client.js';
import { startAedes, startMosquitto, type MosquittoBroker, type TestBroker } from '../helpers/brokers.js';
import { until, type Device } from '../bridge/helpers.js';
import { runFault, startRig, type Rig } from './fault-helpers.js';

/** 400 KB of heap at 2 Mbit/s: the first round alone takes well over a second. */
const HEAP = { count: 200, size: 2000 };
const LINK = { bandwidthBps: 2_000_000, latencyMs: 5, jitterMs: 0, lossRate: 0 };

/** The origin's move under way, as its control socket reports it (undefined when none). */
async function activeMove(d: Device): Promise<{ phase: string; bytesSent: number; round: number } | undefined> {
  try {
    const l = (await controlRequest(d.dataDir, 'migrations', {}, 2000)) as { active: Array<{ phase: string; bytesSent: number; round: number }> };
    return l.active[0];
  } catch {
    return undefined;
  }
}

/** Resolves once the phone has received `bytes` more from the broker than when called (the move's data is on its way). */
async function midTransfer(rig: Rig, bytes: number): Promise<void> {
  const from = rig.link!.stats.bytesDown;
  await until('the heap on its way to the phone', () => rig.link!.stats.bytesDown - from > bytes, 60_000);
}

describe('handoff faults: the link cut', () => {
  let broker: TestBroker | undefined;
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
    await broker?.stop();
  });

  it('during pre-copy: the move aborts or completes, and the instance runs on exactly one device', async () => {
    broker = await startAedes({ persistent: true });
    rig = await startRig(broker, { link: LINK, heap: HEAP });
    let cutIn: string | undefined;
    const out = await runFault(rig, {
      during: async (r) => {
        await midTransfer(r, 100_000);
        cutIn = (await activeMove(r.pi))?.phase;
        r.link!.cutAll();
      },
      // An abort the cut kept from the destination: it asks its origin within seconds and undoes
      // the move (well before its 60 s idle limit: records the cut lost end the channel's session
      // at both ends, and the next question makes a new one).
      settleMs: 30_000,
    });
    expect(cutIn).toBe('precopy');
    console.log('precopy cut:', JSON.stringify(out.migrated.report ?? out.migrated.error));
    expect(rig.link!.stats.cuts).toBeGreaterThan(0);
    expect(out.ledger.length).toBeGreaterThan(20);
  }, 240_000);

  it('at the switch: the move aborts or completes, and the instance runs on exactly one device', async () => {
    broker = await startAedes({ persistent: true });
    rig = await startRig(broker, { link: LINK, heap: HEAP });
    let cutIn: string | undefined;
    const out = await runFault(rig, {
      during: async (r) => {
        // Polled on the origin's control socket: cut the moment it pauses for the switch.
        await until(
          'the switch',
          async () => {
            const a = await activeMove(r.pi);
            if (a?.phase !== 'switch') return false;
            r.link!.cutAll();
            cutIn = a.phase;
            return true;
          },
          60_000,
        );
      },
      settleMs: 30_000,
    });
    expect(cutIn).toBe('switch');
    console.log('switch cut:', JSON.stringify(out.migrated.report ?? out.migrated.error));
    expect(out.ledger.length).toBeGreaterThan(20);
  }, 240_000);
});

describe('handoff faults: the broker restarted mid-move (Mosquitto with persistence)', () => {
  let broker: MosquittoBroker | undefined;
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
    await broker?.stop();
  });

  it('the move aborts or completes, and the instance runs on exactly one device with every request applied once', async () => {
    broker = await startMosquitto({ persistence: true });
    rig = await startRig(broker, { link: LINK, heap: HEAP });
    let restartedIn: string | undefined;
    const out = await runFault(rig, {
      during: async (r) => {
        await midTransfer(r, 100_000);
        restartedIn = (await activeMove(r.pi))?.phase;
        await broker!.restart();
      },
      // The client's own connection went down with the broker: answers published meanwhile are
      // lost to it, and it asks again with the same ids (each is applied once all the same).
      resend: true,
      settleMs: 30_000,
    });
    expect(restartedIn).toBe('precopy');
    console.log('broker restart:', JSON.stringify(out.migrated.report ?? out.migrated.error));
    expect(out.ledger.length).toBeGreaterThan(20);
  }, 300_000);
});
