import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, type Durability } from '../../store/index.js';
import { WarmChild } from '../helpers/killed-child.js';
import { scaled } from '../helpers/scale.js';
import { CRASH_APP, checkpointPlan, lineContent, stateFor } from '../helpers/store-crash-model.mjs';

/**
 * Crash consistency: a child process commits checkpoints in a loop and is killed with SIGKILL at
 * a random moment — while opening (recovery), mid-transaction, mid-commit, mid-compaction.
 * After every kill the store is reopened and must pass its integrity check, hold every kept
 * version whole (each line exactly as the deterministic workload wrote it), and hold the last
 * acknowledged commit.
 */

const CHILD = join(import.meta.dirname, '../helpers/store-crash-child.mjs');
/** Children loading ahead of their turn: two keep a loaded machine's slow Node start-up off the loop. */
const WARM_AHEAD = 2;
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Rolling model of the workload: version → (line → version that wrote its bytes). */
class Model {
  private current = new Map<number, number>();
  private upTo = 0;
  private readonly recent = new Map<number, Map<number, number>>();

  at(version: number): Map<number, number> {
    while (this.upTo < version) {
      const v = ++this.upTo;
      const plan = checkpointPlan(v);
      this.current = new Map(this.current);
      for (const line of plan.writes) this.current.set(line, v);
      for (const line of plan.deletes) this.current.delete(line);
      this.recent.set(v, this.current);
      this.recent.delete(v - 64);
    }
    const m = this.recent.get(version);
    if (!m) throw new Error(`model no longer holds version ${version}`);
    return m;
  }
}

async function runChild(child: WarmChild, killAfterMs: number, fromReady: boolean): Promise<{ lastAck: number; ready: boolean; stderr: string }> {
  const { out, stderr } = await child.run(killAfterMs, fromReady);
  let lastAck = 0;
  for (const m of out.matchAll(/^ACK (\d+)$/gm)) lastAck = Math.max(lastAck, Number(m[1]));
  return { lastAck, ready: /^READY/m.test(out), stderr };
}

/**
 * At least `kills` kills, and more (up to 4×) until the store has passed `minVersions`: each child
 * runs for a fixed time, so on a loaded machine (CI runs suites side by side) a kill lands after
 * less progress; the test must still reach compaction and segment reuse, not fail for slowness.
 */
async function crashLoop(durability: Durability, segmentBytes: number, kills: number, minVersions: number): Promise<{ versions: number; acked: number; kills: number }> {
  const dir = mkdtempSync(join(tmpdir(), `ferry-crash-${durability}-`));
  dirs.push(dir);
  const model = new Model();
  let lastAck = 0;
  let head = 0;
  let seed = 12345;
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  let i = 0;
  // Children are started ahead (WARM_AHEAD of them): each loads while the ones before it run and
  // are checked, and touches the store only once it is its turn.
  const args = [dir, durability, String(segmentBytes)];
  const ahead = Array.from({ length: WARM_AHEAD }, () => new WarmChild(CHILD, args));
  try {
    for (; i < kills || (head <= minVersions && i < kills * 4); i++) {
      // Most kills land mid-loop (timed from READY); a few land during open and recovery (timed
      // from the child's go: its start-up is behind it).
      const early = random() < 0.15;
      const killAfter = early ? 5 + random() * 60 : 20 + random() * 140;
      const child = ahead.shift()!;
      ahead.push(new WarmChild(CHILD, args));
      const run = await runChild(child, killAfter, !early);
      lastAck = Math.max(lastAck, run.lastAck);

      const store = openStore({ dir, durability, segmentBytes, keepVersions: 3, spaceFactor: 1.5 });
      try {
        const report = store.integrityCheck();
        expect(report.problems, `after kill ${i}`).toEqual([]);
        if (!store.hasApp(CRASH_APP.id)) {
          expect(lastAck, `after kill ${i}: app missing though commits were acknowledged`).toBe(0);
          continue;
        }
        head = store.headVersion(CRASH_APP.id);
        // The last acknowledged commit is there; at most the one in flight beyond it.
        expect(head, `after kill ${i}`).toBeGreaterThanOrEqual(lastAck);
        expect(head, `after kill ${i}`).toBeLessThanOrEqual(lastAck + 1);
        lastAck = head; // the child saw it committed or not; from here on it is durable
        for (const { version } of store.versions(CRASH_APP.id)) {
          const expected = model.at(version);
          const lines = Array.from({ length: CRASH_APP.maxLines }, (_, l) => l);
          const got = store.read(CRASH_APP.id, lines, { version });
          lines.forEach((line) => {
            const writer = expected.get(line);
            if (writer === undefined) expect(got[line], `kill ${i}: line ${line} of version ${version} should be absent`).toBeUndefined();
            else expect(Buffer.from(got[line]!).equals(Buffer.from(lineContent(writer, line))), `kill ${i}: line ${line} of version ${version}`).toBe(true);
          });
          expect(Buffer.from(store.readState(CRASH_APP.id, { version })).toString()).toBe(Buffer.from(stateFor(version)).toString());
        }
      } finally {
        store.close();
      }
    }
  } finally {
    await Promise.all(ahead.map((c) => c.discard()));
  }
  return { versions: head, acked: lastAck, kills: i };
}

// Kills and versions: 140/300 and 80/150, fewer in the emulated ARM64 job (test/helpers/scale.ts).
const FULL = { kills: scaled(140, 10), versions: scaled(300, 20) };
const BATCHED = { kills: scaled(80, 6), versions: scaled(150, 10) };

describe('store crash consistency under SIGKILL', () => {
  it(`full durability: ${FULL.kills} kills, every kept version whole, every acknowledged commit kept`, async () => {
    const { versions, kills } = await crashLoop('full', 16 * 1024, FULL.kills, FULL.versions);
    expect(kills).toBeGreaterThanOrEqual(FULL.kills);
    // The loop made real progress: many checkpoints, so compaction and segment reuse happened.
    expect(versions).toBeGreaterThan(FULL.versions);
  }, 360_000);

  it(`batched durability: ${BATCHED.kills} kills, same guarantees against a process crash`, async () => {
    const { versions, kills } = await crashLoop('batched', 16 * 1024, BATCHED.kills, BATCHED.versions);
    expect(kills).toBeGreaterThanOrEqual(BATCHED.kills);
    expect(versions).toBeGreaterThan(BATCHED.versions);
  }, 360_000);
});
