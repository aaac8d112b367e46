import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { getProfile } from '../../hw-profiles/index.js';
import { appMailboxTopic, connectBus, decodeEnvelope, DurableSession, ENVELOPE_VERSION, inboxTopic, type Envelope, type MqttBus } from '../../transports/index.js';
import { Agent } from '../../agent/runtime/agent.js';
import type { LogLine } from '../../agent/runtime/agent-options.js';
import { BROKERS, startAedes, startMosquitto, type MosquittoBroker, type TestBroker } from '../helpers/brokers.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { Temp } from '../heap/graph.js';
import { startDevice } from '../harness/index.js';
import { until } from '../services/helpers.js';

const temp = new Temp();
const running: AgentProcess[] = [];
afterEach(async () => {
  for (const a of running.splice(0)) await a.kill();
  temp.cleanup();
});

const LEDGER = new URL('./fixtures/ledger.mjs', import.meta.url).pathname;
const SAMPLE = (name: string) => new URL(`../../apps/${name}.mjs`, import.meta.url).pathname;

async function agentProcess(dataDir: string, args: string[]): Promise<AgentProcess> {
  const a = startAgentProcess(dataDir, args);
  running.push(a);
  await a.ready;
  return a;
}

interface View {
  instance: string;
  heap: { residentBytes: number; budgetBytes: number; virtualBytes: number };
}

describe('emulated devices: agent processes on three profiles against one Mosquitto', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(() => broker.stop());

  it('each runs apps inside its own budget; the PDA leases the Pi’s sensor; any client reaches an instance by its id', async () => {
    // On the device harness: each at its profile's CPU share and memory cap, behind its link.
    const emulated = await Promise.all(['rpi-4b', 'android-phone', 'palm-pda'].map((p) => startDevice({ profile: p, id: `dev-${p}`, dataDir: temp.dir(p), brokerPort: broker.port })));
    onTestFinished(async () => {
      for (const e of emulated) await e.stop('SIGKILL');
    });
    const devices = emulated.map((e) => e.agent);
    const [pi, phone, pda] = devices as [AgentProcess, AgentProcess, AgentProcess];
    for (const [i, d] of devices.entries()) {
      await d.control('install', { path: SAMPLE('notes') });
      await d.control('run', { app: 'notes', instance: `notes-${i}` });
    }
    // The PDA has no sensor of its own: sensor-log leases one found by discovery (the Pi's or the phone's).
    await pda.control('install', { path: SAMPLE('sensor-log') });
    await pda.control('run', { app: 'sensor-log' });
    const leases = (await pda.control('leases')) as Array<{ type: string; provider: string }>;
    expect(leases).toHaveLength(1);
    expect(['dev-rpi-4b', 'dev-android-phone']).toContain(leases[0]!.provider);
    await pda.control('call', { instance: 'sensor-log', handler: 'sample', message: null });
    let summary: { count: number } = { count: 0 };
    for (let t = 0; t < 100 && summary.count < 1; t++) {
      summary = (await pda.control('call', { instance: 'sensor-log', handler: 'summary', message: null })) as { count: number };
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(summary.count).toBe(1);

    // The provider dies (SIGKILL: its will announces it): the lease moves to the other sensor.
    const provider = leases[0]!.provider === 'dev-rpi-4b' ? pi : phone;
    const other = provider === pi ? 'dev-android-phone' : 'dev-rpi-4b';
    await provider.kill('SIGKILL');
    let moved: Array<{ provider: string }> = [];
    for (let t = 0; t < 200 && moved[0]?.provider !== other; t++) {
      moved = (await pda.control('leases')) as Array<{ provider: string }>;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(moved).toMatchObject([{ type: 'sensor', provider: other }]);
    await pda.control('call', { instance: 'sensor-log', handler: 'sample', message: null });
    for (let t = 0; t < 100 && summary.count < 2; t++) {
      summary = (await pda.control('call', { instance: 'sensor-log', handler: 'summary', message: null })) as { count: number };
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(summary).toMatchObject({ count: 2, failures: 0 });

    // Fill the PDA's notes past its 256 KiB budget: the heap pages, the budget holds.
    const page = 'x'.repeat(8000);
    for (let i = 0; i < 60; i++) await pda.control('call', { instance: 'notes-2', handler: 'add', message: { text: `${i}\n${page}` } });
    for (const [i, d] of devices.entries()) {
      if (d.proc.exitCode !== null || d.proc.signalCode !== null) continue;
      const p = getProfile(['rpi-4b', 'android-phone', 'palm-pda'][i]!);
      const { instances } = (await d.control('apps')) as { instances: View[] };
      const notes = instances.find((v) => v.instance === `notes-${i}`)!;
      expect(notes.heap.budgetBytes).toBe(p.heapBudgetBytes);
      expect(notes.heap.residentBytes).toBeLessThanOrEqual(p.heapBudgetBytes);
    }
    const pdaNotes = ((await pda.control('apps')) as { instances: View[] }).instances.find((v) => v.instance === 'notes-2')!;
    expect(pdaNotes.heap.virtualBytes).toBeGreaterThan(getProfile('palm-pda').heapBudgetBytes);
    expect(await pda.control('call', { instance: 'notes-2', handler: 'read', message: { page: 3 } })).toMatchObject({ page: 3, text: `3\n${page}` });

    // A client that knows only the instance id reaches the surviving device's notes through the broker.
    const alive = provider === pi ? phone : pi;
    const far = `notes-${alive === pi ? 0 : 1}`;
    const client = await connectBus({ url: broker.url, deviceId: 'dev-client' });
    try {
      const answer = await client.request(appMailboxTopic(far), 'app.call', { handler: 'add', message: { text: 'from afar' } }, { timeoutMs: 5000 });
      expect(answer.type).toBe('app.call.ok');
      expect(answer.body).toEqual({ page: 0, pages: 1 });
    } finally {
      await client.close();
    }
    expect(await alive.control('call', { instance: far, handler: 'outline', message: null })).toMatchObject({ pages: [{ page: 0, first: 'from afar' }] });
    expect(alive.proc.exitCode).toBeNull();
  });
});

describe('leases of a running app across devices', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startAedes();
  });
  afterAll(() => broker.stop());

  it('the only sensor dies: onLeaseLost runs; a new device offering one appears: the app leases it again', async () => {
    const logs: LogLine[] = [];
    const pda = await Agent.start({ dataDir: temp.dir('pda'), profile: 'palm-pda', brokerUrl: broker.url, log: (l) => logs.push(l), leaseWaitMs: 5000 });
    try {
      const first = await agentProcess(temp.dir('pi1'), ['--profile', 'rpi-4b', '--broker', broker.url, '--device-id', 'pi-one']);
      await pda.install(SAMPLE('sensor-log'));
      await pda.run('sensor-log');
      expect(pda.leases()).toMatchObject([{ type: 'sensor', provider: 'pi-one' }]);
      await first.kill('SIGKILL');
      await until(() => pda.leases().length === 0, 10_000, 'the lease lost');
      await until(() => logs.some((l) => l.event === 'app.log' && String(l.message).includes('sensor lease lost')), 5000, 'onLeaseLost');
      await agentProcess(temp.dir('pi2'), ['--profile', 'rpi-4b', '--broker', broker.url, '--device-id', 'pi-two']);
      await until(() => pda.leases()[0]?.provider === 'pi-two', 10_000, 'a new lease');
      const before = (await pda.call('sensor-log', 'summary', null)) as { count: number };
      await pda.call('sensor-log', 'sample', null);
      // The reading comes back from the new Pi (the 5 s timer may add one of its own).
      await until(() => (pda.view('sensor-log').applied ?? 0) >= 4, 5000, 'the reading');
      const after = (await pda.call('sensor-log', 'summary', null)) as { count: number };
      expect(after.count).toBeGreaterThan(before.count);
    } finally {
      await pda.close();
    }
  });
});

describe.each(BROKERS)('SIGKILL while a client streams numbered requests (%s)', (_name, start) => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await start();
  });
  afterAll(() => broker.stop());

  it('every request is applied exactly once, in order, and none is lost', async () => {
    const dataDir = temp.dir('kill');
    let agent = await agentProcess(dataDir, ['--broker', broker.url, '--log-level', 'warn']);
    await agent.control('install', { path: LEDGER });
    await agent.control('run', { app: 'ledger' });

    const N = 400;
    const WINDOW = 16;
    const answers = new Map<number, { n: number; length: number }>();
    const client: MqttBus = await connectBus({ url: broker.url, deviceId: `kill-client-${process.pid}`, maxInFlight: 64 });
    const tag = `k${Date.now()}`;
    await client.subscribe(inboxTopic(client.deviceId), (env) => {
      if (env.type !== 'app.call.ok' || !env.corr?.startsWith(tag)) return;
      const i = Number(env.corr.slice(tag.length + 1));
      answers.set(i, env.body as { n: number; length: number });
    });
    const send = (i: number) =>
      client.publishEnvelope(appMailboxTopic('ledger'), { v: ENVELOPE_VERSION, type: 'app.call', id: `${tag}-${i}`, from: client.deviceId, replyTo: inboxTopic(client.deviceId), ts: Date.now(), body: { handler: 'apply', message: { n: i } } });

    try {
      // Stream with a window of unanswered requests; kill the agent mid-stream, twice.
      let next = 0;
      const kills = [Math.floor(N / 4), Math.floor((2 * N) / 3)];
      let restarted = 0;
      while (answers.size < N) {
        while (next < N && next - answers.size < WINDOW) await send(next++);
        if (restarted < kills.length && answers.size >= kills[restarted]!) {
          await agent.kill('SIGKILL');
          // Requests keep coming while the agent is down: they queue in its session.
          for (let k = 0; k < WINDOW && next < N; k++) await send(next++);
          agent = await agentProcess(dataDir, ['--broker', broker.url, '--log-level', 'warn']);
          restarted++;
          // A client that timed out would retry with the same ids: do so for every unanswered one.
          for (let i = 0; i < next; i++) if (!answers.has(i)) await send(i);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(restarted).toBe(2);
      const seen = (await agent.control('call', { instance: 'ledger', handler: 'list', message: null })) as number[];
      expect(seen).toEqual([...Array(N).keys()]);
      for (let i = 0; i < N; i++) expect(answers.get(i)).toEqual({ n: i, length: i + 1 });
    } finally {
      await client.close();
    }
  });
});

/**
 * The horizon of exactly once. A Mosquitto that is SIGKILLed comes back from its last save
 * (autosave_interval, 30 min by default here) and redelivers the requests it had saved as
 * queued, though the agent applied and acknowledged them since: any number of requests later.
 * Those ids are spent (their outcomes dropped from the rememberReplies window) but remembered
 * for replayHorizonMs of mailbox time: each replay is answered APP_ALREADY_APPLIED and never
 * runs again.
 */
describe('exactly once when a SIGKILLed Mosquitto comes back from an old save', () => {
  let broker: MosquittoBroker;
  beforeAll(async () => {
    broker = await startMosquitto({ persistence: true, autosaveSeconds: 1800 });
  });
  afterAll(() => broker.stop());

  const QUEUED = 32;

  async function replayAfterCrash(o: { config: Record<string, unknown>; between: number; killAgent: boolean }): Promise<void> {
    const dir = temp.dir('replay');
    const config = join(dir, 'ferry.config.json');
    writeFileSync(config, JSON.stringify(o.config));
    const dataDir = join(dir, 'data');
    const args = ['--broker', broker.url, '--log-level', 'warn', '--config', config];
    let agent = await agentProcess(dataDir, args);
    await agent.control('install', { path: LEDGER });
    await agent.control('run', { app: 'ledger', instance: 'ledger-r' });

    // The requester's inbox is a persistent session too: answers published while it reconnects wait for it.
    const tag = `r${Date.now()}`;
    const me = `replay-${process.pid}-${o.between}`;
    const answers = new Map<number, Envelope[]>();
    let laterAnswered = 0; // requests after the first QUEUED that have an answer
    const inbox = await DurableSession.connect({ url: broker.url, clientId: me, filter: inboxTopic(me) }, (m) => {
      const env = decodeEnvelope(m.payload);
      if (env.corr?.startsWith(`${tag}-`)) {
        const i = Number(env.corr.slice(tag.length + 1));
        if (i >= QUEUED && !answers.has(i)) laterAnswered++;
        answers.set(i, [...(answers.get(i) ?? []), env]);
      }
      m.ack();
    });
    const pub = await connectBus({ url: broker.url, deviceId: `${me}-pub`, maxInFlight: 64 });
    const send = (i: number) =>
      pub.publishEnvelope(appMailboxTopic('ledger-r'), { v: ENVELOPE_VERSION, type: 'app.call', id: `${tag}-${i}`, from: me, replyTo: inboxTopic(me), ts: Date.now(), body: { handler: 'apply', message: { n: i } } });
    const answered = (from: number, to: number, times = 1) => {
      for (let i = from; i < to; i++) if ((answers.get(i)?.length ?? 0) < times) return false;
      return true;
    };
    try {
      // 1. Suspended: the requests queue at the broker, and a graceful restart saves them.
      await agent.control('suspend', { instance: 'ledger-r' });
      for (let i = 0; i < QUEUED; i++) await send(i);
      await new Promise((r) => setTimeout(r, 200));
      await broker.restart();
      // 2. Resumed: they are applied, answered and acknowledged (Mosquitto does not save again before the crash).
      await agent.control('resume', { instance: 'ledger-r' });
      await until(() => answered(0, QUEUED), 20_000, 'the queued requests answered');
      // 3. Many more, far past the window of kept outcomes (a window of unanswered ones below Mosquitto's queue limit).
      const total = QUEUED + o.between;
      for (let next = QUEUED; next < total; ) {
        while (next < total && next - QUEUED - laterAnswered < 200) await send(next++);
        await new Promise((r) => setTimeout(r, 2));
      }
      await until(() => answered(QUEUED, total), 120_000, 'every request answered');
      if (o.killAgent) {
        // What the agent remembers is in its heap: a SIGKILLed agent knows it again at its start.
        await agent.kill('SIGKILL');
        agent = await agentProcess(dataDir, args);
      }
      // 4. The crash: Mosquitto comes back from its save and redelivers the first QUEUED requests.
      await broker.crash();
      await until(() => answered(0, QUEUED, 2), 30_000, 'the redelivered requests answered again');
      for (let i = 0; i < QUEUED; i++) {
        const [first, again] = answers.get(i)!;
        expect(first!.type).toBe('app.call.ok');
        expect(first!.body).toEqual({ n: i, length: i + 1 });
        // Never applied twice, and never an answer that contradicts the first.
        expect(again!.body).toMatchObject({ code: 'APP_ALREADY_APPLIED', field: 'envelope.id' });
        expect(again!.type).toBe('error');
      }
      // Every request applied once, in order: the ledger is 0..total-1.
      const seen: number[] = [];
      for (let from = 0; from < total; from += 2000) {
        const piece = (await agent.control('call', { instance: 'ledger-r', handler: 'range', message: { from, to: from + 2000 } })) as { length: number; items: number[] };
        expect(piece.length).toBe(total);
        seen.push(...piece.items);
      }
      expect(seen).toEqual([...Array(total).keys()]);
      expect(broker.log()).not.toMatch(/Error saving/);
    } finally {
      await pub.close();
      await inbox.close();
      await DurableSession.discard({ url: broker.url, clientId: me, filter: inboxTopic(me) });
    }
  }

  it('a window of 64 outcomes, 200 requests in between, the agent SIGKILLed and restarted too: the replays are refused, never applied again', async () => {
    await replayAfterCrash({ config: { rememberReplies: 64 }, between: 200, killAgent: true });
  });

  it('the default window (10,000 outcomes) with 10,100 requests in between', async () => {
    await replayAfterCrash({ config: {}, between: 10_100, killAgent: false });
  }, 120_000);
});
