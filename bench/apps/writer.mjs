// The handoff benchmark's write-heavy app (bench/bridge-handoff.ts): a heap of SLOTS slots, each
// an object holding one SLOT_CHARS-character string, so each slot's record fills most of one 4 KiB
// heap line by itself and rewriting a slot (a string of the same length, written back in place)
// dirties exactly that line. About 1 MiB of data, SLOTS + a few lines.
const SLOTS = 300;
const SLOT_CHARS = 3500;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

// New content for slot `i` at write number `n`: the prefix makes it unique (a line hash no device
// holds yet), the rest is pseudo-random so no two lines share content.
function text(i, n) {
  const head = `${i}:${n}:`;
  let x = (Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(n + 1, 0x85ebca6b)) >>> 0 || 1;
  const out = new Array(SLOT_CHARS - head.length);
  for (let k = 0; k < out.length; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[k] = ALPHABET[(x >>> 0) & 63];
  }
  return head + out.join('');
}

function rewrite(ctx, i) {
  const n = ++ctx.root.writes;
  ctx.root.slots[i].s = text(i, n);
}

export default {
  name: 'writer',
  version: '1.0.0',
  requirements: { minHeapBytes: 4 * 1024 * 1024 },
  init(ctx) {
    ctx.root.writes = 0;
    ctx.root.calls = 0;
    ctx.root.slots = [];
    for (let i = 0; i < SLOTS; i++) ctx.root.slots.push({ s: text(i, 0) });
  },
  handlers: {
    // { n, seed } → rewrites n slots picked by seed (the workload: a few random slots per call).
    write(ctx, m) {
      const n = m && Number.isInteger(m.n) ? Math.max(0, Math.min(SLOTS, m.n)) : 2;
      let x = (m && Number.isInteger(m.seed) ? m.seed : ctx.root.calls) >>> 0 || 1;
      const slots = [];
      for (let k = 0; k < n; k++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        const i = x % SLOTS;
        rewrite(ctx, i);
        slots.push(i);
      }
      ctx.root.calls++;
      return { calls: ctx.root.calls, slots };
    },
    // { fraction } → rewrites exactly round(fraction × SLOTS) distinct slots (all of them at 1).
    touch(ctx, m) {
      const f = m && typeof m.fraction === 'number' ? Math.max(0, Math.min(1, m.fraction)) : 0.01;
      const k = Math.round(f * SLOTS);
      const start = ctx.root.calls % SLOTS;
      for (let j = 0; j < k; j++) rewrite(ctx, (start + j * 7) % SLOTS); // 7 is prime to SLOTS: k distinct slots
      ctx.root.calls++;
      return { changed: k, slots: SLOTS };
    },
    stats(ctx) {
      return { slots: ctx.root.slots.length, slotChars: SLOT_CHARS, writes: ctx.root.writes, calls: ctx.root.calls };
    },
  },
};
