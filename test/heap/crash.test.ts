import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openHeap } from '../../agent/heap/index.js';
import { getProfile } from '../../hw-profiles/index.js';
import { openStore } from '../../store/index.js';
import { HEAP_CRASH_APP, HEAP_CRASH_OPTIONS, digest } from '../helpers/heap-crash-model.mjs';
import { runUntilKilled, type KillFrom } from '../helpers/killed-child.js';
import { scaled } from '../helpers/scale.js';
import { Temp } from './graph.js';

/**
 * Crash consistency of the heap: a child process (compiled JS in dist/) mutates a graph with
 * shared references and cycles, pages lines out into the open transaction (tiny budget), runs
 * major collections now and then and checkpoints in a loop; it is killed with SIGKILL at random
 * moments — while opening (recovery), mutating, collecting or committing. After every kill the store
 * passes its integrity check and the reopened heap's graph is exactly the last acknowledged
 * checkpoint, or the one the child was committing when it died (announced by PRE, not yet ACK).
 */

const CHILD = join(import.meta.dirname, '../helpers/heap-crash-child.mjs');
const temp = new Temp();
afterAll(() => temp.cleanup());
const profile = getProfile('j2me-phone');

interface Run {
  /** version → digest, from PRE and ACK lines. */
  digests: Map<number, string>;
  lastAck: number;
  lastPre: number;
  ready: boolean;
}

async function runChild(dir: string, killAfterMs: number, from: KillFrom): Promise<Run> {
  const { out } = await runUntilKilled(CHILD, [dir], killAfterMs, from);
  const run: Run = { digests: new Map(), lastAck: 0, lastPre: 0, ready: /^READY/m.test(out) };
  // Only complete lines count: the kill may cut the last one.
  for (const m of out.matchAll(/^(PRE|ACK) (\d+) ([0-9a-f]{32})\n/gm)) {
    const v = Number(m[2]);
    const known = run.digests.get(v);
    if (known !== undefined && known !== m[3]) throw new Error(`child reported two digests for version ${v}`);
    run.digests.set(v, m[3]!);
    if (m[1] === 'ACK') run.lastAck = Math.max(run.lastAck, v);
    else run.lastPre = Math.max(run.lastPre, v);
  }
  return run;
}

/** 40 kills and versions, fewer in the emulated ARM64 job (test/helpers/scale.ts). */
const KILLS = scaled(40, 6);

describe('heap crash consistency under SIGKILL', () => {
  it(`${KILLS} kills during mutation, collection and checkpoint: the reopened heap is a committed checkpoint, never older than the last acknowledged`, async () => {
    const dir = temp.dir('heap-crash');
    const digests = new Map<number, string>();
    let lastAck = 0;
    let head = 0;
    let midCommit = 0;
    let seed = 4242;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    // At least KILLS kills, more (up to 4×) until KILLS versions: a loaded machine gives each child less progress.
    for (let i = 0; i < KILLS || (head <= KILLS && i < 4 * KILLS); i++) {
      // Most kills land in the loop (timed from READY); a few in the open and recovery (timed from
      // LOADED: imports done, the store not yet opened). Timed from the child's lines, not its
      // spawn, so a loaded machine or an emulated Node (1 s to start) does not shrink each run's work.
      const early = random() < 0.15;
      const killAfter = early ? 5 + random() * 80 : 40 + random() * 250;
      const run = await runChild(dir, killAfter, early ? 'LOADED' : 'READY');
      for (const [v, d] of run.digests) digests.set(v, d);
      lastAck = Math.max(lastAck, run.lastAck);

      const store = openStore({ dir, profile });
      try {
        const report = store.integrityCheck();
        expect(report.problems, `after kill ${i}`).toEqual([]);
        expect(report.ok).toBe(true);
        if (!store.hasApp(HEAP_CRASH_APP)) {
          expect(lastAck, `after kill ${i}: heap missing though checkpoints were acknowledged`).toBe(0);
          continue;
        }
        const heap = openHeap({ store, app: HEAP_CRASH_APP, profile, ...HEAP_CRASH_OPTIONS });
        try {
          head = heap.version;
          expect(head, `after kill ${i}: reopened version`).toBeGreaterThanOrEqual(lastAck);
          expect(head, `after kill ${i}: reopened version`).toBeLessThanOrEqual(Math.max(lastAck, run.lastPre));
          if (head > lastAck) midCommit++;
          if (head === 0) continue;
          const expected = digests.get(head);
          expect(expected, `after kill ${i}: version ${head} was never announced`).toBeDefined();
          expect(digest(heap.toPlain(heap.root)), `after kill ${i}: graph of version ${head}`).toBe(expected);
          // Every older version still kept opens read-only with the graph it was committed with.
          for (const { version } of store.versions(HEAP_CRASH_APP)) {
            if (version === head || !digests.has(version)) continue;
            heap.close();
            const old = openHeap({ store, app: HEAP_CRASH_APP, profile, ...HEAP_CRASH_OPTIONS, version, readOnly: true });
            try {
              expect(digest(old.toPlain(old.root)), `after kill ${i}: graph of kept version ${version}`).toBe(digests.get(version));
            } finally {
              old.close();
            }
          }
        } finally {
          heap.close();
        }
        lastAck = head; // whatever the child saw, this version is now durable
      } finally {
        store.close();
      }
    }
    // The loop made real progress (many checkpoints, collections among them).
    expect(head).toBeGreaterThan(KILLS);
    // Reported for the record; a kill mid-commit is likely but not certain.
    console.log(`heap crash: ${head} versions, ${midCommit} kills landed between PRE and ACK`);
  }, 240_000);
});
