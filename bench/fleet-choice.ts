/**
 * Handoff across a fleet (agent/fleet), measured with real agent processes (the built `ferry`,
 * rpi-4b profiles, one aedes broker in this process), all paired with one origin:
 * - chosenBytesOverBestBytes: peers hold different parts of an instance's heap from earlier
 *   stays; `migrate --best` (after `--refresh`: fresh summaries) moves it, and its bytes sent are
 *   divided by the fewest any fitting peer would have needed, each asked exactly (a dry run) just
 *   before. 1.0: the choice was the cheapest.
 * - summaries: the bytes of a heap's summary set per 1,000 lines, and of whole records; the
 *   refresh traffic of a heap committing all the time, measured over a window at a short refresh
 *   interval and projected per hour at the default (60 s), per peer; a keepalive's bytes.
 * - evacuationOverSingleMoves: `ferry evacuate` of three instances, its total time over the sum of
 *   three single `migrate --best` moves of three others of the same sizes (different data, so no
 *   move reuses another's lines).
 * Called from bench/bridge.ts; runs alone with `tsx bench/fleet-choice.ts [--quick]`.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MoveReport } from '../agent/bridge/move-report.js';
import type { Candidate, PlanReport } from '../agent/fleet/index.js';
import { startAedes } from '../test/helpers/brokers.js';
import { pairSides, runAlone, startSide, stopSides, type Side } from './lib/agent-sides.js';

export interface FleetFigures {
  candidates: number;
  heapLines: number;
  /** The chosen peer's bytes sent over the fewest any fitting candidate needed (dry runs). */
  chosenBytesOverBestBytes: number;
  chosenBytesSent: number;
  bestBytesNeeded: number;
  /** Each candidate: its summary's estimate and its exact answer, bytes. */
  estimates: Array<{ peer: string; estimate: number; exact: number }>;
  summaryBytesPer1000Lines: number;
  summaryRecordBytesPer1000Lines: number;
  refresh: { windowMs: number; refreshMs: number; records: number; bytes: number; perHourAtDefaultPerPeer: number; keepaliveBytes: number };
  evacuationOverSingleMoves: number;
  evacuationMs: number;
  /** Each evacuated instance's move, as its report gives it (pre-copy to running there), ms. */
  evacuationMovesMs: number[];
  singleMovesMs: number[];
  /** The single moves' own reports, ms. */
  singleReportsMs: number[];
}

const APP = `export default {
  name: 'filler',
  version: '1.0.0',
  init(ctx) { ctx.root.slots = []; ctx.root.n = 0; },
  handlers: {
    fill(ctx, m) {
      let x = (m.seed * 2654435761) >>> 0;
      for (let i = 0; i < m.count; i++) {
        let s = '';
        for (let j = 0; j < 1000; j++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; s += String.fromCharCode(33 + ((x >>> 16) % 90)); }
        ctx.root.slots.push({ s });
      }
      return ctx.root.slots.length;
    },
    rewrite(ctx, m) { for (let i = m.from; i < m.to; i++) ctx.root.slots[i] = { s: m.tag + ctx.root.slots[i].s.slice(m.tag.length) }; return true; },
    tick(ctx) { ctx.root.n++; return ctx.root.n; },
  },
};
`;

const REFRESH_MS = 500;

async function finished(s: Side, started: { id: string } | MoveReport): Promise<MoveReport> {
  if ('outcome' in started) return started;
  let after = 0;
  for (;;) {
    const w = (await s.agent.control('migrate-watch', { id: started.id, after })) as { events: Array<{ seq: number }>; done?: MoveReport };
    for (const e of w.events) after = Math.max(after, e.seq);
    if (w.done) return w.done;
  }
}

async function move(from: Side, instance: string, to: string): Promise<MoveReport> {
  const r = await finished(from, (await from.agent.control('migrate', { instance, peer: to, options: { downtimeLimitMs: 5000 } })) as { id: string });
  if (r.outcome !== 'moved') throw new Error(`the move of ${instance} to ${to} ended ${r.outcome}: ${r.message ?? ''}`);
  return r;
}

const call = (s: Side, instance: string, handler: string, message: unknown) => s.agent.control('call', { instance, handler, message });

export async function measureFleet(opts: { quick: boolean }): Promise<FleetFigures> {
  const slots = opts.quick ? 120 : 600; // ~1 KB each: 4 KiB lines hold 3-4
  const root = mkdtempSync(join(tmpdir(), 'ferry-bench-fleet-'));
  const broker = await startAedes({ persistent: true });
  const sides: Side[] = [];
  try {
    const tag = process.pid;
    const names = opts.quick ? ['fa', 'fb', 'fc'] : ['fa', 'fb', 'fc', 'fd'];
    const all = await Promise.all([startSide(broker.url, root, `fo-${tag}`, 'rpi-4b', { summaryRefreshMs: REFRESH_MS }), ...names.map((n) => startSide(broker.url, root, `${n}-${tag}`, 'rpi-4b', { summaryRefreshMs: REFRESH_MS }))]);
    sides.push(...all);
    const [o, ...peers] = all as [Side, ...Side[]];
    for (const p of peers) await pairSides(o, p);
    const appFile = join(root, 'filler.mjs');
    writeFileSync(appFile, APP);
    await o.agent.control('install', { path: appFile });
    await o.agent.control('run', { app: 'filler', instance: 'heap' });
    await call(o, 'heap', 'fill', { seed: 1, count: slots });

    // Peer k (but the first, which never sees it) held the heap before a share of it changed: later peers, smaller shares.
    for (let k = 1; k < peers.length; k++) {
      await move(o, 'heap', peers[k]!.id);
      await move(peers[k]!, 'heap', o.id);
      await call(o, 'heap', 'rewrite', { from: 0, to: Math.round(slots / (k + 1)), tag: `r${k}` });
    }
    const view = (await o.agent.control('peers-for', { instance: 'heap', refresh: true })) as { lines: number; candidates: Candidate[] };
    const estimates: FleetFigures['estimates'] = [];
    for (const c of view.candidates.filter((x) => x.fits)) {
      const dry = (await o.agent.control('migrate', { instance: 'heap', peer: c.peer, options: { dryRun: true } })) as MoveReport;
      estimates.push({ peer: c.peer, estimate: c.lineBytesNeeded, exact: dry.bytesMissing });
    }
    const best = Math.min(...estimates.map((e) => e.exact));
    const b = (await o.agent.control('migrate-best', { instance: 'heap', options: { downtimeLimitMs: 5000 } })) as { chosen: Candidate; started: { id: string } };
    const chosenMove = await finished(o, b.started);
    const chosenSide = peers.find((p) => p.id === b.chosen.peer)!;
    await move(chosenSide, 'heap', o.id);

    // Summaries: sizes from the origin's own view; refresh traffic while a heap commits all the time.
    const own = (await o.agent.control('fleet-summaries')) as { own: Array<{ heap: string; lines: number; bytes: number }>; traffic: { records: number; bytes: number }; keepaliveBytes: number };
    const mine = own.own.find((h) => h.heap === 'heap')!;
    const before = own.traffic;
    const windowMs = opts.quick ? 2000 : 15_000;
    const until = performance.now() + windowMs;
    while (performance.now() < until) await call(o, 'heap', 'tick', {});
    const after = ((await o.agent.control('fleet-summaries')) as { traffic: { records: number; bytes: number } }).traffic;
    const records = after.records - before.records;
    const bytes = after.bytes - before.bytes;
    const perRecord = records > 0 ? bytes / records : 0;
    const keepaliveBytes = own.keepaliveBytes;

    // Evacuation against single moves of instances of the same sizes (different data: nothing shared).
    const sizes = opts.quick ? [10, 40, 80] : [40, 160, 320];
    const singles: number[] = [];
    const singleReports: number[] = [];
    for (const [i, n] of sizes.entries()) {
      await o.agent.control('run', { app: 'filler', instance: `s${i}` });
      await call(o, `s${i}`, 'fill', { seed: 100 + i, count: n });
      const t = performance.now();
      const m = (await o.agent.control('migrate-best', { instance: `s${i}`, options: { downtimeLimitMs: 5000 } })) as { started: { id: string } };
      singleReports.push((await finished(o, m.started)).totalMs);
      singles.push(performance.now() - t);
    }
    for (const [i, n] of sizes.entries()) {
      await o.agent.control('run', { app: 'filler', instance: `e${i}` });
      await call(o, `e${i}`, 'fill', { seed: 200 + i, count: n });
    }
    // The heap instance moves away too in an evacuation; park it elsewhere first so the three compare.
    await move(o, 'heap', peers[0]!.id);
    const t = performance.now();
    const ev = (await o.agent.control('evacuate', { timeLimitMs: 300_000, downtimeLimitMs: 5000 })) as PlanReport;
    const evacuationMs = performance.now() - t;
    if (ev.moved !== sizes.length) throw new Error(`the evacuation moved ${ev.moved} of ${sizes.length}: ${JSON.stringify(ev.steps)}`);
    const sum = singles.reduce((x, y) => x + y, 0);
    const r4 = (x: number) => Math.round(x * 10_000) / 10_000;
    return {
      candidates: peers.length,
      heapLines: view.lines,
      chosenBytesOverBestBytes: r4(chosenMove.bytesSent / best),
      chosenBytesSent: chosenMove.bytesSent,
      bestBytesNeeded: best,
      estimates,
      summaryBytesPer1000Lines: Math.round((mine.bytes / mine.lines) * 1000),
      summaryRecordBytesPer1000Lines: Math.round((perRecord / mine.lines) * 1000),
      refresh: { windowMs, refreshMs: REFRESH_MS, records, bytes, perHourAtDefaultPerPeer: Math.round((perRecord * 3600_000) / 60_000), keepaliveBytes },
      evacuationOverSingleMoves: r4(evacuationMs / sum),
      evacuationMs: Math.round(evacuationMs),
      singleMovesMs: singles.map((x) => Math.round(x)),
      evacuationMovesMs: ev.steps.map((s) => s.totalMs ?? 0),
      singleReportsMs: singleReports,
    };
  } finally {
    await stopSides(sides, broker, root);
  }
}

await runAlone(import.meta.url, 'fleet', measureFleet);
