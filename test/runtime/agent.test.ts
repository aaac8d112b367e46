import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { Agent } from '../../agent/runtime/agent.js';
import { ControlServer, controlSocketPath } from '../../agent/runtime/control-server.js';
import type { AgentOptions } from '../../agent/runtime/agent-options.js';
import { getProfile } from '../../hw-profiles/index.js';
import { appMailboxTopic, connectBus, ENVELOPE_VERSION, inboxTopic, type Envelope, type MqttBus } from '../../transports/index.js';
import { BROKERS, startAedes, type TestBroker } from '../helpers/brokers.js';
import { caughtAsync } from '../helpers/ferry-error.js';
import { slowed } from '../helpers/scale.js';
import { Temp } from '../heap/graph.js';
import { until } from '../services/helpers.js';

const temp = new Temp();
const agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  temp.cleanup();
});

const LEDGER = new URL('./fixtures/ledger.mjs', import.meta.url).pathname;
const SAMPLE = (name: string) => new URL(`../../apps/${name}.mjs`, import.meta.url).pathname;

async function agent(broker: TestBroker, o: Partial<AgentOptions> = {}): Promise<Agent> {
  // 200 ms: a handler that loops fails fast (a runaway guard, longer in the emulated ARM64 job).
  const a = await Agent.start({ dataDir: o.dataDir ?? temp.dir('agent'), brokerUrl: broker.url, log: () => undefined, handlerTimeoutMs: slowed(200), leaseWaitMs: 2000, ...o });
  agents.push(a);
  return a;
}

async function closeAgent(a: Agent): Promise<void> {
  agents.splice(agents.indexOf(a), 1);
  await a.close();
}

describe.each(BROKERS)('agent (%s)', (_name, start) => {
  let broker: TestBroker;
  let client: MqttBus;
  const answers = new Map<string, Envelope[]>();
  beforeAll(async () => {
    broker = await start();
    client = await connectBus({ url: broker.url, deviceId: 'test-client', maxInFlight: 64 });
    await client.subscribe(inboxTopic('test-client'), (env) => {
      if (env.corr) answers.set(env.corr, [...(answers.get(env.corr) ?? []), env]);
    });
  });
  afterAll(async () => {
    await client.close();
    await broker.stop();
  });

  /** Publishes an app.call with a chosen id (a client retrying sends the same id). */
  const send = (instance: string, id: string, handler: string, message: unknown) =>
    client.publishEnvelope(appMailboxTopic(instance), { v: ENVELOPE_VERSION, type: 'app.call', id, from: 'test-client', replyTo: inboxTopic('test-client'), ts: Date.now(), body: { handler, message } });

  it('answers mailbox requests, applies a repeated id once, and queues requests while suspended', async () => {
    const a = await agent(broker);
    await a.install(LEDGER);
    await a.run('ledger');
    const tag = `q${Date.now()}`;
    for (let i = 0; i < 20; i++) await send('ledger', `${tag}-${i}`, 'apply', { n: i });
    await until(() => answers.get(`${tag}-19`) !== undefined, 5000, 'answers');
    // The same id again: the recorded answer, not a second run.
    await send('ledger', `${tag}-5`, 'apply', { n: 5 });
    await until(() => (answers.get(`${tag}-5`) ?? []).length === 2, 5000, 'repeat answer');
    expect(answers.get(`${tag}-5`)!.map((e) => e.body)).toEqual([{ n: 5, length: 6 }, { n: 5, length: 6 }]);
    expect(await a.call('ledger', 'list', null)).toEqual([...Array(20).keys()]);

    await a.suspend('ledger');
    for (let i = 20; i < 25; i++) await send('ledger', `${tag}-${i}`, 'apply', { n: i });
    await new Promise((r) => setTimeout(r, 200));
    expect(answers.get(`${tag}-20`)).toBeUndefined();
    const e = await caughtAsync(() => a.call('ledger', 'list', null));
    expect(e.code).toBe('APP_NOT_RUNNING');
    await a.resume('ledger');
    await until(() => answers.get(`${tag}-24`) !== undefined, 5000, 'queued answers');
    expect(await a.call('ledger', 'list', null)).toEqual([...Array(25).keys()]);
    expect(a.view('ledger').mailbox!.commits).toBeGreaterThan(0);
  });

  it('a malformed mailbox request is answered with APP_BAD_REQUEST and the app keeps serving', async () => {
    const a = await agent(broker);
    await a.install(LEDGER);
    await a.run('ledger', 'ledger-b');
    const tag = `b${Date.now()}`;
    await client.publishEnvelope(appMailboxTopic('ledger-b'), { v: ENVELOPE_VERSION, type: 'app.poke', id: `${tag}-1`, from: 'test-client', replyTo: inboxTopic('test-client'), ts: Date.now(), body: {} });
    await client.publishEnvelope(appMailboxTopic('ledger-b'), { v: ENVELOPE_VERSION, type: 'app.call', id: `${tag}-2`, from: 'test-client', replyTo: inboxTopic('test-client'), ts: Date.now(), body: { handler: 7 } });
    await client.publishRaw(appMailboxTopic('ledger-b'), Buffer.from('not cbor at all'));
    await send('ledger-b', `${tag}-3`, 'apply', { n: 1 });
    await until(() => answers.has(`${tag}-3`), 5000, 'the good request');
    expect(answers.get(`${tag}-1`)![0]!.body).toMatchObject({ code: 'APP_BAD_REQUEST', field: 'envelope.type' });
    expect(answers.get(`${tag}-2`)![0]!.body).toMatchObject({ code: 'APP_BAD_REQUEST', field: 'body.handler' });
    expect(a.runner('ledger-b').stats.dropped).toBe(3);
    expect(await a.call('ledger-b', 'list', null)).toEqual([1]);
  });

  it('a handler that throws, loops or stores a function leaves the heap unchanged with a typed error; other apps keep serving', async () => {
    const a = await agent(broker);
    await a.install(LEDGER);
    await a.install(SAMPLE('counter'));
    await a.run('ledger', 'ledger-f');
    await a.run('counter');
    await a.call('ledger-f', 'apply', { n: 1 });
    const tag = `f${Date.now()}`;
    for (const [i, h] of ['throws', 'loops', 'storesFunction'].entries()) await send('ledger-f', `${tag}-${i}`, h, null);
    await until(() => answers.has(`${tag}-2`), 5000, 'error answers');
    expect([0, 1, 2].map((i) => (answers.get(`${tag}-${i}`)![0]!.body as { code: string }).code)).toEqual(['APP_HANDLER_FAILED', 'APP_TIMEOUT', 'HEAP_BAD_VALUE']);
    expect(answers.get(`${tag}-0`)![0]!.type).toBe('error');
    expect(await a.call('ledger-f', 'list', null)).toEqual([1]);
    expect(await a.call('counter', 'increment', { by: 2 })).toEqual({ count: 2 });
    for (const [h, code] of [['throws', 'APP_HANDLER_FAILED'], ['loops', 'APP_TIMEOUT'], ['storesFunction', 'HEAP_BAD_VALUE'], ['missing', 'APP_NO_HANDLER']]) {
      const e = await caughtAsync(() => a.call('ledger-f', h!, null));
      expect(e.code).toBe(code);
    }
    expect(await a.call('ledger-f', 'list', null)).toEqual([1]);
  });

  it('a runaway request inside a burst of requests: those before and after it are applied once, in order', async () => {
    const a = await agent(broker);
    await a.install(LEDGER);
    await a.run('ledger', 'ledger-burst');
    const tag = `u${Date.now()}`;
    const handlers = ['apply', 'apply', 'loops', 'apply', 'throws', 'apply'];
    await Promise.all(handlers.map((h, i) => send('ledger-burst', `${tag}-${i}`, h, { n: i })));
    await until(() => handlers.every((_, i) => answers.has(`${tag}-${i}`)), 10_000, 'every answer');
    expect(handlers.map((_, i) => answers.get(`${tag}-${i}`)![0]!.type)).toEqual(['app.call.ok', 'app.call.ok', 'error', 'app.call.ok', 'error', 'app.call.ok']);
    expect((answers.get(`${tag}-2`)![0]!.body as { code: string }).code).toBe('APP_TIMEOUT');
    expect(await a.call('ledger-burst', 'list', null)).toEqual([0, 1, 3, 5]);
    expect(answers.get(`${tag}-5`)![0]!.body).toEqual({ n: 5, length: 4 });
  });

  it('ctx.send reaches the other instance once, through its mailbox, after the sender committed', async () => {
    const a = await agent(broker);
    await a.install(LEDGER);
    await a.run('ledger', 'alice');
    await a.run('ledger', 'bob');
    await a.call('alice', 'tell', { to: 'bob', n: 1 });
    await a.call('alice', 'tell', { to: 'bob', n: 2 });
    await until(() => a.view('bob').applied === 2, 5000, 'delivery');
    expect(await a.call('bob', 'inbox', null)).toEqual([{ from: 'alice', n: 1 }, { from: 'alice', n: 2 }]);
  });

  it('restarting the agent resumes running instances from their checkpoints; stopped ones stay stopped', async () => {
    const dataDir = temp.dir('agent');
    const a = await agent(broker, { dataDir });
    await a.install(LEDGER);
    await a.run('ledger', 'keep');
    await a.run('ledger', 'halt');
    await a.call('keep', 'apply', { n: 7 });
    await a.stop('halt');
    await closeAgent(a);
    const b = await agent(broker, { dataDir });
    expect(b.view('keep').state).toBe('running');
    expect(b.view('halt').state).toBe('stopped');
    expect(await b.call('keep', 'list', null)).toEqual([7]);
    await b.resume('halt');
    expect(b.view('halt').state).toBe('running');
  });
});

describe('agent: apps, checkpoints and bad input', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startAedes();
  });
  afterAll(() => broker.stop());

  it('browses, restores and removes checkpoints; resume --version goes back in time', async () => {
    const a = await agent(broker);
    await a.install(SAMPLE('counter'));
    await a.run('counter');
    for (let i = 0; i < 3; i++) await a.call('counter', 'increment', null);
    const list = a.checkpoints('counter');
    expect(list.length).toBeGreaterThanOrEqual(3);
    expect(list.filter((c) => c.current)).toHaveLength(1);
    const head = list.find((c) => c.current)!.version;
    await a.restore('counter', head - 2);
    expect(await a.call('counter', 'get', null)).toEqual({ count: 1 });
    const back = a.checkpoints('counter').find((c) => c.current)!.version;
    await a.call('counter', 'increment', { by: 10 });
    expect(await a.call('counter', 'get', null)).toEqual({ count: 11 });
    await a.resume('counter', back);
    expect(await a.call('counter', 'get', null)).toEqual({ count: 1 });
    await a.resume('counter', head);
    expect(await a.call('counter', 'get', null)).toEqual({ count: 3 });
    const old = a.checkpoints('counter').find((c) => !c.current)!.version;
    a.removeCheckpoint('counter', old);
    expect(a.checkpoints('counter').some((c) => c.version === old)).toBe(false);
    expect((await caughtAsync(async () => a.removeCheckpoint('counter', a.checkpoints('counter').find((c) => c.current)!.version))).code).toBe('BAD_OPTION');
    expect((await caughtAsync(() => a.restore('counter', 99_999))).code).toBe('STORE_UNKNOWN_VERSION');
    await a.remove('counter');
    expect(a.apps()).toEqual({ apps: [], instances: [] });
    expect(a.store.hasApp('counter')).toBe(false);
  });

  it('restores a running instance to its oldest kept checkpoint; a version not kept leaves it running at its newest', async () => {
    const a = await agent(broker, { keepVersions: 4 });
    await a.install(SAMPLE('counter'));
    await a.run('counter');
    for (let i = 0; i < 6; i++) await a.call('counter', 'increment', null);
    const kept = a.checkpoints('counter');
    expect(kept).toHaveLength(4);
    const oldest = kept[0]!.version;
    const count = 6 - (kept.at(-1)!.version - oldest);
    await a.restore('counter', oldest);
    expect(await a.call('counter', 'get', null)).toEqual({ count });
    const e = await caughtAsync(() => a.resume('counter', 1));
    expect(e.code).toBe('STORE_UNKNOWN_VERSION');
    expect(a.view('counter').state).toBe('running');
    expect(await a.call('counter', 'get', null)).toEqual({ count });
  });

  it('lifecycle commands run one at a time: two resumes at once open the heap once', async () => {
    const a = await agent(broker);
    await a.install(SAMPLE('counter'));
    await a.run('counter');
    await a.suspend('counter');
    const results = await Promise.allSettled([a.resume('counter'), a.resume('counter'), a.suspend('counter'), a.resume('counter')]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(((results[1] as PromiseRejectedResult).reason as { code: string }).code).toBe('APP_EXISTS');
    expect(a.view('counter').state).toBe('running');
    expect(await a.call('counter', 'increment', null)).toEqual({ count: 1 });
  });

  it('compiles a TypeScript app at install', async () => {
    const a = await agent(broker);
    expect(await a.install(new URL('./fixtures/typed.ts', import.meta.url).pathname)).toEqual({ name: 'typed', version: '0.1.0', replaced: false, oldCodeRunning: [] });
    await a.run('typed');
    expect(await a.call('typed', 'add', { by: 4 })).toBe(4);
  });

  it.each([
    ['syntax.mjs', 'export default {', 'APP_BAD_MODULE', 'module'],
    ['imports.mjs', "import fs from 'node:fs'; export default {}", 'APP_BAD_MODULE', 'module'],
    ['nodefault.mjs', 'export const x = 1;', 'APP_BAD_MODULE', 'module'],
    ['noname.mjs', 'export default { version: "1", handlers: { a() {} } }', 'APP_BAD_DEFINITION', 'app.name'],
    ['badtimer.mjs', 'export default { name: "t", version: "1", handlers: { a() {} }, timers: { x: { everyMs: 1, handler: "a" } } }', 'APP_BAD_DEFINITION', 'app.timers.x.everyMs'],
    ['async.mjs', 'export default { name: "c", version: "1", handlers: { get() {}, async increment(ctx) { return 1; } } }', 'APP_BAD_DEFINITION', 'app.handlers.increment'],
    ['asyncinit.mjs', 'export default { name: "c", version: "1", init: async (ctx) => {}, handlers: { a() {} } }', 'APP_BAD_DEFINITION', 'app.init'],
    ['asynchook.ts', 'export default { name: "c", version: "1", handlers: { a() {} }, async onLeaseLost(ctx: unknown) {} }', 'APP_BAD_DEFINITION', 'app.onLeaseLost'],
    ['readme.txt', 'hello', 'APP_BAD_MODULE', 'path'],
    ['broken.ts', 'export default { name: "b", version: "1", handlers: { a( {} } }', 'APP_BAD_MODULE', 'path'],
  ])('refuses %s at install (%s, %s) and stores nothing', async (file, text, code, field) => {
    const a = await agent(broker);
    const path = join(temp.dir('mod'), file);
    writeFileSync(path, text);
    const e = await caughtAsync(() => a.install(path));
    expect([e.code, e.details.field]).toEqual([code, field]);
    expect(a.apps().apps).toEqual([]);
  });

  it('refuses at load a module with an async handler that is already in the data directory', async () => {
    const dataDir = temp.dir('agent');
    const a = await agent(broker, { dataDir });
    await a.install(SAMPLE('counter'));
    // A module kept before async handlers were refused at install.
    writeFileSync(join(dataDir, 'apps', 'counter.mjs'), 'export default { name: "counter", version: "1.0.0", handlers: { async increment(ctx) { return 1; } } }');
    const e = await caughtAsync(() => a.run('counter'));
    expect([e.code, e.details.field]).toEqual(['APP_BAD_DEFINITION', 'app.handlers.increment']);
    expect(a.store.hasApp('counter')).toBe(false);
  });

  it('refuses unknown apps, bad instance ids, a second run, and an app needing more heap than the profile gives', async () => {
    const a = await agent(broker, { profile: 'palm-pda' });
    expect((await caughtAsync(() => a.run('nope'))).code).toBe('APP_UNKNOWN');
    await a.install(LEDGER);
    expect((await caughtAsync(() => a.run('ledger', 'Bad Id'))).details.field).toBe('instance');
    await a.run('ledger');
    expect((await caughtAsync(() => a.run('ledger'))).code).toBe('APP_EXISTS');
    const big = join(temp.dir('mod'), 'big.mjs');
    writeFileSync(big, 'export default { name: "big", version: "1", requirements: { minHeapBytes: 1048576 }, handlers: { a() {} } }');
    await a.install(big);
    const e = await caughtAsync(() => a.run('big'));
    expect([e.code, e.details.field]).toEqual(['HEAP_NO_MEMORY', 'requirements.minHeapBytes']);
  });

  it.each([
    [{ dataDir: '' }, 'options.dataDir'],
    [{ handlerTimeoutMs: 5 }, 'options.handlerTimeoutMs'],
    [{ brokerUrl: 'http://x' }, 'options.brokerUrl'],
    [{ durability: 'sometimes' }, 'options.durability'],
    [{ rememberReplies: 8 }, 'options.rememberReplies'],
    [{ replayHorizonMs: 59_999 }, 'options.replayHorizonMs'],
    [{ replayHorizonMs: 2_592_000_001 }, 'options.replayHorizonMs'],
    [{ replayHorizonMs: '1h' }, 'options.replayHorizonMs'],
    [{ replayHorizonMs: 90_000.5 }, 'options.replayHorizonMs'],
    [{ colour: 'blue' }, 'options.colour'],
  ])('refuses agent options %j naming %s', async (o, field) => {
    const e = await caughtAsync(() => Agent.start({ dataDir: temp.dir('agent'), log: () => undefined, ...(o as object) } as AgentOptions));
    expect([e.code, e.details.field]).toEqual(['BAD_OPTION', field]);
  });

  it('runs timers as calls and the onResume hook at each resume', async () => {
    const a = await agent(broker);
    await a.install(new URL('./fixtures/ticker.mjs', import.meta.url).pathname);
    await a.run('ticker');
    await until(() => (a.view('ticker').applied ?? 0) >= 3, 5000, 'ticks');
    const g = (await a.call('ticker', 'get', null)) as { ticks: number; lastTimer: string; resumes: number };
    expect(g.ticks).toBeGreaterThanOrEqual(3);
    expect(g.lastTimer).toBe('beat');
    expect(g.resumes).toBe(1);
    await a.suspend('ticker');
    await a.resume('ticker');
    expect(((await a.call('ticker', 'get', null)) as { resumes: number }).resumes).toBe(2);
  });

  it('ctx.after fires once, also when the agent restarts before it is due', async () => {
    const dataDir = temp.dir('agent');
    const a = await agent(broker, { dataDir });
    await a.install(new URL('./fixtures/ticker.mjs', import.meta.url).pathname);
    await a.run('ticker');
    await a.call('ticker', 'remind', { ms: 50, note: 'soon' });
    await a.call('ticker', 'remind', { ms: 600, note: 'later' });
    let rings: string[] = [];
    for (let t = 0; t < 100 && rings.length < 1; t++) {
      rings = (await a.call('ticker', 'rings', null)) as string[];
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(rings).toEqual(['soon']);
    await closeAgent(a);
    const b = await agent(broker, { dataDir });
    for (let t = 0; t < 100 && rings.length < 2; t++) {
      rings = (await b.call('ticker', 'rings', null)) as string[];
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(rings).toEqual(['soon', 'later']);
    await new Promise((r) => setTimeout(r, 200));
    expect(await b.call('ticker', 'rings', null)).toEqual(['soon', 'later']);
    expect((await caughtAsync(() => b.call('ticker', 'remind', { ms: -1, note: 'x' }))).details.field).toBe('ctx.after.ms');
  });

  it('refuses to start on a registry that is not one, naming it, and changes nothing', async () => {
    const dataDir = temp.dir('agent');
    writeFileSync(join(dataDir, 'registry.json'), '{"format": "something else"');
    const e = await caughtAsync(() => agent(broker, { dataDir }));
    expect([e.code, e.details.field]).toEqual(['STORE_CORRUPT', 'registry']);
    writeFileSync(join(dataDir, 'registry.json'), '{"format": "something else"}');
    const e2 = await caughtAsync(() => agent(broker, { dataDir }));
    expect([e2.code, e2.details.field]).toEqual(['STORE_CORRUPT', 'registry.format']);
    const reg = (apps: object, instances: object) => writeFileSync(join(dataDir, 'registry.json'), JSON.stringify({ format: 'ferry.registry/1', apps, instances }));
    reg({}, { x: null });
    expect((await caughtAsync(() => agent(broker, { dataDir }))).details.field).toBe('registry.instances.x.instance');
    reg({ evil: { name: 'evil', version: '1', file: '../../etc/x', installedAt: 1 } }, {});
    expect((await caughtAsync(() => agent(broker, { dataDir }))).details.field).toBe('registry.apps.evil.file');
    reg({}, { c: { instance: 'c', app: 'counter', state: 'dancing', since: 1 } });
    expect((await caughtAsync(() => agent(broker, { dataDir }))).details.field).toBe('registry.instances.c.state');
    // A handoff's marks (bridge DESIGN.md, "Two-sided commit"): present exactly with moved/incoming, whole.
    reg({}, { c: { instance: 'c', app: 'counter', state: 'moved', since: 1 } });
    expect((await caughtAsync(() => agent(broker, { dataDir }))).details.field).toBe('registry.instances.c.move');
    reg({}, { c: { instance: 'c', app: 'counter', state: 'running', since: 1, move: { id: 'x', peer: 'p', version: 1, at: 1 } } });
    expect((await caughtAsync(() => agent(broker, { dataDir }))).details.field).toBe('registry.instances.c.move');
    reg({}, { c: { instance: 'c', app: 'counter', state: 'incoming', since: 1, move: { id: 'x', peer: 'p', version: 'one', at: 1 } } });
    expect((await caughtAsync(() => agent(broker, { dataDir }))).details.field).toBe('registry.instances.c.move');
    reg({}, { c: { instance: 'c', app: 'counter', state: 'running', since: 1, codeFile: '../evil.mjs' } });
    expect((await caughtAsync(() => agent(broker, { dataDir }))).details.field).toBe('registry.instances.c.codeFile');
  });

  it('the control channel answers bad lines with AGENT_BAD_REQUEST naming the field, and keeps serving', async () => {
    const a = await agent(broker);
    const server = await ControlServer.listen(a, a.options.dataDir, () => undefined);
    try {
      const lines = ['garbage', '{"id":2,"cmd":"nope"}', '{"id":3,"cmd":"call","args":{"instance":5}}', '{"id":4,"cmd":"status","args":[1]}', '{"id":5,"cmd":"resume","args":{"instance":"x","version":1.5}}', '{"id":6,"cmd":"status"}'];
      const answers = await new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
        const sock = connect(controlSocketPath(a.options.dataDir));
        let buf = '';
        sock.on('error', reject);
        sock.on('connect', () => sock.write(lines.map((l) => `${l}\n`).join('')));
        sock.on('data', (d) => {
          buf += d.toString();
          const got = buf.split('\n').filter(Boolean);
          if (got.length === lines.length) {
            sock.destroy();
            resolve(got.map((l) => JSON.parse(l) as Record<string, unknown>));
          }
        });
      });
      expect(answers.slice(0, 5).map((x) => [x.ok, (x.error as { code: string }).code, (x.error as { field: string }).field])).toEqual([
        [false, 'AGENT_BAD_REQUEST', 'request'],
        [false, 'AGENT_BAD_REQUEST', 'cmd'],
        [false, 'AGENT_BAD_REQUEST', 'args.instance'],
        [false, 'AGENT_BAD_REQUEST', 'args'],
        [false, 'AGENT_BAD_REQUEST', 'args.version'],
      ]);
      expect(answers[5]).toMatchObject({ id: 6, ok: true, result: { deviceId: a.options.deviceId } });
      expect((await caughtAsync(() => ControlServer.listen(a, a.options.dataDir, () => undefined))).code).toBe('AGENT_RUNNING');
    } finally {
      await server.close();
    }
  });

  it('sensor-log leases the device sensor, records readings through ctx.request, and its history outgrows the in-memory budget', async () => {
    const dir = temp.dir('profile');
    const profile = { ...getProfile('rpi-zero-2w'), name: 'tiny-sensor', heapBudgetBytes: 64 * 1024 };
    writeFileSync(join(dir, 'tiny.json'), JSON.stringify(profile));
    const a = await agent(broker, { profile: join(dir, 'tiny.json') });
    await a.install(SAMPLE('sensor-log'));
    await a.run('sensor-log');
    expect(a.leases()).toMatchObject([{ instance: 'sensor-log', type: 'sensor' }]);
    for (let i = 0; i < 3; i++) await a.call('sensor-log', 'sample', null);
    await until(() => (a.view('sensor-log').applied ?? 0) >= 6, 5000, 'readings');
    const s = (await a.call('sensor-log', 'summary', null)) as { count: number; min: number; max: number; failures: number };
    expect(s.count).toBe(3);
    expect(s.failures).toBe(0);
    expect(s.min).toBeGreaterThanOrEqual(15);
    expect(s.max).toBeLessThanOrEqual(25);
    for (let i = 0; i < 3000; i++) await a.call('sensor-log', 'add', { celsius: i % 50, at: i });
    const v = a.view('sensor-log');
    expect(v.heap!.virtualBytes).toBeGreaterThan(64 * 1024);
    expect(v.heap!.residentBytes).toBeLessThanOrEqual(64 * 1024);
    expect(await a.call('sensor-log', 'mean', { from: 0, to: 100 })).toEqual({ count: 100, mean: 24.5 });
    await a.suspend('sensor-log');
    expect(a.leases()).toEqual([]);
  });
});
