import { FerryError } from '../../core/errors.js';
import { describe } from '../../core/options.js';
import { NAME } from '../runtime/app-definition.js';

/**
 * The handoff's sealed records (transports/PROTOCOL.md §B.8): the bodies of the
 * `move.*` requests and their checks. Every field is checked on arrival and a bad one is refused
 * with MIGRATE_PROTOCOL naming it; nothing is acted on before the whole body has passed.
 */

/** A move's id: 16 random bytes, base64url. */
export const MOVE_ID = /^[A-Za-z0-9_-]{22}$/;
/** Content hashes are the store's (16 bytes). */
export const HASH_BYTES = 16;

/** A line of an image round: its number, its content hash, and its bytes unless the receiver holds that hash. */
export type WireLine = [line: number, hash: Uint8Array, bytes: Uint8Array | null];

export interface PrepareBody {
  id: string;
  instance: string;
  app: string;
  appVersion: string;
  code: string;
  lineSize: number;
  maxLines: number;
  wordBits: number;
  minHeapBytes: number;
  /** The app's own word-size requirement (absent: none). */
  requiredWordBits?: 32 | 64;
  services: Array<{ type: string; optional: boolean; attributes: Record<string, string | number | boolean> }>;
  /** Leases the app holds: what kind of resource, and whose. */
  leases: Array<{ type: string; provider: string; exclusive: boolean; local: boolean }>;
}

export interface PrepareAnswer {
  path: 'lines' | 'objects';
  needCode: boolean;
  /** Services the destination could not find (optional ones; a required one refuses the move). */
  missing: string[];
  /** Per lease: `handover` (the grantor moves it), `map` (the destination's own resource of that type), `lost` (onLeaseLost there). */
  leasePlan: Array<{ type: string; action: 'handover' | 'map' | 'lost'; provider: string }>;
  /** The destination's site (its broker) in a fleet over several brokers; absent: none configured. */
  site?: string;
}

/** One round of image lines: the change from `base` (the version last staged, 0 for none) to `version`. */
export interface RoundBody {
  id: string;
  round: number;
  base: number;
  version: number;
  lines: WireLine[];
  removed: number[];
  meta: Uint8Array;
}

export interface LeaseGift {
  type: string;
  lease: Record<string, unknown>;
  remainingMs: number;
}

function fail(field: string, what: string, got: unknown): never {
  const f = field ? `body.${field}` : 'body';
  throw new FerryError('MIGRATE_PROTOCOL', `${f} must be ${what}, got ${describe(got)}`, { field: f });
}

export class BodyReader {
  readonly b: Record<string, unknown>;
  /** `at`: where this map sits in the body (`services[0]`), so a bad field is named in full. */
  constructor(
    v: unknown,
    private readonly at = '',
  ) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) fail(at, 'a map', v);
    this.b = v as Record<string, unknown>;
  }
  private fail(k: string, what: string, got: unknown): never {
    fail(this.at ? `${this.at}.${k}` : k, what, got);
  }
  id(): string {
    const v = this.b.id;
    if (typeof v !== 'string' || !MOVE_ID.test(v)) this.fail('id', 'a move id (22 base64url characters)', v);
    return v;
  }
  name(k: string): string {
    const v = this.b[k];
    if (typeof v !== 'string' || !NAME.test(v)) this.fail(k, 'a name (a-z 0-9 -, starting with a letter)', v);
    return v;
  }
  str(k: string, max = 256): string {
    const v = this.b[k];
    if (typeof v !== 'string' || v.length > max) this.fail(k, `a string of at most ${max} characters`, v);
    return v;
  }
  int(k: string, min: number, max: number): number {
    const v = this.b[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(k, `an integer in ${min}..${max}`, v);
    return v;
  }
  bool(k: string): boolean {
    const v = this.b[k];
    if (typeof v !== 'boolean') this.fail(k, 'a boolean', v);
    return v;
  }
  bytes(k: string, max: number): Uint8Array {
    const v = this.b[k];
    if (!(v instanceof Uint8Array) || v.length > max) this.fail(k, `a byte string of at most ${max} bytes`, v);
    return v;
  }
  array(k: string, max: number): unknown[] {
    const v = this.b[k];
    if (!Array.isArray(v) || v.length > max) this.fail(k, `an array of at most ${max} items`, v);
    return v;
  }
}

export function readPrepare(v: unknown): PrepareBody {
  const r = new BodyReader(v);
  const services = r.array('services', 64).map((s, i) => {
    const x = new BodyReader(s, `services[${i}]`);
    const attributes = x.b.attributes ?? {};
    if (attributes === null || typeof attributes !== 'object' || Array.isArray(attributes)) fail(`services[${i}].attributes`, 'a map', attributes);
    for (const [k, a] of Object.entries(attributes)) if (!['string', 'number', 'boolean'].includes(typeof a)) fail(`services[${i}].attributes.${k}`, 'a string, number or boolean', a);
    return { type: x.str('type', 64), optional: x.bool('optional'), attributes: attributes as Record<string, string | number | boolean> };
  });
  const leases = r.array('leases', 64).map((s, i) => {
    const x = new BodyReader(s, `leases[${i}]`);
    return { type: x.str('type', 64), provider: x.str('provider', 128), exclusive: x.bool('exclusive'), local: x.bool('local') };
  });
  const lineSize = r.int('lineSize', 64, 1 << 20);
  if ((lineSize & (lineSize - 1)) !== 0) fail('lineSize', 'a power of two', lineSize);
  return {
    id: r.id(),
    instance: r.name('instance'),
    app: r.name('app'),
    appVersion: r.str('appVersion', 32),
    code: (() => {
      const c = r.str('code', 16);
      if (!/^[0-9a-f]{16}$/.test(c)) fail('code', '16 hex digits', c);
      return c;
    })(),
    lineSize,
    maxLines: r.int('maxLines', 2, 2 ** 32),
    wordBits: r.int('wordBits', 32, 64),
    minHeapBytes: r.int('minHeapBytes', 0, 2 ** 48),
    ...(r.b.requiredWordBits !== undefined ? { requiredWordBits: r.b.requiredWordBits === 32 || r.b.requiredWordBits === 64 ? r.b.requiredWordBits : fail('requiredWordBits', '32 or 64', r.b.requiredWordBits) } : {}),
    services,
    leases,
  };
}

/** A round's body; `maxLines` and `lineSize` bound its lines (the prepare's figures). */
export function readRound(v: unknown, limits: { maxLines: number; lineSize: number }): RoundBody {
  const r = new BodyReader(v);
  const lines = r.array('lines', limits.maxLines).map((l, i): WireLine => {
    if (!Array.isArray(l) || l.length !== 3) fail(`lines[${i}]`, 'a [line, hash, bytes|null] triple', l);
    const [line, hash, bytes] = l as unknown[];
    if (typeof line !== 'number' || !Number.isInteger(line) || line < 1 || line >= limits.maxLines) fail(`lines[${i}][0]`, `a line number in 1..${limits.maxLines - 1}`, line);
    if (!(hash instanceof Uint8Array) || hash.length !== HASH_BYTES) fail(`lines[${i}][1]`, `a ${HASH_BYTES}-byte hash`, hash);
    if (bytes !== null && (!(bytes instanceof Uint8Array) || bytes.length !== limits.lineSize)) fail(`lines[${i}][2]`, `null or ${limits.lineSize} bytes`, bytes);
    return [line, hash, bytes as Uint8Array | null];
  });
  const removed = r.array('removed', limits.maxLines).map((x, i) => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x >= limits.maxLines) fail(`removed[${i}]`, `a line number in 1..${limits.maxLines - 1}`, x);
    return x;
  });
  return { id: r.id(), round: r.int('round', 0, 1_000_000), base: r.int('base', 0, Number.MAX_SAFE_INTEGER), version: r.int('version', 1, Number.MAX_SAFE_INTEGER), lines, removed, meta: r.bytes('meta', 64 << 20) };
}

export function readGifts(v: unknown): LeaseGift[] {
  if (!Array.isArray(v) || v.length > 64) fail('leases', 'an array of at most 64 leases', v);
  return v.map((g, i) => {
    const x = new BodyReader(g, `leases[${i}]`);
    const lease = x.b.lease;
    if (lease === null || typeof lease !== 'object' || Array.isArray(lease)) fail(`leases[${i}].lease`, 'a map', lease);
    const l = lease as Record<string, unknown>;
    for (const k of ['leaseId', 'service', 'leaseTopic', 'holder']) if (typeof l[k] !== 'string') fail(`leases[${i}].lease.${k}`, 'a string', l[k]);
    if (typeof l.exclusive !== 'boolean') fail(`leases[${i}].lease.exclusive`, 'a boolean', l.exclusive);
    if (typeof l.durationMs !== 'number') fail(`leases[${i}].lease.durationMs`, 'a number', l.durationMs);
    return { type: x.str('type', 64), lease: l, remainingMs: x.int('remainingMs', 0, 2 ** 31) };
  });
}
