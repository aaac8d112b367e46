import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/runtime/agent.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { caughtAsync } from '../helpers/ferry-error.js';
import { Temp } from '../heap/graph.js';

/**
 * A device's room (maxInstances) and an app's word-size requirement: what peer choice reads from
 * a device (agent/fleet/DESIGN.md, "Capacity"), enforced by the device itself.
 */
const temp = new Temp();
const agents: Agent[] = [];
let broker: TestBroker;
beforeAll(async () => (broker = await startAedes()));
afterAll(async () => broker.stop());
afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  temp.cleanup();
});

const app = (name: string, requirements = '{}') => {
  const file = join(temp.dir('app'), `${name}.mjs`);
  writeFileSync(file, `export default { name: '${name}', version: '1', requirements: ${requirements}, handlers: { ping() { return 'pong'; } } };`);
  return file;
};

async function agent(o: { maxInstances?: number; profile?: string; dataDir?: string } = {}): Promise<Agent> {
  const a = await Agent.start({ dataDir: o.dataDir ?? temp.dir('agent'), brokerUrl: broker.url, log: () => undefined, ...o });
  agents.push(a);
  return a;
}

describe('capacity and word size', () => {
  it('refuses a run past maxInstances with AGENT_FULL naming it; a stopped instance frees its place; a restart brings back what ran', async () => {
    const dir = temp.dir('agent');
    const a = await agent({ maxInstances: 2, dataDir: dir });
    await a.install(app('pinger'));
    await a.run('pinger', 'p1');
    await a.run('pinger', 'p2');
    const e = await caughtAsync(() => a.run('pinger', 'p3'));
    expect(e.code).toBe('AGENT_FULL');
    expect(e.details.field).toBe('maxInstances');
    expect(e.message).toMatch(/runs 2 instances, its most \(maxInstances 2\)/);
    expect(a.apps().instances.map((i) => i.instance).sort()).toEqual(['p1', 'p2']);
    await a.stop('p1');
    await a.run('pinger', 'p3');
    // Resuming what ran at the last start is never refused (the places were taken already).
    agents.splice(agents.indexOf(a), 1);
    await a.close();
    const again = await agent({ maxInstances: 2, dataDir: dir });
    expect(again.apps().instances.filter((i) => i.state === 'running').map((i) => i.instance).sort()).toEqual(['p2', 'p3']);
    expect(again.moves.placesTaken()).toBe(2);
  });

  it('an app that requires 32-bit words does not start on a 64-bit profile; its definition is checked', async () => {
    const a = await agent({ profile: 'rpi-4b' });
    await a.install(app('small', '{ wordBits: 32 }'));
    const e = await caughtAsync(() => a.run('small'));
    expect(e.code).toBe('APP_UNSUPPORTED');
    expect(e.details.field).toBe('requirements.wordBits');
    const bad = await caughtAsync(() => a.install(app('odd', '{ wordBits: 48 }')));
    expect(bad.details.field).toBe('app.requirements.wordBits');
    const phone = await agent({ profile: 'j2me-phone' });
    await phone.install(app('small', '{ wordBits: 32 }'));
    await phone.run('small');
    expect(phone.apps().instances[0]!.state).toBe('running');
  });
});
