/**
 * The agent's log ring (agent/runtime/log-ring.ts) against a model: the full history of lines,
 * from which the ring must hold exactly the newest suffix that fits its count and byte bounds,
 * and answer every read as the model computes it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatLogLine } from '../../agent/cli/format.js';
import type { LogLine } from '../../agent/runtime/agent-options.js';
import { LOG_RING_LIMITS, LogRing, type LogQuery } from '../../agent/runtime/log-ring.js';
import { Logger } from '../../agent/runtime/logger.js';

interface ModelLine {
  seq: number;
  bytes: number;
  about: string[];
}

type Op = { add: { instance: string | undefined; removed: boolean; len: number } } | { read: { instance: string | undefined; after: number | undefined; limit: number } };

const INSTANCES = ['a', 'b', 'c'];

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ add: fc.record({ instance: fc.option(fc.constantFrom(...INSTANCES), { nil: undefined }), removed: fc.boolean(), len: fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 4000 })) }) }) },
  { weight: 1, arbitrary: fc.record({ read: fc.record({ instance: fc.option(fc.constantFrom(...INSTANCES, 'nobody'), { nil: undefined }), after: fc.option(fc.integer({ min: 0, max: 80 }), { nil: undefined }), limit: fc.integer({ min: 0, max: 12 }) }) }) },
);

const limitsArb = fc
  .record({ maxLines: fc.integer({ min: 1, max: 15 }), maxLineBytes: fc.integer({ min: 512, max: 2500 }), extra: fc.integer({ min: 0, max: 6000 }) })
  .map(({ maxLines, maxLineBytes, extra }) => ({ maxLines, maxLineBytes, maxBytes: maxLineBytes + extra }));

let clock = 0;
function lineOf(op: { instance: string | undefined; removed: boolean; len: number }): LogLine {
  const ts = new Date(1_800_000_000_000 + clock++).toISOString();
  if (op.instance === undefined) return op.removed ? { ts, level: 'info', event: 'app.removed', app: 'x', instances: ['a', 'c'] } : { ts, level: 'info', event: 'agent.thing', pad: 'p'.repeat(op.len) };
  return { ts, level: 'info', event: 'app.log', instance: op.instance, message: 'é'.repeat(op.len), data: { n: clock } };
}

/** What the model expects a read to answer. */
function expected(held: ModelLine[], lastSeq: number, q: LogQuery): { seqs: number[]; next: number; skipped: number } {
  const limit = q.limit ?? 100;
  const match = held.filter((l) => q.instance === undefined || l.about.includes(q.instance));
  if (q.after === undefined) return { seqs: match.slice(Math.max(0, match.length - limit)).map((l) => l.seq), next: lastSeq, skipped: 0 };
  const after = Math.min(q.after, lastSeq);
  const first = held[0]?.seq ?? lastSeq + 1;
  const newer = match.filter((l) => l.seq > after);
  const taken = newer.slice(0, limit);
  return { seqs: taken.map((l) => l.seq), next: newer.length > limit ? newer[limit]!.seq - 1 : lastSeq, skipped: Math.max(0, first - after - 1) };
}

describe('the log ring', () => {
  it('holds exactly the newest lines within its count and byte bounds, and reads as the model says', () => {
    fc.assert(
      fc.property(limitsArb, fc.array(opArb, { maxLength: 80 }), (limits, ops) => {
        const ring = new LogRing(limits);
        const all: ModelLine[] = [];
        for (const op of ops) {
          if ('add' in op) {
            const line = lineOf(op.add);
            ring.add(line);
            const seq = all.length + 1;
            // The line as stored: read back, its JSON text without the sequence number.
            const [stored] = ring.read({ after: seq - 1, limit: 1 }).lines;
            expect(stored!.seq).toBe(seq);
            const { seq: _s, ...rest } = stored!;
            const text = JSON.stringify(rest);
            const full = JSON.stringify(line);
            const bytes = Buffer.byteLength(text);
            if (Buffer.byteLength(full) <= limits.maxLineBytes) expect(text).toBe(full);
            else expect(rest).toMatchObject({ ts: line.ts, level: 'info', event: line.event, truncated: true, bytes: Buffer.byteLength(full) });
            expect(bytes).toBeLessThanOrEqual(limits.maxLineBytes);
            all.push({ seq, bytes, about: typeof line.instance === 'string' ? [line.instance] : Array.isArray(line.instances) ? (line.instances as string[]) : [] });
          }
          // The held lines: the longest suffix of the history within both bounds.
          const held: ModelLine[] = [];
          let bytes = 0;
          for (let i = all.length - 1; i >= 0; i--) {
            if (held.length + 1 > limits.maxLines || bytes + all[i]!.bytes > limits.maxBytes) break;
            bytes += all[i]!.bytes;
            held.unshift(all[i]!);
          }
          expect(ring.size).toBe(held.length);
          expect(ring.bytes).toBe(bytes);
          expect(ring.size).toBeLessThanOrEqual(limits.maxLines);
          expect(ring.bytes).toBeLessThanOrEqual(limits.maxBytes);
          expect(ring.droppedLines).toBe(all.length - held.length);
          if ('read' in op) {
            const q: LogQuery = { ...(op.read.instance !== undefined ? { instance: op.read.instance } : {}), ...(op.read.after !== undefined ? { after: op.read.after } : {}), limit: op.read.limit };
            const page = ring.read(q);
            const want = expected(held, all.length, q);
            expect({ seqs: page.lines.map((l) => l.seq), next: page.next, skipped: page.skipped }).toEqual(want);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a follower reading from `next` sees every line once, or a skipped count for those it missed', () => {
    fc.assert(
      fc.property(limitsArb, fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 60 }), fc.integer({ min: 1, max: 10 }), (limits, bursts, limit) => {
        const ring = new LogRing(limits);
        let next = 0;
        let seen = 0;
        let skipped = 0;
        let added = 0;
        for (const n of bursts) {
          for (let i = 0; i < n; i++) ring.add(lineOf({ instance: 'a', removed: false, len: 50 }));
          added += n;
          for (;;) {
            const page = ring.read({ after: next, limit });
            expect(page.next).toBeGreaterThanOrEqual(next);
            if (page.lines.length > 0) expect(page.lines[0]!.seq).toBe(next + page.skipped + 1);
            seen += page.lines.length;
            skipped += page.skipped;
            next = page.next;
            if (page.lines.length < limit) break;
          }
        }
        expect(seen + skipped).toBe(added);
      }),
      { numRuns: 200 },
    );
  });

  it('the default bounds: 2,000 lines, 1 MiB', () => {
    expect(LOG_RING_LIMITS).toEqual({ maxLines: 2000, maxBytes: 1024 * 1024, maxLineBytes: 16 * 1024 });
    const ring = new LogRing();
    for (let i = 0; i < 5000; i++) ring.add({ ts: 't', level: 'info', event: 'e', i });
    expect(ring.size).toBe(2000);
    for (let i = 0; i < 200; i++) ring.add({ ts: 't', level: 'info', event: 'e', pad: 'x'.repeat(15_000) });
    expect(ring.bytes).toBeLessThanOrEqual(1024 * 1024);
    expect(ring.size).toBeLessThan(200);
  });

  it('refuses bounds a shortened line would not fit', () => {
    expect(() => new LogRing({ maxLines: 0, maxBytes: 4096, maxLineBytes: 1024 })).toThrow(/maxLines/);
    expect(() => new LogRing({ maxLines: 10, maxBytes: 1000, maxLineBytes: 2000 })).toThrow(/maxLineBytes <= maxBytes/);
  });

  it('keeps a copy of the line when it is logged, not the objects in it', () => {
    const ring = new LogRing();
    const data = { n: 1 };
    ring.add({ ts: 't', level: 'info', event: 'app.log', instance: 'a', data });
    data.n = 2;
    expect(ring.read().lines[0]).toMatchObject({ data: { n: 1 } });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    ring.add({ ts: 't', level: 'warn', event: 'app.log', instance: 'a', data: cyclic });
    expect(ring.read().lines[1]).toMatchObject({ event: 'app.log', instance: 'a', unserialisable: expect.stringMatching(/circular/i) });
  });

  it('wait resolves on a line about the instance waited for, or at its time limit', async () => {
    const ring = new LogRing();
    let woke = false;
    const w = ring.wait('a', 5000).then(() => (woke = true));
    ring.add({ ts: 't', level: 'info', event: 'e', instance: 'b' });
    await new Promise((r) => setTimeout(r, 10));
    expect(woke).toBe(false);
    ring.add({ ts: 't', level: 'info', event: 'app.removed', instances: ['a'] });
    await w;
    const t0 = Date.now();
    await ring.wait(undefined, 30);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
  });

  it('the Logger fills it with every line at or above its level', () => {
    const out: LogLine[] = [];
    const log = new Logger('info', (l) => out.push(l));
    log.debug('quiet', { instance: 'a' });
    log.info('loud', { instance: 'a' });
    log.error('bad', {});
    expect(log.ring.read().lines.map((l) => [l.seq, l.event])).toEqual([
      [1, 'loud'],
      [2, 'bad'],
    ]);
    expect(out.map((l) => l.event)).toEqual(['loud', 'bad']);
  });
});

describe('ferry logs human lines', () => {
  it('<ISO time> <level> <instance> <event> key=value…, strings quoted unless one plain word', () => {
    expect(formatLogLine({ seq: 4, ts: '2026-12-07T03:12:28.155Z', level: 'info', event: 'app.log', instance: 'chat-a', message: 'hello world', data: { n: 1 } })).toBe(
      '2026-12-07T03:12:28.155Z info  chat-a app.log message="hello world" data={"n":1}',
    );
    expect(formatLogLine({ ts: '2026-12-07T03:12:28.155Z', level: 'warn', event: 'broker.lost', broker: 'mqtt://127.0.0.1:1883' })).toBe('2026-12-07T03:12:28.155Z warn  - broker.lost broker=mqtt://127.0.0.1:1883');
    // An app's text cannot drive the terminal.
    const line = formatLogLine({ ts: 't', level: 'info', event: 'app.log', instance: 'a', message: '\u001b[31mred\u009b\u202e' });
    expect(line).toBe('t info  a app.log message="\\u001b[31mred\\u009b\\u202e"');
  });
});
