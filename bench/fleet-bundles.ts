/**
 * Offline bundles (agent/bridge/bundles.ts), measured: two agent processes (the built `ferry`; an
 * rpi-4b origin and an android-phone recipient, real data directories and stores, one aedes
 * broker in this process), paired through the control channel, an instance holding `heapKiB` of incompressible data exported to
 * a real file and imported on the other. Reports the bundle's size against the heap it carries
 * (the cost of the seal, the framing and the CBOR: the baseline is the heap itself, 1.0) and the
 * export and import times. Called from bench/bridge.ts; runs alone with `tsx bench/fleet-bundles.ts`.
 */
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAedes } from '../test/helpers/brokers.js';
import { pairSides, runAlone, startSide, stopSides, type Side } from './lib/agent-sides.js';

export interface BundleFigures {
  /** Heap bytes the bundle carries (lines × line size). */
  heapBytes: number;
  /** The bundle file's size, bytes. */
  bundleBytes: number;
  bundleBytesOverHeapBytes: number;
  /** `bundle export` on the origin: bookmark, read, seal, sign, fsync, decision, rename; ms (median). */
  exportMs: number;
  /** `bundle import` on the recipient: read, verify, open, install, start; ms (median). */
  importMs: number;
}

const APP = `export default {
  name: 'hoard',
  version: '1.0.0',
  requirements: { minHeapBytes: 16 * 1024 },
  init(ctx) { ctx.root.pad = []; },
  handlers: {
    grow(ctx, m) {
      let x = (m.seed * 2654435761) >>> 0;
      const chunk = [];
      for (let i = 0; i < m.count; i++) {
        let s = '';
        for (let j = 0; j < 1000; j++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; s += String.fromCharCode(33 + ((x >>> 16) % 90)); }
        chunk.push(s);
      }
      ctx.root.pad.push(chunk);
      return ctx.root.pad.length;
    },
  },
};
`;

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

export async function measureBundles(opts: { quick: boolean }): Promise<BundleFigures> {
  const heapKiB = opts.quick ? 256 : 4096;
  const trips = opts.quick ? 2 : 4; // there and back, `trips` times: the first import installs the code
  const root = mkdtempSync(join(tmpdir(), 'ferry-bench-bundles-'));
  const broker = await startAedes({ persistent: true });
  const sides: Side[] = [];
  try {
    const [pi, phone] = await Promise.all([startSide(broker.url, root, `bpi-${process.pid}`, 'rpi-4b'), startSide(broker.url, root, `bphone-${process.pid}`, 'android-phone')]);
    sides.push(pi, phone);
    await pairSides(pi, phone);
    const appFile = join(root, 'hoard.mjs');
    writeFileSync(appFile, APP);
    await pi.agent.control('install', { path: appFile });
    await pi.agent.control('run', { app: 'hoard' });
    for (let seed = 0; seed * 25 < heapKiB; seed++) await pi.agent.control('call', { instance: 'hoard', handler: 'grow', message: { seed, count: Math.min(25, heapKiB - seed * 25) } });
    const exportMs: number[] = [];
    const importMs: number[] = [];
    let heapBytes = 0;
    let bundleBytes = 0;
    let [from, to] = [pi, phone];
    for (let i = 0; i < trips; i++) {
      const file = join(root, `trip-${i}.bundle`);
      let t = performance.now();
      const e = (await from.agent.control('bundle-export', { instance: 'hoard', file, peer: to.id })) as { heapBytes: number };
      exportMs.push(performance.now() - t);
      t = performance.now();
      await to.agent.control('bundle-import', { file });
      importMs.push(performance.now() - t);
      heapBytes = e.heapBytes;
      bundleBytes = statSync(file).size;
      [from, to] = [to, from];
    }
    return {
      heapBytes,
      bundleBytes,
      bundleBytesOverHeapBytes: Math.round((bundleBytes / heapBytes) * 10_000) / 10_000,
      exportMs: Math.round(median(exportMs) * 10) / 10,
      importMs: Math.round(median(importMs) * 10) / 10,
    };
  } finally {
    await stopSides(sides, broker, root);
  }
}

await runAlone(import.meta.url, 'bundles', measureBundles);
