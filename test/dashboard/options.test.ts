/**
 * The dashboard's parts on their own: its options (a table of each field's bounds; typed errors
 * naming `dashboard.<field>`), and the live streams with a fake source, a fake clock and fake
 * pages: rates from two samples, a heap that opened again, history kept for a later page, no
 * reads and no timer while no page watches, `maxStreams`, and close.
 */
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LiveStreams, readDashboardOptions, type InstanceFigures, type LiveSource } from '../../agent/dashboard/index.js';
import type { ControlOutcome } from '../../agent/runtime/control-server.js';
import { caught } from '../helpers/ferry-error.js';

describe('readDashboardOptions', () => {
  const FIELDS = [
    { field: 'sampleMs', min: 250, max: 10_000, dflt: 1000 },
    { field: 'maxStreams', min: 1, max: 16, dflt: 4 },
    { field: 'historySamples', min: 10, max: 1000, dflt: 120 },
    { field: 'maxBodyBytes', min: 1024, max: 1_048_576, dflt: 65_536 },
  ] as const;

  it('has the documented defaults', () => {
    const defaults = Object.fromEntries(FIELDS.map((f) => [f.field, f.dflt]));
    expect(readDashboardOptions()).toEqual(defaults);
    expect(readDashboardOptions({}, 'dashboard')).toEqual(defaults);
  });

  it.each(FIELDS)('takes $field at its bounds and refuses what is outside, a fraction, a string (BAD_OPTION naming the field)', ({ field, min, max }) => {
    expect(readDashboardOptions({ [field]: min }, 'dashboard')[field]).toBe(min);
    expect(readDashboardOptions({ [field]: max }, 'dashboard')[field]).toBe(max);
    for (const bad of [min - 1, max + 1, min + 0.5, String(min), Number.NaN, Infinity]) {
      const e = caught(() => readDashboardOptions({ [field]: bad } as never, 'dashboard'));
      expect(e.code, `${field}=${String(bad)}`).toBe('BAD_OPTION');
      expect(e.details.field).toBe(`dashboard.${field}`);
      expect(e.message).toContain(`${min}..${max}`);
    }
  });

  it('refuses an unknown field (a typo) naming it, with the known ones', () => {
    const e = caught(() => readDashboardOptions({ sampleMS: 1000 } as never, 'dashboard'));
    expect(e.code).toBe('BAD_OPTION');
    expect(e.details.field).toBe('dashboard.sampleMS');
    expect(e.message).toContain('sampleMs, maxStreams, historySamples, maxBodyBytes');
    expect(caught(() => readDashboardOptions({ port: 1 } as never)).details.field).toBe('options.port');
  });
});

/** A page's stream: what was written to it, read back as events. */
class FakePage extends EventEmitter {
  status: number | undefined;
  headers: Record<string, unknown> = {};
  written = '';
  writableEnded = false;
  writeHead(status: number, headers: Record<string, unknown>) {
    this.status = status;
    this.headers = headers;
    return this;
  }
  write(chunk: string) {
    this.written += chunk;
    return true;
  }
  end() {
    this.writableEnded = true;
    this.emit('close');
    return this;
  }
  get res(): ServerResponse {
    return this as unknown as ServerResponse;
  }
  events(name?: string): Array<{ event: string; data: any }> {
    const all = this.written
      .split('\n\n')
      .filter((b) => b !== '')
      .map((b) => {
        const m = /^event: (.+)\ndata: (.*)$/.exec(b);
        if (!m) throw new Error(`not an event: ${JSON.stringify(b)}`);
        return { event: m[1]!, data: JSON.parse(m[2]!) };
      });
    return name === undefined ? all : all.filter((e) => e.event === name);
  }
}

describe('LiveStreams', () => {
  let t: number;
  let figures: InstanceFigures[];
  let reads: number;
  let failNext: boolean;
  let logSeq: number;
  const requests: Array<[unknown, unknown]> = [];
  const source: LiveSource = {
    instances: () => {
      reads++;
      if (failNext) {
        failNext = false;
        throw new Error('an instance closed under the read');
      }
      return figures;
    },
    dispatch: async (cmd, args): Promise<ControlOutcome> => {
      requests.push([cmd, args]);
      if (cmd === 'migrations') return { ok: true, result: { active: [{ instance: 'moving' }], recent: [{}, {}] } };
      if (cmd === 'logs') {
        logSeq++;
        return { ok: true, result: { lines: [{ seq: logSeq, event: `line-${logSeq}` }], next: logSeq } };
      }
      return { ok: false, error: { code: 'AGENT_BAD_REQUEST', message: 'no' } };
    },
  };
  const heap = (faults: number) => ({ faults, residentBytes: 4096 * faults, budgetBytes: 1 << 20, virtualBytes: 1 << 16 });

  beforeEach(() => {
    vi.useFakeTimers();
    t = 1_000_000;
    reads = 0;
    logSeq = 0;
    failNext = false;
    requests.length = 0;
    figures = [{ instance: 'a', app: 'a', state: 'running', heap: heap(10), calls: 5, lastCommitSeconds: 0.0042 }];
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reads nothing until a page watches; rates come from two samples; a page gone stops the sampling (no timer left)', async () => {
    const live = new LiveStreams(source, readDashboardOptions({ sampleMs: 1000, historySamples: 10 }), () => t);
    await vi.advanceTimersByTimeAsync(5000);
    expect([reads, requests.length, vi.getTimerCount()]).toEqual([0, 0, 0]);

    const page = new FakePage();
    expect(live.add(page.res)).toBe(true);
    expect(page.status).toBe(200);
    expect(page.headers['Content-Type']).toBe('text/event-stream; charset=utf-8');
    await vi.advanceTimersByTimeAsync(0);
    expect(page.events().map((e) => e.event)).toEqual(['hello', 'sample', 'log']);
    expect(page.events('hello')[0]!.data).toEqual({ history: [], logs: [], sampleMs: 1000 });
    // The first sample has no rates (nothing to compare with).
    expect(page.events('sample')[0]!.data).toEqual({
      at: 1_000_000,
      instances: [{ instance: 'a', state: 'running', residentBytes: 40_960, budgetBytes: 1 << 20, virtualBytes: 1 << 16, lastCommitMs: 4.2 }],
      moves: { active: [{ instance: 'moving' }], ended: 2 },
    });
    expect(requests).toEqual([['migrations', {}], ['logs', { limit: 50 }]]);

    // 2 s later by the clock: 7 more calls, 6 more faults; a new instance has no rates yet.
    t += 2000;
    figures = [
      { instance: 'a', app: 'a', state: 'running', heap: heap(16), calls: 12 },
      { instance: 'b', app: 'b', state: 'suspended', calls: 3 },
    ];
    await vi.advanceTimersByTimeAsync(1000);
    expect(page.events('sample')[1]!.data.instances).toEqual([
      { instance: 'a', state: 'running', residentBytes: 65_536, budgetBytes: 1 << 20, virtualBytes: 1 << 16, faultsPerSec: 3, requestsPerSec: 3.5 },
      { instance: 'b', state: 'suspended' },
    ]);
    expect(requests.at(-1)).toEqual(['logs', { after: 1, limit: 200 }]);

    // The heap opened again (its count starts over): the new count is the new heap's faults; calls never go negative.
    t += 4000;
    figures = [{ instance: 'a', app: 'a', state: 'running', heap: heap(2), calls: 12 }, { instance: 'b', app: 'b', state: 'running', calls: 1 }];
    await vi.advanceTimersByTimeAsync(1000);
    expect(page.events('sample')[2]!.data.instances).toMatchObject([
      { instance: 'a', faultsPerSec: 0.5, requestsPerSec: 0 },
      { instance: 'b', requestsPerSec: 0 },
    ]);

    // A read that throws skips that sample; the next one comes.
    failNext = true;
    await vi.advanceTimersByTimeAsync(1000);
    expect(page.events('sample')).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1000);
    expect(page.events('sample')).toHaveLength(4);

    // The page goes: at most the tick already scheduled runs, then no timer and no reads.
    page.emit('close');
    expect(live.watching).toBe(0);
    await vi.advanceTimersByTimeAsync(1000);
    const after = reads;
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(reads).toBe(after);

    // A page opened later (a minute on, with more calls and faults) gets the kept samples and recent log lines at once.
    t += 60_000;
    figures = [{ instance: 'a', app: 'a', state: 'running', heap: heap(40), calls: 100 }];
    const later = new FakePage();
    live.add(later.res);
    const hello = later.events('hello')[0]!.data as { history: Array<{ at: number }>; logs: Array<{ seq: number }> };
    const seen = page.events('sample').map((e) => e.data.at as number);
    expect(hello.history.length).toBeGreaterThanOrEqual(seen.length);
    expect(hello.history.length).toBeLessThanOrEqual(seen.length + 1); // the tick scheduled when it went
    expect(hello.history.slice(0, seen.length).map((s) => s.at)).toEqual(seen);
    expect(hello.logs.slice(0, 4).map((l) => l.seq)).toEqual(page.events('log').map((e) => e.data.seq as number));
    // Its first sample has no rates: the idle gap is not averaged into one point.
    await vi.advanceTimersByTimeAsync(0);
    expect(later.events('sample')[0]!.data.instances).toEqual([{ instance: 'a', state: 'running', residentBytes: 163_840, budgetBytes: 1 << 20, virtualBytes: 1 << 16 }]);
    live.close();
  });

  it('keeps only historySamples samples, refuses a page over maxStreams, and close ends every stream and the timer', async () => {
    const live = new LiveStreams(source, readDashboardOptions({ sampleMs: 250, historySamples: 10, maxStreams: 2 }), () => t);
    const pages = [new FakePage(), new FakePage(), new FakePage()];
    expect(pages.map((p) => live.add(p.res))).toEqual([true, true, false]);
    expect(pages[2]!.status).toBeUndefined();
    expect(pages[2]!.written).toBe('');
    for (let i = 0; i < 15; i++) {
      t += 250;
      await vi.advanceTimersByTimeAsync(250);
    }
    expect(pages[0]!.events('sample')).toHaveLength(16);
    pages[1]!.emit('close');
    const third = new FakePage();
    expect(live.add(third.res)).toBe(true);
    const history = third.events('hello')[0]!.data.history as Array<{ at: number }>;
    expect(history.map((s) => s.at)).toEqual(pages[0]!.events('sample').slice(-10).map((e) => e.data.at));
    live.close();
    expect([pages[0]!.writableEnded, third.writableEnded, live.watching, vi.getTimerCount()]).toEqual([true, true, 0, 0]);
    expect(live.add(new FakePage().res)).toBe(false);
  });
});
