/**
 * Faults at every step of the handoff, the origin's side: its agent SIGKILLed at each step of the
 * move (FERRY_FAULT=origin:<step>:kill) and restarted on the same data directory. Before the
 * durable decision the instance stays on the origin (the destination undoes what it staged, at
 * once when it asks and hears "aborted", or when its origin goes quiet); from the decision on it
 * runs on the destination, which asks the origin for the decision if the commit never came.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { runFault, startRig, type Expect, type Rig } from './fault-helpers.js';

describe('handoff faults: the origin killed', () => {
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

  // [step, where the instance runs after recovery, how long recovery may take]
  const steps: Array<[string, Expect, number]> = [
    // Not prepared when the origin died: the destination, unanswered, asks every 4 s, and undoes
    // the incoming move once the restarted origin says it holds no such move (well before its
    // 60 s idle limit); meanwhile it never runs it.
    ['prepare', 'origin', 30_000],
    ['precopy', 'origin', 30_000],
    ['paused', 'origin', 30_000],
    // Prepared, no decision: the destination asks, the restarted origin says "aborted".
    ['prepared', 'origin', 45_000],
    // Decided: the destination asks and hears "moved".
    ['decided', 'destination', 45_000],
    ['handedover', 'destination', 45_000],
    ['committed', 'destination', 45_000],
  ];

  it.each(steps)('SIGKILL at %s: the instance runs on the %s, every request applied once, in order', async (step, where, settleMs) => {
    rig = await startRig(broker, { originFault: `origin:${step}:kill` });
    const out = await runFault(rig, { kill: 'origin', expect: where, settleMs });
    expect(out.ledger.length).toBeGreaterThan(40);
  }, 180_000);

  it('SIGKILL at precopy, then the move again at once: it replaces the undecided one at the destination and goes through', async () => {
    rig = await startRig(broker, { originFault: 'origin:precopy:kill' });
    const out = await runFault(rig, { kill: 'origin', retry: true });
    expect(out.runsOn).toBe(rig.phone);
  }, 180_000);
});
