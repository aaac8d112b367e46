import { FerryError } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';
import type { HwProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import { SystemArea } from './system-area.js';

/** Time source; tests inject a manual one. */
export interface HeapClock {
  now(): number;
}

export const systemClock: HeapClock = { now: () => Date.now() };

/** Options of `openHeap`. Every field is validated on entry; errors name the field. */
export interface HeapOptions {
  /** The store holding the app's heap segment. Required. */
  store: Store;
  /** App id (the store's app id rules). Required. */
  app: string;
  /** Hardware profile: line size, in-memory budget and virtual heap size come from it. Required. */
  profile: HwProfile;
  /** Open this committed version instead of the newest. Opening an older version read-write first restores it as the newest (`store.restore`). Default: newest. */
  version?: number;
  /** Open without the right to change anything (browsing an old checkpoint). Default false. */
  readOnly?: boolean;
  /**
   * In-memory budget override, bytes: resident lines plus the nursery never exceed it.
   * 4 lines .. profile.heapBudgetBytes × 64. Default: profile.heapBudgetBytes.
   */
  budgetBytes?: number;
  /**
   * Share of the budget given to the nursery (new objects that have not survived a
   * collection or checkpoint yet). 0 disables the nursery: every new object is placed in a
   * line at once. 0 .. 0.5. Default 0.25.
   */
  nurseryFraction?: number;
  /** Largest encoded size of one object (a string, bytes, an object with its fields). Bytes, 64 .. 16 MiB. Default min(64 KiB, budget / 4). */
  maxObjectBytes?: number;
  /** Lines evicted at a time when free slots run short. 1 .. 1024. Default 4. */
  evictBatch?: number;
  /** Free slots kept ready: eviction starts below it. 1 .. slots / 2. Default max(1, slots / 16). */
  freeSlots?: number;
  /** Automatic checkpoint once this many lines are dirty. 1 .. 1,000,000. Default slots / 2. */
  checkpointDirtyLines?: number;
  /** Automatic checkpoint at most this long after the first change, ms. 0 = never by time. 0 .. 86,400,000. Default 30,000. */
  checkpointIntervalMs?: number;
  /** Major collection at least this often, ms (0 = never by time). 0 .. 86,400,000. Default 0. */
  gcIntervalMs?: number;
  /**
   * Major collection when the virtual heap's free lines fall below this fraction (and, after a
   * collection that could not get back above it, only once another quarter of the reserve has
   * been used: live data filling the reserve must not make every write collect). 0 .. 0.9. Default 0.1.
   */
  gcLowSpaceFraction?: number;
  /** Major collection when faults per barrier access over the last 10,000 accesses exceed this. 0 .. 1 (0 = never). Default 0.05. */
  gcPagingFaultRate?: number;
  /** Run automatic checkpoints and collections from timers (between JS tasks). The runtime turns it off and drives them at bookmarks. Default false. */
  autoCheckpoint?: boolean;
  /** Produces the non-heap state blob for automatic checkpoints. Default: keep the last one. */
  stateProvider?: () => Uint8Array;
  /** Told about failed automatic checkpoints (they never throw into app code). */
  onCheckpointError?: (error: FerryError) => void;
  /** Clock for the interval triggers. Default Date.now. */
  clock?: HeapClock;
  /** The device's system lines (shared code and read-only data), offered read-only as `heap.system`. */
  system?: SystemArea;
}

export interface ResolvedHeapOptions {
  store: Store;
  app: string;
  profile: HwProfile;
  version: number | undefined;
  readOnly: boolean;
  lineSize: number;
  maxLines: number;
  budgetBytes: number;
  nurseryBytes: number;
  slots: number;
  maxObjectBytes: number;
  evictBatch: number;
  freeSlots: number;
  checkpointDirtyLines: number;
  checkpointIntervalMs: number;
  gcIntervalMs: number;
  gcLowSpaceFraction: number;
  gcPagingFaultRate: number;
  autoCheckpoint: boolean;
  stateProvider: (() => Uint8Array) | undefined;
  onCheckpointError: ((error: FerryError) => void) | undefined;
  clock: HeapClock;
  system: SystemArea | undefined;
}

const KNOWN = [
  'store', 'app', 'profile', 'version', 'readOnly', 'budgetBytes', 'nurseryFraction', 'maxObjectBytes', 'evictBatch',
  'freeSlots', 'checkpointDirtyLines', 'checkpointIntervalMs', 'gcIntervalMs', 'gcLowSpaceFraction', 'gcPagingFaultRate',
  'autoCheckpoint', 'stateProvider', 'onCheckpointError', 'clock', 'system',
];

/** Addresses are 32-bit byte offsets (object-table entries), so one app's virtual heap is at most 4 GiB − 1 line. */
const MAX_VIRTUAL = 2 ** 32;

export function resolveHeapOptions(options: HeapOptions): ResolvedHeapOptions {
  const r: OptionReader = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(KNOWN);
  const store = r.raw('store') as Store;
  if (store === null || typeof store !== 'object' || typeof (store as Partial<Store>).begin !== 'function') r.fail('store', 'an open Store', store);
  const app = r.string('app');
  const profile = r.raw('profile') as HwProfile;
  if (profile === null || typeof profile !== 'object' || typeof profile.cacheLineBytes !== 'number') r.fail('profile', 'a HwProfile', profile);
  const lineSize = profile.cacheLineBytes;
  const maxLines = Math.floor(Math.min(profile.virtualHeapBytes, MAX_VIRTUAL) / lineSize) - 1;
  const budgetBytes = r.number('budgetBytes', { min: 4 * lineSize, max: profile.heapBudgetBytes * 64 }, profile.heapBudgetBytes);
  const nurseryFraction = r.number('nurseryFraction', { min: 0, max: 0.5, integer: false }, 0.25);
  const nurseryBytes = Math.floor(budgetBytes * nurseryFraction);
  const slots = Math.floor((budgetBytes - nurseryBytes) / lineSize);
  if (slots < 4) r.fail('budgetBytes', `at least 4 lines (${4 * lineSize} bytes) outside the nursery`, budgetBytes);
  const version = r.has('version') ? r.number('version', { min: 1, max: Number.MAX_SAFE_INTEGER }) : undefined;
  const fn = <T>(name: string): T | undefined => {
    const v = r.raw(name);
    if (v !== undefined && typeof v !== 'function') r.fail(name, 'a function', v);
    return v as T | undefined;
  };
  const clock = (r.raw('clock') as HeapClock | undefined) ?? systemClock;
  if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function') r.fail('clock', 'an object with now()', clock);
  return {
    store, app, profile, version,
    readOnly: r.boolean('readOnly', false),
    lineSize, maxLines, budgetBytes, nurseryBytes, slots,
    maxObjectBytes: r.number('maxObjectBytes', { min: 64, max: 16 * 2 ** 20 }, Math.min(64 * 1024, Math.floor(budgetBytes / 4))),
    evictBatch: r.number('evictBatch', { min: 1, max: 1024 }, 4),
    freeSlots: r.number('freeSlots', { min: 1, max: Math.max(1, Math.floor(slots / 2)) }, Math.max(1, Math.floor(slots / 16))),
    checkpointDirtyLines: r.number('checkpointDirtyLines', { min: 1, max: 1_000_000 }, Math.max(1, Math.floor(slots / 2))),
    checkpointIntervalMs: r.number('checkpointIntervalMs', { min: 0, max: 86_400_000 }, 30_000),
    gcIntervalMs: r.number('gcIntervalMs', { min: 0, max: 86_400_000 }, 0),
    gcLowSpaceFraction: r.number('gcLowSpaceFraction', { min: 0, max: 0.9, integer: false }, 0.1),
    gcPagingFaultRate: r.number('gcPagingFaultRate', { min: 0, max: 1, integer: false }, 0.05),
    autoCheckpoint: r.boolean('autoCheckpoint', false),
    stateProvider: fn('stateProvider'),
    onCheckpointError: fn('onCheckpointError'),
    clock,
    system: (() => {
      const sys = r.raw('system');
      if (sys !== undefined && !(sys instanceof SystemArea)) r.fail('system', 'a SystemArea (openSystemArea)', sys);
      return sys as SystemArea | undefined;
    })(),
  };
}

export function heapClosed(app: string): FerryError {
  return new FerryError('HEAP_CLOSED', `the heap of app ${app} is closed`, { field: 'heap', app });
}
