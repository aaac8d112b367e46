import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FerryError, type ErrorCode } from '../../core/errors.js';
import { caught } from '../helpers/ferry-error.js';
import { fsBlockIo, openStore, type BlockIo, type Store, type StoreOptions } from '../../store/index.js';

/**
 * Shared helpers of the heap suites: a graph equality that follows identity (`sameGraph`), the
 * containers of a graph in a fixed order (so a model and the heap can be walked side by side),
 * temporary stores, and error capture.
 */

function kindOf(v: object): string {
  if (Array.isArray(v)) return 'array';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof Map) return 'map';
  if (v instanceof Set) return 'set';
  return 'object';
}

function fmt(path: string, k: string | number): string {
  return typeof k === 'number' ? `${path}[${k}]` : `${path}[${JSON.stringify(k)}]`;
}

/**
 * Deep equality that also checks the shape of identity: walking both graphs together, every
 * object of `a` must pair with exactly one object of `b` and back (a bijection), so shared
 * references and cycles must sit in the same places. Key order, Map and Set iteration order,
 * array holes, NaN and -0 (Object.is) count. Returns null when equal, else where they differ.
 */
export function sameGraph(a: unknown, b: unknown): string | null {
  const ab = new Map<object, object>();
  const ba = new Map<object, object>();
  const walk = (x: unknown, y: unknown, path: string): string | null => {
    const xo = x !== null && typeof x === 'object';
    const yo = y !== null && typeof y === 'object';
    if (!xo || !yo) {
      if (xo !== yo || !Object.is(x, y)) return `${path}: ${show(x)} vs ${show(y)}`;
      return null;
    }
    const X = x as object;
    const Y = y as object;
    const mx = ab.get(X);
    const my = ba.get(Y);
    if (mx !== undefined || my !== undefined) {
      if (mx === Y && my === X) return null;
      return `${path}: identity differs (shared reference or cycle in one graph only)`;
    }
    ab.set(X, Y);
    ba.set(Y, X);
    const kx = kindOf(X);
    const ky = kindOf(Y);
    if (kx !== ky) return `${path}: ${kx} vs ${ky}`;
    switch (kx) {
      case 'bytes': {
        const p = X as Uint8Array;
        const q = Y as Uint8Array;
        if (p.length !== q.length || p.some((v, i) => v !== q[i])) return `${path}: bytes [${p.join(',')}] vs [${q.join(',')}]`;
        return null;
      }
      case 'array': {
        const p = X as unknown[];
        const q = Y as unknown[];
        if (p.length !== q.length) return `${path}.length: ${p.length} vs ${q.length}`;
        for (let i = 0; i < p.length; i++) {
          if (i in p !== i in q) return `${fmt(path, i)}: hole in one array only`;
          const d = walk(p[i], q[i], fmt(path, i));
          if (d) return d;
        }
        return null;
      }
      case 'map': {
        const p = [...(X as Map<unknown, unknown>)];
        const q = [...(Y as Map<unknown, unknown>)];
        if (p.length !== q.length) return `${path}.size: ${p.length} vs ${q.length}`;
        for (let i = 0; i < p.length; i++) {
          const d = walk(p[i]![0], q[i]![0], `${path}.<key ${i}>`) ?? walk(p[i]![1], q[i]![1], `${path}.get(${show(p[i]![0])})`);
          if (d) return d;
        }
        return null;
      }
      case 'set': {
        const p = [...(X as Set<unknown>)];
        const q = [...(Y as Set<unknown>)];
        if (p.length !== q.length) return `${path}.size: ${p.length} vs ${q.length}`;
        for (let i = 0; i < p.length; i++) {
          const d = walk(p[i], q[i], `${path}.<member ${i}>`);
          if (d) return d;
        }
        return null;
      }
      default: {
        const p = Object.keys(X);
        const q = Object.keys(Y);
        if (p.join('\u0000') !== q.join('\u0000')) return `${path}: keys ${JSON.stringify(p)} vs ${JSON.stringify(q)}`;
        for (const k of p) {
          const d = walk((X as Record<string, unknown>)[k], (Y as Record<string, unknown>)[k], fmt(path, k));
          if (d) return d;
        }
        return null;
      }
    }
  };
  return walk(a, b, 'root');
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (Object.is(v, -0)) return '-0';
  if (v !== null && typeof v === 'object') return kindOf(v);
  return String(v);
}

/**
 * The containers of a graph (objects, arrays, Maps, Sets, Uint8Arrays) in depth-first order,
 * each once. Two graphs for which `sameGraph` holds list corresponding objects at the same
 * positions, so an operation can pick "container #i" in the model and in the heap alike.
 */
export function containers(root: object): object[] {
  const out: object[] = [];
  const seen = new Set<object>();
  const visit = (v: unknown): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    out.push(v);
    if (v instanceof Uint8Array) return;
    if (v instanceof Map) {
      for (const [k, x] of v) {
        visit(k);
        visit(x);
      }
    } else if (v instanceof Set) {
      for (const x of v) visit(x);
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) visit(v[i]);
    } else {
      for (const k of Object.keys(v)) visit((v as Record<string, unknown>)[k]);
    }
  };
  visit(root);
  return out;
}

export { caught };

export function codeOf(fn: () => unknown): ErrorCode | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof FerryError) return e.code;
    throw e;
  }
  return undefined;
}

/** Temporary directories and open stores of one test file, cleaned up by `cleanup()`. */
export class Temp {
  private readonly dirs: string[] = [];
  private readonly stores = new Set<Store>();

  dir(tag = 'heap'): string {
    const d = mkdtempSync(join(tmpdir(), `ferry-${tag}-`));
    this.dirs.push(d);
    return d;
  }

  store(options: Partial<StoreOptions> = {}): Store {
    const s = openStore({ dir: options.dir ?? this.dir(), ...options });
    this.stores.add(s);
    return s;
  }

  close(s: Store): void {
    if (this.stores.delete(s)) s.close();
  }

  cleanup(): void {
    for (const s of this.stores) {
      try {
        s.close();
      } catch {
        // already closed by the test
      }
    }
    this.stores.clear();
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

/** Segment-file I/O whose fdatasync fails while `fail.sync` is set (an injected EIO). */
export function faultyIo(): { io: BlockIo; fail: { sync: boolean } } {
  const fail = { sync: false };
  const io: BlockIo = {
    ...fsBlockIo,
    fdatasync(fd) {
      if (fail.sync) throw Object.assign(new Error('EIO: injected fdatasync failure'), { code: 'EIO' });
      fsBlockIo.fdatasync(fd);
    },
  };
  return { io, fail };
}
