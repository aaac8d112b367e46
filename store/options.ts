import { OptionReader } from '../core/options.js';
import type { HwProfile } from '../hw-profiles/index.js';
import type { BlockIo } from './block-io.js';

export const DURABILITY_MODES = ['full', 'batched'] as const;
export type Durability = (typeof DURABILITY_MODES)[number];

/** Options of `openStore`. Every field is validated on entry; errors name the field. */
export interface StoreOptions {
  /** Directory holding the store (`heap.db` and `heap.blocks`); created if missing. Required. */
  dir: string;
  /**
   * Segment size: the unit the store gathers dirty lines into and reclaims. Bytes, a power of
   * two, 4 KiB .. 16 MiB. Default: the profile's `flashWriteBlockBytes`, else 128 KiB.
   */
  segmentBytes?: number;
  /** Hardware profile; supplies `segmentBytes` when that is not given. */
  profile?: HwProfile;
  /**
   * What a power loss may take. `full` (default): nothing acknowledged — each commit syncs the
   * segment file and the SQLite WAL. `batched`: segment data is synced, the metadata commit is
   * not; a power loss may roll the store back to the last `sync()` (automatic every
   * `syncEveryCommits`), never to a torn or mixed state. A process crash loses nothing in either.
   */
  durability?: Durability;
  /** `batched` only: commits between automatic syncs. 1 .. 10,000. Default 16. */
  syncEveryCommits?: number;
  /** Checkpoint versions kept per app (older ones are reclaimed). 1 .. 1,000. Default 4. */
  keepVersions?: number;
  /**
   * Space the segment file may use, as a multiple of the live data, before compaction reclaims
   * superseded lines. Higher: less compaction (lower write amplification), more space.
   * 1.25 .. 16. Default 3.
   */
  spaceFactor?: number;
  /** Bytes compaction may copy per commit (bounds the pause it adds). 0 .. 1 GiB. Default 2 segments. */
  compactionBytesPerCommit?: number;
  /** Upper bound of the segment file, bytes; a commit that needs more fails with STORE_NO_SPACE. 0 = no bound. Default 0. */
  maxBytes?: number;
  /** SQLite page cache, KiB. 64 .. 1,048,576. Default 2,048. */
  cacheKiB?: number;
  /** Segment-file I/O; tests inject failures through it. Default: node:fs. */
  io?: BlockIo;
}

export interface ResolvedStoreOptions {
  dir: string;
  segmentBytes: number;
  durability: Durability;
  syncEveryCommits: number;
  keepVersions: number;
  spaceFactor: number;
  compactionBytesPerCommit: number;
  maxBytes: number;
  cacheKiB: number;
  io: BlockIo | undefined;
}

const KNOWN = ['dir', 'segmentBytes', 'profile', 'durability', 'syncEveryCommits', 'keepVersions', 'spaceFactor', 'compactionBytesPerCommit', 'maxBytes', 'cacheKiB', 'io'];

export function resolveStoreOptions(options: StoreOptions): ResolvedStoreOptions {
  const r: OptionReader = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(KNOWN);
  const dir = r.string('dir');
  const profile = r.raw('profile') as HwProfile | undefined;
  const segmentBytes = r.number('segmentBytes', { min: 4096, max: 16 * 1024 * 1024 }, profile?.flashWriteBlockBytes ?? 128 * 1024);
  if (!Number.isInteger(Math.log2(segmentBytes))) r.fail('segmentBytes', 'a power of two', segmentBytes);
  const io = r.raw('io') as BlockIo | undefined;
  if (io !== undefined && (typeof io !== 'object' || typeof io.pwrite !== 'function')) r.fail('io', 'a BlockIo object', io);
  return {
    dir,
    segmentBytes,
    durability: r.oneOf('durability', DURABILITY_MODES, 'full'),
    syncEveryCommits: r.number('syncEveryCommits', { min: 1, max: 10_000 }, 16),
    keepVersions: r.number('keepVersions', { min: 1, max: 1000 }, 4),
    spaceFactor: r.number('spaceFactor', { min: 1.25, max: 16, integer: false }, 3),
    compactionBytesPerCommit: r.number('compactionBytesPerCommit', { min: 0, max: 2 ** 30 }, 2 * segmentBytes),
    maxBytes: r.number('maxBytes', { min: 0, max: Number.MAX_SAFE_INTEGER }, 0),
    cacheKiB: r.number('cacheKiB', { min: 64, max: 1024 * 1024 }, 2048),
    io,
  };
}

/** Options of `createApp`. */
export interface AppOptions {
  /** Cache-line size of the app's heap segment. Bytes, power of two, 64 .. segmentBytes. */
  lineSize: number;
  /** Number of lines the app's virtual heap may hold (line ids are 0 .. maxLines-1). 1 .. 2^31. */
  maxLines: number;
}
