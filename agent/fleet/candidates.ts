import { FerryError } from '../../core/errors.js';
import type { LineInfo } from '../../store/index.js';
import type { PeerSummaries } from './summaries.js';
import type { DeviceFigures } from './summary-wire.js';

/**
 * Which paired peers can take an instance, and how well (agent/fleet/DESIGN.md, "Choosing the
 * destination"): the peers that meet its minimum configuration, ranked by the bytes each would
 * need (the lines it lacks by content hash, from its region summaries), then by the time its link
 * takes to carry them, then by the room it has left.
 */

/** What the instance needs of a destination, and its heap as lines. */
export interface Wanted {
  instance: string;
  app: string;
  code: string;
  /** Bytes of the app's module (sent when a destination lacks it). */
  codeBytes: number;
  lineSize: number;
  wordBits: number;
  /** The app's own word-size requirement, if it has one. */
  requiredWordBits: 32 | 64 | undefined;
  minHeapBytes: number;
  /** Service types the app cannot run without. */
  services: string[];
  lines: readonly LineInfo[];
}

/** One paired peer as a destination. */
export interface Candidate {
  peer: string;
  label: string;
  profile: string;
  fits: boolean;
  /** Why it fits or does not, for people. */
  why: string;
  reachable: boolean;
  summary: 'fresh' | 'stale' | 'none';
  path: 'lines' | 'objects';
  /** Bytes the move would send (lines it lacks, its code if it lacks it); the whole heap on the object path. */
  bytesNeeded: number;
  /** Of those, the lines' bytes (what `move.have` would find missing, but for false positives). */
  lineBytesNeeded: number;
  linesNeeded: number;
  linesHeld: number;
  heapBytes: number;
  codeNeeded: boolean;
  /** bytesNeeded over the link between the two devices plus four round trips, ms (an estimate for ranking). */
  transferMs: number;
  /** Instances it can still take. */
  freePlaces: number;
  /** 1 for the best; absent for those that do not fit. */
  rank?: number;
}

/** A peer as the choice sees it. */
export interface PeerFacts {
  peer: string;
  label: string;
  profile: string;
  reachable: boolean;
  summaries: { view: PeerSummaries; fresh: boolean } | undefined;
  /** Instances this run already sent there (a plan's or an evacuation's; the peer's own figure lags). */
  placed: number;
}

/** Ranks the peers for `w`; `here` is this device's link. */
export function rankCandidates(w: Wanted, peers: readonly PeerFacts[], here: { bandwidthBps: number; latencyMs: number }): Candidate[] {
  const heapBytes = w.lines.reduce((n, l) => n + l.len, 0);
  const out = peers.map((p) => judge(w, p, here, heapBytes));
  const fit = out.filter((c) => c.fits).sort((a, b) => a.bytesNeeded - b.bytesNeeded || a.transferMs - b.transferMs || b.freePlaces - a.freePlaces || (a.peer < b.peer ? -1 : 1));
  fit.forEach((c, i) => (c.rank = i + 1));
  return [...fit, ...out.filter((c) => !c.fits).sort((a, b) => (a.peer < b.peer ? -1 : 1))];
}

function judge(w: Wanted, p: PeerFacts, here: { bandwidthBps: number; latencyMs: number }, heapBytes: number): Candidate {
  const base: Candidate = {
    peer: p.peer,
    label: p.label,
    profile: p.profile,
    fits: false,
    why: '',
    reachable: p.reachable,
    summary: p.summaries ? (p.summaries.fresh ? 'fresh' : 'stale') : 'none',
    path: 'lines',
    bytesNeeded: heapBytes + w.codeBytes,
    lineBytesNeeded: heapBytes,
    linesNeeded: w.lines.length,
    linesHeld: 0,
    heapBytes,
    codeNeeded: true,
    transferMs: 0,
    freePlaces: 0,
  };
  if (!p.reachable) return { ...base, why: 'unreachable: it did not answer' };
  if (!p.summaries) return { ...base, why: 'no summary: it did not send its figures' };
  const d: DeviceFigures = p.summaries.view.device;
  const freePlaces = Math.max(0, d.maxInstances - d.instances - p.placed);
  const path = d.lineSize === w.lineSize && d.wordBits === w.wordBits ? 'lines' : 'objects';
  let linesHeld = 0;
  let bytesNeeded = 0;
  if (path === 'lines') {
    const sets = [...p.summaries.view.heaps.values()].map((h) => h.set);
    for (const l of w.lines) {
      if (sets.some((s) => s.has(l.hash))) linesHeld++;
      else bytesNeeded += l.len;
    }
  } else bytesNeeded = heapBytes; // objects are rebuilt there: nothing is reused
  const lineBytesNeeded = bytesNeeded;
  const codeNeeded = !d.codes.includes(w.code);
  if (codeNeeded) bytesNeeded += w.codeBytes;
  const bw = Math.min(here.bandwidthBps, d.bandwidthBps);
  const rtt = 2 * (here.latencyMs + d.latencyMs);
  const transferMs = Math.round((bytesNeeded * 8 * 1000) / bw + 4 * rtt);
  const c: Candidate = { ...base, path, bytesNeeded, lineBytesNeeded, linesNeeded: w.lines.length - linesHeld, linesHeld, codeNeeded, transferMs, freePlaces };
  const no = misfit(w, d, freePlaces);
  return no ? { ...c, why: no } : { ...c, fits: true, why: `fits: holds ${linesHeld} of ${w.lines.length} lines${codeNeeded ? '' : ' and the code'}; ${freePlaces} places free` };
}

function misfit(w: Wanted, d: DeviceFigures, freePlaces: number): string | undefined {
  if (freePlaces <= 0) return `full: runs ${d.instances} of its ${d.maxInstances} instances`;
  if (d.heapBudgetBytes < w.minHeapBytes) return `heap budget ${d.heapBudgetBytes} B is below the app's minHeapBytes ${w.minHeapBytes}`;
  if (w.requiredWordBits !== undefined && d.wordBits !== w.requiredWordBits) return `word size ${d.wordBits} bits; the app requires ${w.requiredWordBits}`;
  const missing = w.services.filter((s) => !d.services.includes(s));
  if (missing.length > 0) return `cannot find required service ${missing.join(', ')}`;
  return undefined;
}

/** The top candidate, or FLEET_NO_CANDIDATE listing why none fits. */
export function bestOf(instance: string, ranked: readonly Candidate[]): Candidate {
  const top = ranked.find((c) => c.fits);
  if (top) return top;
  const why = ranked.length === 0 ? 'no peer is paired (ferry pair <peer>)' : ranked.map((c) => `${c.peer}: ${c.why}`).join('; ');
  throw new FerryError('FLEET_NO_CANDIDATE', `no paired peer can take ${instance}: ${why}`, { field: 'peer' });
}
