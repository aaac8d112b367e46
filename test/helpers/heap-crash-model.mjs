// Shared by the heap crash test and its child: the deterministic workload and the digest of a
// heap graph. Plain JavaScript so the child runs it without a TypeScript loader.
import { createHash } from 'node:crypto';
import { xorshift as rng } from './prng.mjs';

export const HEAP_CRASH_APP = 'crashy';
/** Heap options besides store and profile (j2me-phone): a tiny budget so lines page out into the open transaction. */
export const HEAP_CRASH_OPTIONS = { budgetBytes: 32 * 1024, maxObjectBytes: 4096 };

/**
 * The changes that lead to checkpoint `version`, applied to the committed graph of the version
 * before: replacing, sharing and deleting entries, cycles, arrays, Maps, Sets, bytes and
 * strings. Deterministic in (graph, version). Returns the collection to run first, if any.
 */
export function mutate(root, version) {
  const r = rng(version);
  const pick = (n) => Math.floor(r() * n);
  if (!root.items) root.items = [];
  if (!root.index) root.index = new Map();
  if (!root.tags) root.tags = new Set();
  const items = root.items;
  const steps = 10 + pick(20);
  for (let s = 0; s < steps; s++) {
    const k = pick(48);
    switch (pick(9)) {
      case 0: case 1: case 2:
        items[Math.min(k, items.length)] = { v: version, s, text: `${'ж'.repeat(pick(5))}${'x'.repeat(pick(700))}`, tags: [version, s] };
        break;
      case 3:
        if (items.length > 0) items.pop();
        break;
      case 4: {
        const a = items[pick(items.length + 1)];
        const b = items[pick(items.length + 1)];
        if (a && b) a.peer = b; // shared references, sometimes cycles
        break;
      }
      case 5:
        root.index.set(`k${k}`, items[pick(items.length + 1)] ?? { empty: version });
        if (root.index.size > 20) root.index.delete(root.index.keys().next().value);
        break;
      case 6:
        root.tags.add(`t${pick(30)}`);
        if (pick(3) === 0) root.tags.delete(`t${pick(30)}`);
        break;
      case 7:
        root.blob = new Uint8Array(Array.from({ length: pick(300) }, (_, i) => (i * version + s) & 255));
        break;
      default:
        if (items.length > 2) items.splice(pick(items.length), 1 + pick(2), { spliced: version, back: root });
        break;
    }
  }
  root.version = version;
  return version % 4 === 0 ? (version % 8 === 0 ? 'full' : 'sparse') : null;
}

/** A canonical text of a plain graph (heap.toPlain): objects numbered in visiting order, so sharing and cycles count. */
export function canonical(value) {
  const ids = new Map();
  const out = [];
  const walk = (v) => {
    if (v === null || typeof v !== 'object') {
      if (typeof v === 'number') out.push(Object.is(v, -0) ? '-0' : String(v));
      else if (typeof v === 'bigint') out.push(`${v}n`);
      else out.push(v === undefined ? 'u' : JSON.stringify(v));
      return;
    }
    if (ids.has(v)) {
      out.push(`@${ids.get(v)}`);
      return;
    }
    ids.set(v, ids.size);
    if (v instanceof Uint8Array) {
      out.push(`b:${Buffer.from(v).toString('hex')}`);
    } else if (Array.isArray(v)) {
      out.push(`[${v.length}`);
      for (let i = 0; i < v.length; i++) {
        if (i in v) walk(v[i]);
        else out.push('hole');
      }
      out.push(']');
    } else if (v instanceof Map) {
      out.push('M{');
      for (const [k, x] of v) {
        walk(k);
        walk(x);
      }
      out.push('}');
    } else if (v instanceof Set) {
      out.push('S{');
      for (const x of v) walk(x);
      out.push('}');
    } else {
      out.push('{');
      for (const k of Object.keys(v)) {
        out.push(JSON.stringify(k));
        walk(v[k]);
      }
      out.push('}');
    }
  };
  walk(value);
  return out.join(',');
}

export function digest(plain) {
  return createHash('sha256').update(canonical(plain)).digest('hex').slice(0, 32);
}
