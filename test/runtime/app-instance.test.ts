import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { getProfile } from '../../hw-profiles/index.js';
import { AppInstance, loadApp, type CallOutcome } from '../../agent/runtime/index.js';
import type { Store } from '../../store/index.js';
import { caughtAsync } from '../helpers/ferry-error.js';
import { Temp } from '../heap/graph.js';

const temp = new Temp();
afterEach(() => temp.cleanup());

const COUNTER = readFileSync(new URL('../../apps/counter.mjs', import.meta.url), 'utf8');

/** An app exercising every fault a handler can have. */
const FAULTY = `
let calls = 0;
export default {
  name: 'faulty', version: '1',
  init(ctx) { ctx.root.n = 0; ctx.root.log = []; },
  handlers: {
    inc(ctx) { ctx.root.n++; ctx.root.log.push('inc'); calls++; return ctx.root.n; },
    throws(ctx) { ctx.root.n = 1000; ctx.root.log.push('x'); throw new Error('boom'); },
    loops(ctx) { ctx.root.n = -1; for (;;) {} },
    writesForever(ctx) { for (let i = 0; ; i++) { ctx.root.n = i; ctx.root.log.push(i); if (ctx.root.log.length > 50) ctx.root.log.length = 0; } },
    storesFunction(ctx) { ctx.root.n = 7; ctx.root.f = () => 1; return 'unreachable'; },
    returnsFunction(ctx) { ctx.root.n = 8; return { f() {} }; },
    // Not declared async (that is refused at load), yet it returns a promise.
    isAsync(ctx) { ctx.root.n = 9; return Promise.resolve().then(() => { ctx.root.log.push('after-await'); return 1; }); },
    later(ctx) { ctx.root.n = 10; Promise.resolve().then(() => { ctx.root.log.push('microtask'); }); return 'ok'; },
    sendObj(ctx) { ctx.root.o = ctx.root.o || { v: 1 }; ctx.send('other', 'h', ctx.root.o); },
    mutate(ctx) { ctx.root.o.v = 2; },
    sendFn(ctx) { ctx.send('other', 'h', { f() {} }); },
    sendWild(ctx) { ctx.send('a/#', 'h', 1); },
    thenTrap() { return { get then() { for (;;) {} } }; },
    getterTrap() { return { get v() { for (;;) {} } }; },
    messageTrap() { throw { get message() { for (;;) {} } }; },
    throwsBare() { throw Object.create(null); },
    returnsDate() { return new Date(0); },
    returnsHeap(ctx) { ctx.root.log.push('h'); return ctx.root.log; },
    badRequest(ctx) { ctx.request('sensor', 'read', {}, 'nope'); },
    send(ctx, m) { ctx.root.n++; ctx.send('other', 'hello', { n: ctx.root.n }); if (m && m.fail) throw new Error('no'); return 'sent'; },
    setGlobal(_ctx, m) { globalThis.mark = m; return typeof process + ',' + typeof require; },
    getGlobal() { return globalThis.mark === undefined ? null : globalThis.mark; },
    ctxShape(ctx) { return { keys: Object.keys(ctx).sort(), frozen: Object.isFrozen(ctx), calls }; },
  },
  onResume(ctx) { ctx.root.resumes = (ctx.root.resumes || 0) + 1; },
};`;

async function open(store: Store, source: string, instance: string, o: { timeoutMs?: number; rememberReplies?: number; replayHorizonMs?: number; mailboxMs?: () => number; profile?: string } = {}): Promise<AppInstance> {
  const { definition, sandbox } = await loadApp(source, { filename: `${instance}.mjs`, instance, timeoutMs: 1000 });
  return AppInstance.open({
    instance,
    definition,
    sandbox,
    heap: { store, profile: getProfile(o.profile ?? 'rpi-4b') },
    handlerTimeoutMs: o.timeoutMs ?? 200,
    rememberReplies: o.rememberReplies ?? 100,
    replayHorizonMs: o.replayHorizonMs ?? 3_600_000,
    mailboxMs: o.mailboxMs ?? (() => 0),
    host: { now: () => Date.now(), log: () => undefined, leasesJson: () => '[]', app: { name: definition.name, version: definition.version, instance } },
  });
}

const ok = (o: CallOutcome) => {
  if (!o.ok) throw new Error(`expected success, got ${o.code}: ${o.message}`);
  return o.body;
};
const err = (o: CallOutcome) => {
  if (o.ok) throw new Error(`expected an error, got ${JSON.stringify(o.body)}`);
  return o;
};

describe('app instance: handlers as transactions on the heap', () => {
  it('runs init once, applies handlers, and keeps committed state across a reopen', async () => {
    const store = temp.store();
    const a = await open(store, COUNTER, 'counter-1');
    expect(a.snapshot()).toEqual({ count: 0 });
    expect(ok(a.call('increment', null).outcome)).toEqual({ count: 1 });
    expect(ok(a.call('increment', { by: 5 }).outcome)).toEqual({ count: 6 });
    expect(a.pending).toBe(2);
    expect(a.commit()?.calls).toBe(2);
    a.call('increment', null); // not committed: lost with the process
    a.close();
    const b = await open(store, COUNTER, 'counter-1');
    expect(b.snapshot()).toEqual({ count: 6 });
    expect(b.applied).toBe(2);
    b.close();
  });

  it('a throwing handler leaves the heap as it was and the app serving', async () => {
    const a = await open(temp.store(), FAULTY, 'f1');
    a.call('inc', null);
    const e = err(a.call('throws', null).outcome);
    expect(e.code).toBe('APP_HANDLER_FAILED');
    expect(e.message).toContain('throws threw: boom');
    expect(e.field).toBe('handlers.throws');
    expect(a.snapshot()).toEqual({ n: 1, log: ['inc'] });
    expect(ok(a.call('inc', null).outcome)).toBe(2);
    a.close();
  });

  it('an infinite loop is stopped; the heap is reopened and the uncommitted calls run again', async () => {
    const store = temp.store();
    const a = await open(store, FAULTY, 'f2', { timeoutMs: 100 });
    a.call('inc', null);
    a.commit();
    a.call('inc', null, 'r-2'); // uncommitted when the loop is stopped
    const e = err(a.call('loops', null).outcome);
    expect(e.code).toBe('APP_TIMEOUT');
    expect(a.snapshot()).toEqual({ n: 2, log: ['inc', 'inc'] });
    // A loop stopped inside the heap's own code (it writes all the time) leaves nothing behind either.
    expect(err(a.call('writesForever', null).outcome).code).toBe('APP_TIMEOUT');
    expect(a.snapshot()).toEqual({ n: 2, log: ['inc', 'inc'] });
    expect(a.call('inc', null, 'r-2').repeat).toBe(true);
    a.commit();
    a.close();
    const b = await open(store, FAULTY, 'f2');
    expect(b.snapshot()).toEqual({ n: 2, log: ['inc', 'inc'] });
    b.close();
  });

  it('storing or returning a function is refused with HEAP_BAD_VALUE and rolled back', async () => {
    const a = await open(temp.store(), FAULTY, 'f3');
    const stored = err(a.call('storesFunction', null).outcome);
    expect(stored.code).toBe('HEAP_BAD_VALUE');
    expect(stored.message).toContain('root.f');
    expect(err(a.call('returnsFunction', null).outcome).code).toBe('HEAP_BAD_VALUE');
    expect(a.snapshot()).toEqual({ n: 0, log: [] });
    a.close();
  });

  it('a handler returning a promise is refused at call time and its changes, before and after its await, are rolled back', async () => {
    const a = await open(temp.store(), FAULTY, 'f4');
    const e = err(a.call('isAsync', null).outcome);
    expect(e.code).toBe('APP_ASYNC_HANDLER');
    expect(e.field).toBe('handlers.isAsync');
    await new Promise((r) => setTimeout(r, 10));
    expect(a.snapshot()).toEqual({ n: 0, log: [] });
    a.close();
  });

  it("promise jobs a handler queues run inside its call and its transaction", async () => {
    const a = await open(temp.store(), FAULTY, 'f5');
    expect(ok(a.call('later', null).outcome)).toBe('ok');
    expect(a.snapshot()).toEqual({ n: 10, log: ['microtask'] });
    a.close();
  });

  it('unknown handlers are typed errors', async () => {
    const a = await open(temp.store(), COUNTER, 'c2');
    const e = err(a.call('decrement', null).outcome);
    expect(e.code).toBe('APP_NO_HANDLER');
    expect(e.message).toContain('increment, get, reset');
    a.close();
  });
});

describe('app instance: exactly once', () => {
  it('a repeated request id gets the recorded outcome without a second run, also after a reopen', async () => {
    const store = temp.store();
    const a = await open(store, COUNTER, 'c3');
    const first = a.call('increment', null, 'req-1');
    expect(first.repeat).toBe(false);
    const again = a.call('increment', null, 'req-1');
    expect(again).toEqual({ outcome: first.outcome, repeat: true });
    expect(err(a.call('nope', null, 'req-2').outcome).code).toBe('APP_NO_HANDLER');
    a.commit();
    a.close();
    const b = await open(store, COUNTER, 'c3');
    expect(b.call('increment', null, 'req-1')).toEqual({ outcome: { ok: true, body: { count: 1 } }, repeat: true });
    expect(b.call('increment', null, 'req-2').repeat).toBe(true);
    expect(b.snapshot()).toEqual({ count: 1 });
    b.close();
  });

  it('a request whose checkpoint was not committed runs again after a restart', async () => {
    const store = temp.store();
    const a = await open(store, COUNTER, 'c4');
    a.call('increment', null, 'req-1');
    a.close(); // "power loss" before the group commit: the request was never answered
    const b = await open(store, COUNTER, 'c4');
    expect(b.call('increment', null, 'req-1').repeat).toBe(false);
    expect(b.snapshot()).toEqual({ count: 1 });
    b.close();
  });

  it('keeps the outcomes of at least the newest rememberReplies ids; an older id is refused with APP_ALREADY_APPLIED, not run again', async () => {
    const a = await open(temp.store(), COUNTER, 'c5');
    for (let i = 0; i < 300; i++) a.call('increment', null, `r${i}`);
    // At least the newest rememberReplies (100) keep their outcome, in maps of 64: r200..r299 at least.
    expect(a.call('increment', null, 'r299')).toEqual({ outcome: { ok: true, body: { count: 300 } }, repeat: true });
    expect(a.call('increment', null, 'r200')).toEqual({ outcome: { ok: true, body: { count: 201 } }, repeat: true });
    const old = a.call('increment', null, 'r0');
    expect(old.repeat).toBe(true);
    expect(old.outcome).toMatchObject({ ok: false, code: 'APP_ALREADY_APPLIED', field: 'envelope.id' });
    expect(err(old.outcome).message).toContain('r0');
    expect(a.snapshot()).toEqual({ count: 300 });
    expect(a.spentIds.ids).toBeGreaterThan(64); // whole maps of 64 are spent (and r0 again, by its replay)
    a.close();
  });
});

describe('app instance: spent ids (outcome dropped, id still refused within the replay horizon)', () => {
  const counts = (a: AppInstance) => (a.snapshot() as { count: number }).count;

  it('a spent id is refused after a reopen, and after a crash (no suspend checkpoint); calls after the last commit run again', async () => {
    const store = temp.store();
    // The smallest profile: the digests' byte strings stay far below its object size limit.
    const o = { rememberReplies: 16, profile: 'j2me-phone' };
    const a = await open(store, COUNTER, 'sp1', o);
    for (let i = 0; i < 400; i++) {
      a.call('increment', null, `r${i}`);
      if (i % 7 === 6) a.commit();
    }
    a.commit();
    for (let i = 400; i < 420; i++) a.call('increment', null, `r${i}`);
    a.close(); // a crash: r400..r419 were never committed, so never answered
    const b = await open(store, COUNTER, 'sp1', o);
    expect(counts(b)).toBe(400);
    for (const i of [0, 1, 200, 383]) expect(b.call('increment', null, `r${i}`).outcome).toMatchObject({ code: 'APP_ALREADY_APPLIED' });
    for (const i of [384, 399]) expect(b.call('increment', null, `r${i}`)).toMatchObject({ outcome: { ok: true }, repeat: true });
    expect(b.call('increment', null, 'r400').repeat).toBe(false);
    expect(counts(b)).toBe(401);
    expect(b.heapStats().residentBytes).toBeLessThanOrEqual(getProfile('j2me-phone').heapBudgetBytes);
    b.commit();
    b.suspend();
    const c = await open(store, COUNTER, 'sp1', o);
    expect(c.call('increment', null, 'r7').outcome).toMatchObject({ code: 'APP_ALREADY_APPLIED' });
    expect(c.call('increment', null, 'r400').repeat).toBe(true);
    expect(counts(c)).toBe(401);
    c.close();
  });

  it('single-map windows (rememberReplies ≤ 64) spend ids one by one; failures are spent too', async () => {
    const a = await open(temp.store(), FAULTY, 'sp2', { rememberReplies: 16 });
    a.call('throws', null, 'bad-0');
    for (let i = 0; i < 40; i++) a.call('inc', null, `r${i}`);
    a.commit();
    expect(a.call('throws', null, 'bad-0').outcome).toMatchObject({ code: 'APP_ALREADY_APPLIED' });
    expect(a.call('inc', null, 'r0').outcome).toMatchObject({ code: 'APP_ALREADY_APPLIED' });
    expect(a.call('inc', null, 'r39').outcome).toEqual({ ok: true, body: 40 });
    expect((a.snapshot() as { n: number }).n).toBe(40);
    a.close();
  });

  it('spent ids age by mailbox time only (not by wall time, not by later requests): past the horizon an id is new again', async () => {
    const store = temp.store();
    let mailbox = 0; // ms the mailbox session has been connected
    const o = { rememberReplies: 16, replayHorizonMs: 60_000, mailboxMs: () => mailbox };
    const a = await open(store, COUNTER, 'sp3', o);
    for (let i = 0; i < 100; i++) a.call('increment', null, `r${i}`);
    a.commit();
    // Any number of later requests, and wall time with the mailbox down, forget nothing.
    for (let i = 100; i < 2100; i++) a.call('increment', null, `x${i}`);
    a.commit();
    expect(a.call('increment', null, 'r0').outcome).toMatchObject({ code: 'APP_ALREADY_APPLIED' });
    mailbox = 50_000;
    a.commit(); // the replay above refreshed r0 at mailbox time 50 s
    a.close();
    // The clock is in the heap: a new opening (a new session, counting from 0 again) goes on from it.
    mailbox = 0;
    const b = await open(store, COUNTER, 'sp3', o);
    expect(b.mailboxClock).toBe(50_000);
    mailbox = 15_000; // 65 s: r1..r99 were spent at 0 s, past the horizon
    b.call('increment', null, 'tick-1');
    b.commit();
    expect(b.call('increment', null, 'r1').repeat).toBe(false); // forgotten: runs as a new request
    expect(b.call('increment', null, 'r0').outcome).toMatchObject({ code: 'APP_ALREADY_APPLIED' }); // refreshed at 50 s
    b.commit();
    mailbox = 65_000; // 115 s
    b.call('increment', null, 'tick-2');
    b.commit();
    // r0 was replayed again at 65 s: its horizon runs from there; r2 was not.
    expect(b.call('increment', null, 'r0').outcome).toMatchObject({ code: 'APP_ALREADY_APPLIED' });
    expect(b.call('increment', null, 'r2').repeat).toBe(false);
    b.commit();
    mailbox = 200_000;
    b.call('increment', null, 'tick-3');
    b.commit();
    expect(b.call('increment', null, 'r0').repeat).toBe(false);
    expect(counts(b)).toBe(2100 + 3 + 3);
    b.close();
  });
});

describe('app instance: app code the agent touches stays inside the time limit', () => {
  it.each([
    ['thenTrap', 'APP_TIMEOUT'],
    ['getterTrap', 'APP_TIMEOUT'],
    ['messageTrap', 'APP_TIMEOUT'],
    ['throwsBare', 'APP_HANDLER_FAILED'],
    ['returnsDate', 'HEAP_BAD_VALUE'],
  ])('%s ends as %s, the heap unchanged, the instance serving', async (handler, code) => {
    const a = await open(temp.store(), FAULTY, `t-${handler.toLowerCase()}`, { timeoutMs: 50 });
    expect(ok(a.call('inc', null).outcome)).toBe(1);
    expect(err(a.call(handler, null).outcome).code).toBe(code);
    expect(ok(a.call('inc', null).outcome)).toBe(2);
    expect((a.snapshot() as { n: number }).n).toBe(2);
    a.close();
  });

  it('a handler may return its heap objects: the caller gets a plain copy', async () => {
    const a = await open(temp.store(), FAULTY, 't-heap');
    expect(ok(a.call('returnsHeap', null).outcome)).toEqual(['h']);
    a.close();
  });

  it('a description whose getter never returns is refused at load', async () => {
    const e = await caughtAsync(() => loadApp('export default { get name() { for (;;) {} }, version: "1", handlers: { a() {} } }', { filename: 'trap.mjs', instance: 'trap', timeoutMs: 50 }));
    expect([e.code, e.details.field]).toEqual(['APP_BAD_DEFINITION', 'app']);
  });

  it('several runaway calls in one batch each reload once: earlier calls re-run once per reload, failed ones never', async () => {
    const a = await open(temp.store(), FAULTY, 't-loops', { timeoutMs: 30 });
    a.call('inc', null);
    for (let i = 0; i < 4; i++) expect(err(a.call('loops', null).outcome).code).toBe('APP_TIMEOUT');
    // One run of inc, then one replay per runaway call: 5; replaying the runaway ones too would be 2^4 runs and more.
    expect((ok(a.call('ctxShape', null).outcome) as { calls: number }).calls).toBe(5);
    a.commit();
    expect((a.snapshot() as { n: number }).n).toBe(1);
    a.close();
  });

  it('a hook of the batch survives a runaway call after it', async () => {
    const a = await open(temp.store(), FAULTY, 't-hook', { timeoutMs: 30 });
    a.hook('onResume', null);
    err(a.call('loops', null).outcome);
    a.commit();
    expect((a.snapshot() as { resumes: number }).resumes).toBe(1);
    a.close();
  });
});

describe('app instance: ctx and isolation', () => {
  it('messages sent with ctx.send leave only with the commit, and never from a failed call', async () => {
    const a = await open(temp.store(), FAULTY, 'f6');
    a.call('send', null);
    a.call('send', { fail: true });
    expect(a.takeOutbox()).toEqual([]); // not before the commit
    a.commit();
    const out = a.takeOutbox();
    expect(out).toEqual([{ id: expect.stringMatching(/^f6\./), kind: 'send', from: 'f6', to: 'other', handler: 'hello', body: { n: 1 } }]);
    expect(a.takeOutbox()).toEqual([]); // handed out once
    a.close();
  });

  it('an undelivered outbox entry is handed out again, with the same id, after a crash; a delivered one is gone', async () => {
    const store = temp.store();
    const a = await open(store, FAULTY, 'f7');
    a.call('send', null);
    a.call('send', null);
    a.commit();
    const [first, second] = a.takeOutbox();
    a.delivered(first!.id);
    a.call('inc', null);
    a.commit();
    a.close(); // a crash: nothing more committed
    const b = await open(store, FAULTY, 'f7');
    expect(b.takeOutbox().map((e) => e.id)).toEqual([second!.id]);
    b.close();
  });

  it('ctx.send keeps a copy of the body (a later change does not alter it) and refuses a function in it', async () => {
    const a = await open(temp.store(), FAULTY, 'f9');
    a.call('sendObj', null);
    a.call('mutate', null);
    expect(a.call('sendFn', null).outcome).toMatchObject({ ok: false, code: 'HEAP_BAD_VALUE', field: 'ctx.send.body' });
    expect(a.call('sendWild', null).outcome).toMatchObject({ ok: false, code: 'BAD_OPTION', field: 'ctx.send.to' });
    a.commit();
    expect(a.takeOutbox().map((e) => (e as { body: unknown }).body)).toEqual([{ v: 1 }]);
    a.close();
  });

  it('ctx.request naming a reply handler the app does not have is refused', async () => {
    const a = await open(temp.store(), FAULTY, 'f8');
    const r = a.call('badRequest', null).outcome;
    expect(r).toMatchObject({ ok: false, code: 'APP_NO_HANDLER', field: 'ctx.request.reply' });
    expect(a.outboxSize).toBe(0);
    a.close();
  });

  it('instances of one module share no globals and see no Node globals; ctx is frozen with its documented members', async () => {
    const store = temp.store();
    const a = await open(store, FAULTY, 'g1');
    const b = await open(store, FAULTY, 'g2');
    expect(ok(a.call('setGlobal', 'a').outcome)).toBe('undefined,undefined');
    expect(ok(b.call('getGlobal', null).outcome)).toBe(null);
    expect(ok(a.call('getGlobal', null).outcome)).toBe('a');
    a.call('inc', null);
    expect(ok(b.call('ctxShape', null).outcome)).toEqual({ keys: ['after', 'app', 'leases', 'log', 'now', 'request', 'root', 'send'], frozen: true, calls: 0 });
    a.close();
    b.close();
  });
});

describe('app modules: refused with typed errors naming the field', () => {
  const cases: [string, string, string, string?][] = [
    ['syntax error', 'export default {', 'APP_BAD_MODULE'],
    ['an import', "import fs from 'node:fs'; export default {};", 'APP_BAD_MODULE'],
    ['no default export', 'export const x = 1;', 'APP_BAD_MODULE'],
    ['a throwing top level', "throw new Error('nope'); export default {};", 'APP_BAD_MODULE'],
    ['a looping top level', 'for (;;) {} export default {};', 'APP_BAD_MODULE'],
    ['eval from a string', "export default eval('({})');", 'APP_BAD_MODULE'],
    ['a non-object export', 'export default 42;', 'APP_BAD_DEFINITION', 'app'],
    ['no name', "export default { version: '1', handlers: { a() {} } };", 'APP_BAD_DEFINITION', 'app.name'],
    ['a bad name', "export default { name: 'Bad Name', version: '1', handlers: { a() {} } };", 'APP_BAD_DEFINITION', 'app.name'],
    ['a bad version', "export default { name: 'a', version: '1 0', handlers: { a() {} } };", 'APP_BAD_DEFINITION', 'app.version'],
    ['no handlers', "export default { name: 'a', version: '1', handlers: {} };", 'APP_BAD_DEFINITION', 'app.handlers'],
    ['a handler that is not a function', "export default { name: 'a', version: '1', handlers: { a: 1 } };", 'APP_BAD_DEFINITION', 'app.handlers.a'],
    ['an unknown field', "export default { name: 'a', version: '1', handler: {}, handlers: { a() {} } };", 'APP_BAD_DEFINITION', 'app.handler'],
    ['a bad minHeapBytes', "export default { name: 'a', version: '1', requirements: { minHeapBytes: -1 }, handlers: { a() {} } };", 'APP_BAD_DEFINITION', 'app.requirements.minHeapBytes'],
    ['a bad service', "export default { name: 'a', version: '1', requirements: { services: [{ type: '' }] }, handlers: { a() {} } };", 'APP_BAD_DEFINITION', 'app.requirements.services[0].type'],
    ['a timer on a missing handler', "export default { name: 'a', version: '1', timers: { t: { everyMs: 1000, handler: 'b' } }, handlers: { a() {} } };", 'APP_BAD_DEFINITION', 'app.timers.t.handler'],
    ['a bad hook', "export default { name: 'a', version: '1', onLeaseLost: 'x', handlers: { a() {} } };", 'APP_BAD_DEFINITION', 'app.onLeaseLost'],
    ['an async handler method', "export default { name: 'a', version: '1', handlers: { a() {}, async increment(ctx) { return 1; } } };", 'APP_BAD_DEFINITION', 'app.handlers.increment'],
    ['an async arrow handler', "export default { name: 'a', version: '1', handlers: { a: async (ctx) => 1 } };", 'APP_BAD_DEFINITION', 'app.handlers.a'],
    ['an async generator handler', "export default { name: 'a', version: '1', handlers: { async *a(ctx) {} } };", 'APP_BAD_DEFINITION', 'app.handlers.a'],
    ['a bound async handler', "async function f() {} export default { name: 'a', version: '1', handlers: { a: f.bind(null) } };", 'APP_BAD_DEFINITION', 'app.handlers.a'],
    ['an async init', "export default { name: 'a', version: '1', async init(ctx) { ctx.root.x = 1; }, handlers: { a() {} } };", 'APP_BAD_DEFINITION', 'app.init'],
    ['an async hook', "export default { name: 'a', version: '1', handlers: { a() {} }, onResume: async function (ctx) {} };", 'APP_BAD_DEFINITION', 'app.onResume'],
  ];
  it.each(cases)('%s', async (_what, source, code, field) => {
    const e = await caughtAsync(() => loadApp(source, { filename: 'bad.mjs', instance: 'bad', timeoutMs: 100 }));
    expect(e.code).toBe(code);
    if (field) expect(e.details.field).toBe(field);
  });

  it('an async handler is refused without being called, and the message names it', async () => {
    // Called, it would loop before its first await and the load would end in its time limit instead (field `app`).
    const src = "export default { name: 'a', version: '1', handlers: { async increment() { for (;;) {} } } };";
    const e = await caughtAsync(() => loadApp(src, { filename: 'async.mjs', instance: 'async', timeoutMs: 100 }));
    expect([e.code, e.details.field]).toEqual(['APP_BAD_DEFINITION', 'app.handlers.increment']);
    expect(e.message).toMatch(/^app\.handlers\.increment must be a synchronous function, got an async function/);
  });

  it('init that throws refuses the instance and leaves no half-made heap behind', async () => {
    const store = temp.store();
    const src = "export default { name: 'a', version: '1', init(ctx) { ctx.root.x = 1; throw new Error('bad init'); }, handlers: { a() {} } };";
    const e = await caughtAsync(() => open(store, src, 'init-fails'));
    expect(e.code).toBe('APP_HANDLER_FAILED');
    expect(e.details.field).toBe('init');
    // The instance is still new: the next open runs init again, on a heap without the failed init's write.
    const again = await open(store, COUNTER, 'init-fails');
    expect(again.snapshot()).toEqual({ count: 0 });
    again.close();
  });
});
