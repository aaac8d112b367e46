// The deterministic workload of the store crash test, shared by the child that commits it and
// the parent that checks what survived. Version v's writes, deletes and state depend on v alone.

export const CRASH_APP = { id: 'crash', lineSize: 1024, maxLines: 200 };

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Lines version v writes and deletes. Some checkpoints span several segments. */
export function checkpointPlan(version) {
  const r = rng(version * 7919);
  const big = r() < 0.1;
  const n = version === 1 ? CRASH_APP.maxLines : big ? 40 + Math.floor(r() * 60) : 1 + Math.floor(r() * 12);
  const writes = new Set();
  while (writes.size < n) writes.add(version === 1 ? writes.size : Math.floor(r() * CRASH_APP.maxLines));
  const deletes = new Set();
  if (version > 1 && r() < 0.3) {
    const d = Math.floor(r() * CRASH_APP.maxLines);
    if (!writes.has(d)) deletes.add(d);
  }
  return { writes: [...writes], deletes: [...deletes] };
}

export function lineContent(version, line) {
  const b = new Uint8Array(CRASH_APP.lineSize);
  const r = rng(version * 1_000_003 + line);
  for (let i = 0; i < b.length; i += 8) b[i] = Math.floor(r() * 256);
  b[0] = line & 0xff;
  b[1] = version & 0xff;
  return b;
}

export function stateFor(version) {
  return new TextEncoder().encode(`state of version ${version}`);
}

/** The expected line contents of every version up to `upTo`: version → Map(line → writer version). */
export function expectedVersions(upTo) {
  const out = new Map();
  let current = new Map();
  for (let v = 1; v <= upTo; v++) {
    const plan = checkpointPlan(v);
    current = new Map(current);
    for (const line of plan.writes) current.set(line, v);
    for (const line of plan.deletes) current.delete(line);
    out.set(v, current);
  }
  return out;
}
