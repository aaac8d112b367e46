/**
 * Wire conformance of an app mailbox (PROTOCOL.md §1, §3.2, §3.4, "App mailbox" A.2–A.4): a real
 * agent process (`ferry start --samples`) on aedes and on Mosquitto, spoken to only through bytes
 * on the wire by a plain MQTT 3.1.1 client and the suite's own CBOR. Nothing here imports
 * transports/ or agent/.
 *
 * Everything is driven by the document's text (./protocol-doc.ts, ./cases.ts): the size limit of
 * §1, the subset rules of §3.2, the fields of §3.1, the refusals of A.4 step 3, the codes of A.3
 * and the JSON examples of A.4. The counter sample's count is checked after every input: it must
 * hold exactly the increments of the requests that ran (every hostile request asks for +1000).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';
import { C, encode } from './cbor.js';
import { assertReadable, fieldCases, HOSTILE_BY, step3Cases, subsetCases, type Case, type EnvelopeFn } from './cases.js';
import { ANY, ProtocolDoc } from './protocol-doc.js';
import { docFacts, errorOf, expectOk, freshId, startRig, stopRig, type DocFacts, type Ferry, type Mailbox, type Parts, type Received, type WireClient } from './wire.js';

const doc = ProtocolDoc.read();
let facts: DocFacts | undefined;
let factsError: unknown;
try {
  facts = docFacts(doc);
} catch (e) {
  factsError = e;
}
const maxDepth = facts?.maxDepth ?? 64;
/** The current broker's client inbox (the §3.1 replyTo cases build bad topics from it). */
let inbox = 'ferry/v1/inbox/conformance';
const tables = { subset: subsetCases(doc, maxDepth), fields: fieldCases(doc, () => ({ inbox })), step3: step3Cases(doc) };
const rows: Case[] = Object.values(tables).flatMap((t) => t.cases);
/** `rememberReplies` for the agent under test (a documented option, A.4.1; its minimum), so A.4's replay example runs in 17 requests, not 10,001. */
const REMEMBER = 16;

describe.each(BROKERS)('the app mailbox of a real agent, on %s', (name, start) => {
  let broker: TestBroker;
  let ferry: Ferry;
  let wire: WireClient;
  let mb: Mailbox;

  beforeAll(async () => {
    if (!facts) throw factsError;
    ({ broker, ferry, wire, mb } = await startRig(start, `conf-${name}`, maxDepth, facts, { rememberReplies: REMEMBER }));
    inbox = wire.inbox;
  }, 60_000);

  afterAll(() => stopRig({ wire, ferry, broker }));

  it('PROTOCOL.md can be read: §3.1, §3.2, §4.1, A.3 and A.4 have the shape the suite reads', () => {
    if (factsError) throw factsError;
    for (const t of Object.values(tables)) assertReadable(t);
  });

  /** The request of A.4's example, as shown, with a fresh id and ts, from this client. */
  function exampleRequest(id: string, patch: (body: Record<string, unknown>) => Record<string, unknown> = (b) => b): Buffer {
    const ex = doc.mailboxExamples();
    const req = structuredClone(ex.request);
    const from = req.from as string;
    req.id = id;
    req.ts = Date.now();
    req.from = wire.me;
    if (req.replyTo === `ferry/v1/inbox/${from}`) req.replyTo = wire.inbox;
    req.body = patch(req.body as Record<string, unknown>);
    return encode(C.of(req));
  }

  /** What in `answer` differs from the document's example answer (`...` = any value of the field's type). */
  function unlike(answer: Received, example: Record<string, unknown>, id: string): string[] {
    const p: string[] = [];
    const e = answer.env ?? {};
    const keys = (o: object) => Object.keys(o).sort().join(',');
    if (keys(e) !== keys(example)) p.push(`keys ${keys(e)}, the example has ${keys(example)}`);
    for (const [k, v] of Object.entries(example)) {
      if (k === 'from') {
        if (e.from !== ferry.deviceId) p.push(`from ${JSON.stringify(e.from)}, the agent's device id is ${ferry.deviceId} (A.3)`);
      } else if (k === 'corr') {
        if (e.corr !== id) p.push(`corr ${JSON.stringify(e.corr)}, the request id is ${id}`);
      } else if (k === 'body') {
        const b = e.body as Record<string, unknown>;
        const xb = v as Record<string, unknown>;
        if (typeof b !== 'object' || b === null) {
          p.push(`body ${JSON.stringify(b)}`);
          continue;
        }
        if (keys(b) !== keys(xb)) p.push(`body keys ${keys(b)}, the example has ${keys(xb)}`);
        for (const [bk, bv] of Object.entries(xb)) {
          if (bk === 'code' || bk === 'field') {
            if (b[bk] !== bv) p.push(`body.${bk} ${JSON.stringify(b[bk])}, the example has ${JSON.stringify(bv)}`);
          } else if (typeof b[bk] !== typeof bv) p.push(`body.${bk} is ${typeof b[bk]}, the example's is ${typeof bv}`);
        }
      } else if (v === ANY) {
        if (typeof e[k] !== (k === 'ts' ? 'number' : 'string')) p.push(`${k} ${JSON.stringify(e[k])}`);
      } else if (e[k] !== v) p.push(`${k} ${JSON.stringify(e[k])}, the example has ${JSON.stringify(v)}`);
    }
    return p;
  }

  /** The answer to the last `get` a follow-up sent. */
  let lastSettled: Received | undefined;

  /**
   * A valid increment by 1 sent after an input, with `id`, then a `get` with a fresh id: once the
   * `get` is answered, every answer to what came before it has come too (the mailbox runs in
   * delivery order and its answers leave in that order). The last answer to `id` is the
   * increment's: it must be app.call.ok with the expected count, and so must the `get`'s.
   */
  async function followUp(id: string, sent = false): Promise<Received> {
    if (!sent) await mb.send(mb.request(id, 'increment', { by: 1 }));
    const barrier = freshId();
    await mb.send(mb.request(barrier, 'get', null));
    const settled = await mb.expectAnswer(barrier, 1, 15_000);
    lastSettled = settled;
    const all = wire.answers(id);
    const r = all.at(-1);
    expect(r?.env?.type, `app.call.ok for the valid request ${id} sent after the input; its answers: ${JSON.stringify(all.map((a) => a.env))}`).toBe('app.call.ok');
    expect(mb.answerProblems(r!, id)).toEqual([]);
    mb.accounted.add(r!);
    mb.count += 1;
    const count = (r!.env!.body as { count: unknown }).count;
    const now = (settled.env!.body as { count: unknown }).count;
    const expected = mb.count;
    // Resynchronise first, so one wrongly applied input fails its own test and not every later one.
    if (typeof now === 'number') mb.count = now;
    expect(count, `the count the valid follow-up ${id} answers: anything else means a hostile request was applied (or its id recorded, so the follow-up was answered from the record), or a valid one was not`).toBe(expected);
    expect(now, 'the count after the follow-up').toBe(expected);
    return r!;
  }

  /**
   * Runs one row of the tables: sends it and, right behind it, a valid increment (with the same
   * id when the input's id is usable and nothing may have recorded it), then checks every answer
   * that came and the count.
   */
  async function runCase(c: Case): Promise<void> {
    const id = freshId();
    const env: EnvelopeFn = (parts, shape) => mb.envelope(parts as Parts, shape);
    const before = wire.all.length;
    // What runs adds to the count before the follow-up, which checks it.
    if (c.expect === 'accepted' || c.expect === 'one-way') mb.count += c.by;
    // After a refusal or a drop the same id is sent again, valid: nothing was recorded for it (A.4 steps 1–3).
    const followId = c.expect === 'accepted' || c.expect === 'one-way' || c.expect === 'no-handler' || !c.idUsable ? freshId() : id;
    await mb.send(c.build(id, env));
    await mb.send(mb.request(followId, 'increment', { by: 1 }));
    // The follow-up's own failure (a wrong count) is thrown after the answers are looked at, which say why.
    let follow: Received | undefined;
    let followError: unknown;
    try {
      follow = await followUp(followId, true);
    } catch (e) {
      followError = e;
      follow = wire.answers(followId).at(-1);
    }
    const window = wire.all.slice(before);
    for (const r of window) mb.accounted.add(r);
    const others = window.filter((r) => r !== follow && r !== lastSettled);
    const show = (rs: Received[]) => rs.map((r) => `${r.topic}: ${JSON.stringify(r.env ?? r.problem)}`).join('\n') || 'none';
    const take = (): Received | undefined => {
      const i = others.findIndex((r) => r.env?.corr === id);
      return i < 0 ? undefined : others.splice(i, 1)[0];
    };
    switch (c.expect) {
      case 'accepted': {
        const answer = take();
        expect.soft(answer?.env?.type, `an accepted request is answered app.call.ok; answers: ${show(window)}`).toBe('app.call.ok');
        if (answer) {
          expect.soft(mb.answerProblems(answer, id)).toEqual([]);
          expect.soft((answer.env?.body as { count?: unknown } | undefined)?.count, 'the count an accepted request answers').toBe(mb.count - 1);
        }
        break;
      }
      case 'bad-request': {
        const answer = take();
        expect.soft(answer, `A.4 step 3: an APP_BAD_REQUEST answer; the agent sent: ${show(window)}`).toBeDefined();
        if (answer) {
          expect.soft(mb.answerProblems(answer, id)).toEqual([]);
          expect.soft(errorOf(answer), `A.4 step 3: ${JSON.stringify(answer.env)}`).toEqual({ code: 'APP_BAD_REQUEST', field: c.field, message: expect.any(String) });
        }
        break;
      }
      case 'no-handler': {
        const answer = take();
        expect.soft(answer, `A.3: an APP_NO_HANDLER answer; the agent sent: ${show(window)}`).toBeDefined();
        if (answer) {
          expect.soft(mb.answerProblems(answer, id)).toEqual([]);
          expect.soft(errorOf(answer)).toMatchObject({ code: 'APP_NO_HANDLER' });
        }
        break;
      }
      case 'bad-request-or-dropped': {
        const refusal = take();
        if (refusal) {
          expect.soft(errorOf(refusal)).toMatchObject({ code: 'APP_BAD_REQUEST' });
          expect.soft(mb.answerProblems(refusal, id)).toEqual([]);
        }
        break;
      }
      case 'one-way':
      case 'dropped':
        break;
    }
    expect.soft(others.length, `answers that must not exist (a dropped input answered, a one-way request answered, or an answer to a bad replyTo):\n${show(others)}`).toBe(0);
    if (followError) throw followError;
  }

  // ---------------------------------------------------------------- A.4's own examples

  it('A.4 example: the increment request, sent as shown (fresh id and ts), is answered like the example; a resend with the same id gets the same answer and runs nothing', async () => {
    const ex = doc.mailboxExamples();
    expect(ex.topic).toBe(mb.topic);
    const id = freshId();
    const by = ((ex.request.body as { message: { by: number } }).message ?? {}).by;
    await mb.send(exampleRequest(id));
    const first = await mb.expectAnswer(id);
    expect(unlike(first, ex.ok, id)).toEqual([]);
    mb.count += by;
    expect(first.env!.body).toEqual({ count: mb.count });
    await mb.send(exampleRequest(id));
    const again = await mb.expectAnswer(id, 2);
    expect(again.env!.type).toBe(first.env!.type);
    expect(again.env!.body).toEqual(first.env!.body);
    await followUp(freshId());
  });

  it('A.4 example: the request without handler is answered APP_BAD_REQUEST like the example; the same id with a valid body then runs (step 3 records nothing)', async () => {
    const ex = doc.mailboxExamples();
    const id = freshId();
    await mb.send(exampleRequest(id, (b) => Object.fromEntries(Object.entries(b).filter(([k]) => k !== 'handler'))));
    const bad = await mb.expectAnswer(id);
    expect(unlike(bad, ex.badRequest, id)).toEqual([]);
    await followUp(id);
  });

  it('A.4: APP_BAD_REQUEST is not final for its id (a tag in the body, then the same id valid: runs); APP_NO_HANDLER is (the same id with a valid handler: the same error, nothing runs)', async () => {
    const id = freshId();
    await mb.send(encode(mb.envelope({ id, body: C.map([['handler', C.text('increment')], ['message', C.map([['by', C.uint(HOSTILE_BY)], ['tags', C.array([C.uint(0), C.uint(0), C.tag(2, C.bytes([1]))])]])]]) })));
    expect(errorOf(await mb.expectAnswer(id))).toMatchObject({ code: 'APP_BAD_REQUEST', field: 'body.message.tags[2]' });
    await followUp(id);

    const nh = freshId();
    await mb.send(mb.request(nh, 'no-such-handler', { by: HOSTILE_BY }));
    const first = errorOf(await mb.expectAnswer(nh));
    expect(first.code).toBe('APP_NO_HANDLER');
    await mb.send(mb.request(nh, 'increment', { by: HOSTILE_BY }));
    const again = await mb.expectAnswer(nh, 2);
    expect(again.env!.type).toBe('error');
    expect(errorOf(again)).toEqual(first);
    await followUp(freshId());
  });

  // ---------------------------------------------------------------- §1 / A.4 step 1: the size limit

  const LIMIT = (() => {
    try {
      return doc.maxPayloadBytes();
    } catch {
      return 256 * 1024;
    }
  })();
  const sizes: Array<[string, number, string, boolean]> = [
    ['exactly the limit', LIMIT, 'answered and applied', true],
    ['the limit + 1 byte', LIMIT + 1, 'dropped unread: never applied, never answered', false],
    ['300 KiB', 300 * 1024, 'dropped unread: never applied, never answered', false],
    ['4 MiB', 4 * 1024 * 1024, 'dropped unread: never applied, never answered', false],
  ];
  it.each(sizes)('A.4 step 1 (§1 maximum payload): a valid increment of %s (%i bytes) is %s; a valid request after it runs', async (_what, size, _outcome, runs) => {
    const id = freshId();
    const ts = Date.now();
    const padded = (n: number) => encode(mb.envelope({ id, ts, body: C.map([['handler', C.text('increment')], ['message', C.map([['by', C.uint(runs ? 1 : HOSTILE_BY)], ['pad', C.text('x'.repeat(n))]])]]) }));
    const base = padded(0).length;
    const payload = padded(size - base - 4); // a text of 65,536+ characters has a 5-byte head instead of 1
    expect(payload.length).toBe(size);
    const before = wire.all.length;
    await mb.send(payload);
    if (runs) {
      const r = await mb.expectAnswer(id, 1, 30_000);
      expectOk(r, id);
      mb.count += 1;
      expect(r.env!.body).toEqual({ count: mb.count });
      await followUp(freshId());
    } else {
      // Dropped unread and not recorded: the same id, small and valid, runs.
      await followUp(id);
      const window = wire.all.slice(before);
      for (const r of window) mb.accounted.add(r);
      expect(wire.answers(id).map((r) => r.env?.type), 'a payload over the limit is never answered').toEqual(['app.call.ok']);
    }
  }, 60_000);

  // ---------------------------------------------------------------- A.4 step 2: ttl

  it('A.4 step 2: a request whose ttl ran out (ts 60 s ago, ttl 1 s) is dropped unanswered, nothing runs; the same id sent again in time runs', async () => {
    const id = freshId();
    const before = wire.all.length;
    await mb.send(encode(mb.envelope({ id, ts: Date.now() - 60_000, ttl: 1000, body: { handler: 'increment', message: { by: HOSTILE_BY } } })));
    await followUp(id);
    for (const r of wire.all.slice(before)) mb.accounted.add(r);
    expect(wire.answers(id).map((r) => r.env?.type)).toEqual(['app.call.ok']);
  });

  // ---------------------------------------------------------------- the tables (§3.2, §3.1, A.4 step 3)

  const EXPECT: Record<Case['expect'], string> = {
    accepted: 'runs, answered app.call.ok',
    'one-way': 'runs, unanswered',
    'bad-request': 'answered APP_BAD_REQUEST, runs nothing',
    dropped: 'dropped unanswered, runs nothing',
    'bad-request-or-dropped': 'dropped or answered APP_BAD_REQUEST, runs nothing',
    'no-handler': 'answered APP_NO_HANDLER, runs nothing',
  };
  it.each(rows.map((c) => [`${c.rule} — ${c.name}: ${EXPECT[c.expect]}${c.field ? ` (field ${c.field.length > 60 ? `${c.field.slice(0, 57)}...` : c.field})` : ''}`, c] as const))('%s', async (_title, c) => {
    await runCase(c);
  });

  // ---------------------------------------------------------------- A.4's replay example

  it(`A.4 example: the increment replayed after rememberReplies (${REMEMBER}, its configured value) newer requests is answered APP_ALREADY_APPLIED like the example and not applied again; one request fewer still gets its recorded answer`, async () => {
    const ex = doc.mailboxExamples();
    const id = freshId();
    const by = (ex.request.body as { message: { by: number } }).message.by;
    await mb.send(exampleRequest(id));
    const first = await mb.expectAnswer(id);
    expectOk(first, id);
    mb.count += by;
    for (let i = 0; i < REMEMBER - 1; i++) await mb.increment(1);
    await mb.send(exampleRequest(id));
    const kept = await mb.expectAnswer(id, 2);
    expect(kept.env!.body, `A.4.1 stage 1: still among the newest ${REMEMBER}`).toEqual(first.env!.body);
    await mb.increment(1);
    await mb.send(exampleRequest(id));
    const spent = await mb.expectAnswer(id, 3);
    expect(unlike(spent, ex.alreadyApplied, id)).toEqual([]);
    await followUp(freshId());
  });

  // ---------------------------------------------------------------- what holds over the whole run

  it('over the whole run: every error code answered is one A.3 lists; nothing came that was not asked for; the agent is alive and its count is what the valid requests made it', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const codes = [...mb.codes];
    expect(codes.length).toBeGreaterThan(0);
    for (const c of codes) expect([...facts!.appCodes.keys()], `A.3 does not list ${c}`).toContain(c);
    const unasked = wire.all.filter((r) => !mb.accounted.has(r));
    expect(unasked.map((r) => ({ topic: r.topic, env: r.env ?? r.problem }))).toEqual([]);
    expect(ferry.alive()).toBe(true);
    const r = await mb.call('get', null);
    expect(r.env!.body).toEqual({ count: mb.count });
  });
});
