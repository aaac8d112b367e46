/**
 * A call that changes nothing writes nothing: no new checkpoint, no store bytes, so a read-only
 * timer no longer pushes restorable versions out of the window. Its answer still waits for the
 * writing calls before it, and a duplicate of its id in the same run gets the same answer.
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/runtime/agent.js';
import { AppInstance, loadApp, type CallOutcome } from '../../agent/runtime/index.js';
import { getProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { Temp } from '../heap/graph.js';
import { until } from '../services/helpers.js';

const temp = new Temp();
afterEach(() => temp.cleanup());

const COUNTER = readFileSync(new URL('../../apps/counter.mjs', import.meta.url), 'utf8');
const WATCHER = new URL('./fixtures/watcher.mjs', import.meta.url).pathname;

async function open(store: Store, instance: string): Promise<AppInstance> {
  const { definition, sandbox } = await loadApp(COUNTER, { filename: `${instance}.mjs`, instance, timeoutMs: 1000 });
  return AppInstance.open({
    instance,
    definition,
    sandbox,
    heap: { store, profile: getProfile('rpi-4b') },
    handlerTimeoutMs: 200,
    rememberReplies: 4,
    replayHorizonMs: 3_600_000,
    mailboxMs: () => 0,
    host: { now: () => Date.now(), log: () => undefined, leasesJson: () => '[]', app: { name: definition.name, version: definition.version, instance } },
  });
}

const body = (o: CallOutcome) => {
  if (!o.ok) throw new Error(`expected success, got ${o.code}: ${o.message}`);
  return o.body;
};

describe('read-only calls', () => {
  it('commit after calls that changed nothing makes no version and writes no byte', async () => {
    const store = temp.store();
    const a = await open(store, 'c');
    body(a.call('increment', { by: 3 }, 'w1').outcome);
    const v = a.commit()!.version;
    const versions = store.versions('c').length;
    const before = store.stats();
    for (let i = 0; i < 50; i++) {
      expect(body(a.call('get', null, `r${i}`).outcome)).toEqual({ count: 3 });
      expect(a.commit()).toBeUndefined();
    }
    expect(store.versions('c').length).toBe(versions);
    expect(a.heapStats().version).toBe(v);
    const after = store.stats();
    expect([after.commits, after.segmentBytesWritten, after.segmentSyncs]).toEqual([before.commits, before.segmentBytesWritten, before.segmentSyncs]);
    expect([a.applied, a.readOnlyCalls]).toEqual([1, 50]);
    // A writing call after them still makes exactly one version.
    body(a.call('increment', null, 'w2').outcome);
    expect(a.commit()!.version).toBeGreaterThan(v);
    a.close();
  });

  it('in a group with a writing call, the read waits for the same commit and sees its value', async () => {
    const store = temp.store();
    const a = await open(store, 'c');
    body(a.call('increment', null, 'w1').outcome);
    expect(body(a.call('get', null, 'r1').outcome)).toEqual({ count: 1 });
    expect(a.pending).toBe(2);
    const c = a.commit();
    expect(c?.calls).toBe(2);
    a.close();
    // What the read answered was committed with it.
    const b = await open(store, 'c');
    expect(b.snapshot()).toEqual({ count: 1 });
    b.close();
  });

  it('a duplicate id of a read gets the first answer, even after a write changed the value; the newest rememberReplies are kept', async () => {
    const store = temp.store();
    const a = await open(store, 'c');
    expect(body(a.call('get', null, 'r1').outcome)).toEqual({ count: 0 });
    body(a.call('increment', null, 'w1').outcome);
    a.commit();
    const again = a.call('get', null, 'r1');
    expect([again.repeat, body(again.outcome)]).toEqual([true, { count: 0 }]);
    // rememberReplies is 4 here: r1 leaves after four newer reads, and then runs again.
    for (let i = 2; i <= 5; i++) a.call('get', null, `r${i}`);
    const late = a.call('get', null, 'r1');
    expect([late.repeat, body(late.outcome)]).toEqual([false, { count: 1 }]);
    a.close();
  });

  it('a handler that writes the value it read counts as a write (the heap cannot tell), a failing one changes nothing', async () => {
    const store = temp.store();
    const a = await open(store, 'c');
    body(a.call('reset', null, 'z').outcome); // count was 0 already
    expect(a.commit()).toBeDefined();
    const failed = a.call('nope', null, 'f');
    expect(failed.outcome.ok).toBe(false);
    // A failure is remembered durably (a replay must not run it against later state).
    expect(a.commit()).toBeDefined();
    a.close();
  });
});

describe('read-only timer in a running agent', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startAedes();
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('ticks many times without a new checkpoint, so restorable versions stay', async () => {
    const a = await Agent.start({ dataDir: temp.dir('agent'), brokerUrl: broker.url, log: () => undefined, handlerTimeoutMs: 200 });
    try {
      await a.install(WATCHER);
      await a.run('watcher');
      await a.call('watcher', 'bump', null);
      const head = a.view('watcher').checkpoint;
      const kept = a.checkpoints('watcher');
      await until(() => (a.view('watcher').readOnly ?? 0) >= 40, 10_000, 'forty read-only ticks');
      expect(a.view('watcher').checkpoint).toBe(head);
      expect(a.checkpoints('watcher')).toEqual(kept);
      // A write still checkpoints.
      expect(await a.call('watcher', 'bump', null)).toBe(2);
      expect(a.view('watcher').checkpoint).toBeGreaterThan(head);
    } finally {
      await a.close();
    }
  });
});
