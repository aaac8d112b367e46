import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startMosquitto, type TestBroker } from '../helpers/brokers.js';
import { runFault, startRig, type Rig } from './fault-helpers.js';

describe('mosq', () => {
  let broker: TestBroker;
  let rig: Rig | undefined;
  beforeEach(async () => { broker = await startMosquitto(); });
  afterEach(async () => { await rig?.close(); rig = undefined; await broker.stop(); });
  it.each([['prepared', 'origin'], ['decided', 'destination']] as const)('kill %s', async (step, where) => {
    rig = await startRig(broker, { originFault: `origin:${step}:kill` });
    const out = await runFault(rig, { kill: 'origin', expect: where });
    expect(out.ledger.length).toBeGreaterThan(40);
  }, 120_000);
});
