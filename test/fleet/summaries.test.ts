import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Channels } from '../../agent/bridge/channel.js';
import { readFleetOptions } from '../../agent/fleet/options.js';
import { Summaries } from '../../agent/fleet/summaries.js';
import type { DeviceFigures } from '../../agent/fleet/summary-wire.js';
import { contentHash, openStore, type Store } from '../../store/index.js';
import { FerryError } from '../../core/errors.js';

/**
 * The region summaries' exchange between two devices (agent/fleet/DESIGN.md, "Refresh", "Stale"):
 * real stores, the sealed channel replaced by a direct call (test/fleet/choice.test.ts runs the
 * real one between agent processes) that can be cut, and a clock the test moves.
 */

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function store(): Store {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-summaries-'));
  dirs.push(dir);
  const s = openStore({ dir });
  stores.push(s);
  return s;
}

const LS = 256;
const line = (tag: string, i: number) => new TextEncoder().encode(`${tag}:${i}`.padEnd(LS, '.'));

function commit(s: Store, heap: string, tag: string, lines: number[]): void {
  if (!s.hasApp(heap)) s.createApp(heap, { lineSize: LS, maxLines: 1000 });
  const tx = s.begin(heap);
  for (const l of lines) tx.write(l, line(tag, l));
  tx.setState(new Uint8Array([1]));
  tx.commit();
}

const device = (): DeviceFigures => ({ profile: 'rpi-4b', wordBits: 64, lineSize: 4096, heapBudgetBytes: 1 << 20, bandwidthBps: 1e8, latencyMs: 1, instances: 1, maxInstances: 8, services: [], codes: [] });

/** Two devices' summaries joined by a cuttable direct channel, on one clock. */
function pair() {
  let now = 1_000_000;
  let cut = false;
  const sent: Array<{ from: string; type: string; body: unknown }> = [];
  const handlers = new Map<string, Map<string, (peer: string, b: unknown) => unknown>>();
  const channel = (self: string): Channels =>
    ({
      handle: (type: string, h: (peer: string, b: unknown) => unknown) => {
        if (!handlers.has(self)) handlers.set(self, new Map());
        handlers.get(self)!.set(type, h);
      },
      request: async (peer: string, type: string, body: unknown) => {
        if (cut) throw new FerryError('BUS_TIMEOUT', `${peer} did not answer ${type}`, { field: 'peer' });
        sent.push({ from: self, type, body });
        // Through CBOR's shapes: the record is plain data; a copy keeps the sender's objects out of the receiver.
        return handlers.get(peer)!.get(type)!(self, structuredClone(body));
      },
    }) as unknown as Channels;
  const sa = store();
  const sb = store();
  const heapsA = new Set<string>();
  const o = readFleetOptions({ summaryRefreshMs: 1000, keepaliveEvery: 5 });
  const mk = (self: string, peer: string, s: Store, heaps: () => string[]) => new Summaries({ channels: channel(self), peers: () => [peer], store: s, heaps, device, log: () => undefined, now: () => now }, o);
  const a = mk('a', 'b', sa, () => [...heapsA]);
  const b = mk('b', 'a', sb, () => []);
  return { a, b, sa, heapsA, sent, advance: (ms: number) => (now += ms), setCut: (v: boolean) => (cut = v) };
}

describe('region summaries between two devices', () => {
  it('sends the whole view first, then only heaps that committed, a keepalive when nothing did; the receiver holds what is true', async () => {
    const p = pair();
    commit(p.sa, 'notes', 'v1', [0, 1, 2]);
    commit(p.sa, 'clock', 'v1', [0]);
    p.heapsA.add('notes').add('clock');
    await p.a.tick();
    const first = p.sent.at(-1)!.body as { full: boolean; heaps: Array<{ heap: string }> };
    expect(first.full).toBe(true);
    expect(first.heaps.map((h) => h.heap).sort()).toEqual(['clock', 'notes']);
    const seen = p.b.of('a')!;
    expect(seen.fresh).toBe(true);
    const notes = seen.view.heaps.get('notes')!.set;
    expect([0, 1, 2].every((l) => notes.has(contentHash(line('v1', l))))).toBe(true);
    expect(notes.has(contentHash(line('v2', 0)))).toBe(false);

    // Nothing changed: nothing sent until the keepalive is due (5 intervals).
    const count = p.sent.length;
    p.advance(1000);
    await p.a.tick();
    expect(p.sent.length).toBe(count);

    // notes commits: only notes goes, and the old version's lines still count (a kept version).
    commit(p.sa, 'notes', 'v2', [0]);
    p.advance(1000);
    await p.a.tick();
    const delta = p.sent.at(-1)!.body as { full: boolean; heaps: Array<{ heap: string }>; removed: string[] };
    expect(delta.full).toBe(false);
    expect(delta.heaps.map((h) => h.heap)).toEqual(['notes']);
    const again = p.b.of('a')!.view.heaps.get('notes')!.set;
    expect(again.has(contentHash(line('v2', 0)))).toBe(true);
    expect(again.has(contentHash(line('v1', 0)))).toBe(true);
    expect(p.b.of('a')!.view.heaps.has('clock')).toBe(true);

    // A heap dropped here is removed there.
    p.heapsA.delete('clock');
    p.advance(1000);
    await p.a.tick();
    expect((p.sent.at(-1)!.body as { removed: string[] }).removed).toEqual(['clock']);
    expect(p.b.of('a')!.view.heaps.has('clock')).toBe(false);

    // Five quiet intervals later a keepalive (no heaps) keeps it fresh.
    p.advance(5000);
    await p.a.tick();
    expect(p.sent.at(-1)!.body).toMatchObject({ full: false, heaps: [], removed: [] });
    expect(p.b.of('a')!.fresh).toBe(true);
    expect(p.a.traffic.records).toBe(4);
  });

  it('a cut link makes the view stale at the receiver; the next send after it is the whole view; a receiver that restarted asks for it', async () => {
    const p = pair();
    commit(p.sa, 'notes', 'v1', [0, 1]);
    p.heapsA.add('notes');
    await p.a.tick();
    p.setCut(true);
    commit(p.sa, 'notes', 'v2', [1]);
    p.advance(1000);
    await p.a.tick();
    // Promised within 5 s; stale past 1.5 × that + 5 s.
    p.advance(12_600);
    expect(p.b.of('a')!.fresh).toBe(false);
    p.setCut(false);
    await p.a.tick();
    expect((p.sent.at(-1)!.body as { full: boolean }).full).toBe(true);
    expect(p.b.of('a')!.fresh).toBe(true);
    expect(p.b.of('a')!.view.heaps.get('notes')!.set.has(contentHash(line('v2', 1)))).toBe(true);

    // The receiver forgot everything (it restarted): a delta on top of nothing asks for the whole.
    p.b.forget('a');
    commit(p.sa, 'notes', 'v3', [0]);
    p.advance(1000);
    await p.a.tick();
    expect(p.b.of('a')!.fresh).toBe(false); // a delta alone is not a complete view
    p.advance(1000);
    await p.a.tick();
    expect((p.sent.at(-1)!.body as { full: boolean }).full).toBe(true);
    expect(p.b.of('a')!.fresh).toBe(true);
  });

  it('a pull answers the whole view; a malformed record is refused by field and the view held before stays', async () => {
    const p = pair();
    commit(p.sa, 'notes', 'v1', [0]);
    p.heapsA.add('notes');
    const got = await p.b.ask('a');
    expect(got?.heaps.has('notes')).toBe(true);
    // A record from a to b whose set claims more values than its data holds.
    const fromA = (p.a as unknown as { l: { channels: { request: (peer: string, t: string, b: unknown) => Promise<unknown> } } }).l.channels;
    const e = await fromA.request('b', 'fleet.summary', { v: 1, device: device(), heaps: [{ heap: 'notes', version: 1, n: 1, p: 10, count: 5, data: new Uint8Array(1) }], removed: [], full: true, nextWithinMs: 1000 }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'FLEET_SUMMARY_MALFORMED', details: { field: 'body.heaps[0]' } });
    expect(p.b.of('a')!.view.heaps.get('notes')!.set.has(contentHash(line('v1', 0)))).toBe(true);
    expect(p.b.of('a')!.view.heaps.get('notes')!.summary.count).toBe(1);
  });
});
