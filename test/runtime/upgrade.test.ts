/**
 * `ferry install` of a new version keeps running instances on their code and says so;
 * `ferry upgrade` moves one to the installed code on the same heap through `onUpgrade`,
 * and goes back to the old code and state when anything on the way fails. An instance
 * that opens with other code at a resume or an agent start runs `onUpgrade` too.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/runtime/agent.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { caughtAsync } from '../helpers/ferry-error.js';
import { Temp } from '../heap/graph.js';

const temp = new Temp();
let broker: TestBroker;
const agents: Agent[] = [];
beforeAll(async () => {
  broker = await startAedes();
});
afterAll(async () => {
  await broker.stop();
});
afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  temp.cleanup();
});

/** Version 1 keeps a number; later versions keep `{ value, unit }` and say which version answered. */
const V1 = `export default { name: 'meter', version: '1', init(ctx) { ctx.root.count = 0; },
  handlers: { add(ctx, m) { ctx.root.count += m.n; return ctx.root.count; }, get(ctx) { return { v: 1, count: ctx.root.count }; } } };`;
const v2 = (upgrade: string) => `export default { name: 'meter', version: '2',
  init(ctx) { ctx.root.reading = { value: 0, unit: 'kWh' }; },
  onUpgrade(ctx, m) { ${upgrade} },
  handlers: { add(ctx, m) { ctx.root.reading.value += m.n; return ctx.root.reading.value; }, get(ctx) { return { v: 2, reading: ctx.root.reading, upgrades: ctx.root.upgrades ?? [] }; } } };`;
const GOOD = `ctx.root.reading = { value: ctx.root.count, unit: 'kWh' }; delete ctx.root.count; ctx.root.upgrades ??= []; ctx.root.upgrades.push(m);`;
const THROWS = `ctx.root.reading = { value: -1, unit: 'x' }; throw new Error('cannot convert');`;
const LOOPS = `ctx.root.count = -5; for (;;) {}`;

function module(source: string, name = 'meter.mjs'): string {
  const f = join(temp.dir('module'), name);
  writeFileSync(f, source);
  return f;
}

async function agent(dataDir: string): Promise<Agent> {
  const a = await Agent.start({ dataDir, brokerUrl: broker.url, log: () => undefined, handlerTimeoutMs: 200 });
  agents.push(a);
  return a;
}

async function close(a: Agent): Promise<void> {
  agents.splice(agents.indexOf(a), 1);
  await a.close();
}

describe('upgrading an instance to a new version of its app', () => {
  it('install says which instances keep the old code; upgrade runs onUpgrade once on the same heap', async () => {
    const a = await agent(temp.dir('agent'));
    await a.install(module(V1));
    await a.run('meter');
    await a.call('meter', 'add', { n: 5 });
    const inst = await a.install(module(v2(GOOD)));
    expect(inst).toEqual({ name: 'meter', version: '2', replaced: true, oldCodeRunning: ['meter'] });
    // Still the old code until upgraded.
    expect(await a.call('meter', 'get', null)).toEqual({ v: 1, count: 5 });
    const up = await a.upgrade('meter');
    expect([up.from, up.to, up.upgraded, up.state]).toEqual(['1', '2', true, 'running']);
    expect(await a.call('meter', 'get', null)).toEqual({ v: 2, reading: { value: 5, unit: 'kWh' }, upgrades: [{ from: '1', to: '2' }] });
    expect(await a.call('meter', 'add', { n: 1 })).toBe(6);
    // Again: nothing to do, onUpgrade does not run twice.
    expect((await a.upgrade('meter')).upgraded).toBe(false);
    expect(((await a.call('meter', 'get', null)) as { upgrades: unknown[] }).upgrades).toHaveLength(1);
    // And it survives a restart without running again.
    const dataDir = a.options.dataDir;
    await close(a);
    const b = await agent(dataDir);
    expect(await b.call('meter', 'get', null)).toEqual({ v: 2, reading: { value: 6, unit: 'kWh' }, upgrades: [{ from: '1', to: '2' }] });
  });

  it.each([
    ['onUpgrade throws', v2(THROWS), 'APP_HANDLER_FAILED'],
    ['onUpgrade runs past its time limit', v2(LOOPS), 'APP_TIMEOUT'],
    ['the module needs more heap than the profile gives', v2(GOOD).replace("version: '2',", "version: '2', requirements: { minHeapBytes: 2 ** 40 },"), 'HEAP_NO_MEMORY'],
  ])('%s: APP_UPGRADE_FAILED, and the instance runs its old code on its old state', async (_what, source, cause) => {
    const a = await agent(temp.dir('agent'));
    await a.install(module(V1));
    await a.run('meter');
    await a.call('meter', 'add', { n: 7 });
    const before = a.view('meter').checkpoint;
    await a.install(module(source));
    const e = await caughtAsync(() => a.upgrade('meter'));
    expect(e.code).toBe('APP_UPGRADE_FAILED');
    expect(e.message).toContain(cause);
    expect(e.message).toContain('from version 1 to 2');
    expect(a.view('meter').state).toBe('running');
    expect(await a.call('meter', 'get', null)).toEqual({ v: 1, count: 7 });
    expect(await a.call('meter', 'add', { n: 1 })).toBe(8);
    expect(a.view('meter').checkpoint).toBeGreaterThan(before);
  });

  it('a suspended instance opens with the installed code at resume; a failing onUpgrade leaves it failed with its heap unchanged until a fixed module', async () => {
    const a = await agent(temp.dir('agent'));
    await a.install(module(V1));
    await a.run('meter');
    await a.call('meter', 'add', { n: 2 });
    await a.suspend('meter');
    expect((await caughtAsync(() => a.upgrade('meter'))).code).toBe('APP_NOT_RUNNING');
    await a.install(module(v2(THROWS)));
    expect(await a.install(module(v2(THROWS)))).toMatchObject({ oldCodeRunning: [] });
    const e = await caughtAsync(() => a.resume('meter'));
    expect(e.code).toBe('APP_UPGRADE_FAILED');
    await a.install(module(v2(GOOD)));
    await a.resume('meter');
    expect(await a.call('meter', 'get', null)).toEqual({ v: 2, reading: { value: 2, unit: 'kWh' }, upgrades: [{ from: '1', to: '2' }] });
  });

  it('an agent restarted after an install runs onUpgrade for the instances that ran the old code', async () => {
    const dataDir = temp.dir('agent');
    const a = await agent(dataDir);
    await a.install(module(V1));
    await a.run('meter');
    await a.call('meter', 'add', { n: 3 });
    await a.install(module(v2(GOOD)));
    await close(a);
    const b = await agent(dataDir);
    expect(await b.call('meter', 'get', null)).toEqual({ v: 2, reading: { value: 3, unit: 'kWh' }, upgrades: [{ from: '1', to: '2' }] });
  });

  it('an unknown instance is APP_UNKNOWN', async () => {
    const a = await agent(temp.dir('agent'));
    expect((await caughtAsync(() => a.upgrade('nope'))).code).toBe('APP_UNKNOWN');
  });
});
