// Leases the device's sensor and records its readings into a history that grows past
// the device's in-memory budget: old readings page out to the store, the heap keeps them.
// Readings arrive as service results: a timer asks (ctx.request), the agent calls the
// leased sensor after the commit and delivers the reading to `record` as a new transaction.
const CHUNK = 256; // readings per history chunk: chunks are what pages in and out

export default {
  name: 'sensor-log',
  version: '1.0.0',
  requirements: { minHeapBytes: 64 * 1024, services: [{ type: 'sensor' }] },
  init(ctx) {
    ctx.root.chunks = [];
    ctx.root.count = 0;
    ctx.root.failures = 0;
    ctx.root.sum = 0;
    ctx.root.min = null;
    ctx.root.max = null;
  },
  timers: { sample: { everyMs: 5000, handler: 'sample' } },
  handlers: {
    // Timer tick (or by hand): asks the leased sensor for a reading.
    sample(ctx) {
      ctx.request('sensor', 'read', {}, 'record');
      return { requested: true };
    },
    // The sensor's answer: { ok, body: { seq, celsius } } or { ok: false, code, message }.
    record(ctx, r) {
      if (!r || !r.ok) {
        ctx.root.failures++;
        ctx.log.warn('sensor read failed', r);
        return { failures: ctx.root.failures };
      }
      return add(ctx, r.body.celsius, ctx.now());
    },
    // { celsius } → records a reading given by hand (tests, other apps).
    add(ctx, m) {
      if (!m || typeof m.celsius !== 'number' || !Number.isFinite(m.celsius)) throw new Error('celsius must be a finite number');
      return add(ctx, m.celsius, typeof m.at === 'number' ? m.at : ctx.now());
    },
    // { last } → count, min, max, mean and the last readings (default 5).
    summary(ctx, m) {
      const last = m && Number.isInteger(m.last) ? Math.min(Math.max(m.last, 0), 100) : 5;
      const recent = [];
      for (let c = ctx.root.chunks.length - 1; c >= 0 && recent.length < last; c--) {
        const chunk = ctx.root.chunks[c];
        for (let i = chunk.length - 1; i >= 0 && recent.length < last; i--) recent.push(chunk[i]);
      }
      const n = ctx.root.count;
      return { count: n, failures: ctx.root.failures, min: ctx.root.min, max: ctx.root.max, mean: n ? ctx.root.sum / n : null, recent };
    },
    // { from, to } → mean over readings whose time is in [from, to): reads the whole history.
    mean(ctx, m) {
      const from = m && typeof m.from === 'number' ? m.from : -Infinity;
      const to = m && typeof m.to === 'number' ? m.to : Infinity;
      let n = 0;
      let sum = 0;
      for (const chunk of ctx.root.chunks) for (const r of chunk) if (r.at >= from && r.at < to) (n++, (sum += r.c));
      return { count: n, mean: n ? sum / n : null };
    },
  },
  onLeaseLost(ctx, info) {
    ctx.log.warn('sensor lease lost; readings fail until the agent leases another sensor', info);
  },
};

function add(ctx, celsius, at) {
  const chunks = ctx.root.chunks;
  let chunk = chunks.length ? chunks[chunks.length - 1] : null;
  if (!chunk || chunk.length >= CHUNK) {
    chunk = [];
    chunks.push(chunk);
    chunk = chunks[chunks.length - 1];
  }
  chunk.push({ at, c: celsius });
  ctx.root.count++;
  ctx.root.sum += celsius;
  if (ctx.root.min === null || celsius < ctx.root.min) ctx.root.min = celsius;
  if (ctx.root.max === null || celsius > ctx.root.max) ctx.root.max = celsius;
  return { count: ctx.root.count };
}
