import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The suite's slowest files, slowest first, as measured on CI (seconds of test time each, 2 CPUs).
 * On a clean checkout vitest has no timings and starts the largest files first, which left a
 * 75 s file to run alone at the end; started first, the long ones overlap the many short ones.
 */
const SLOWEST = [
  'test/handoff/ping-pong.test.ts', // 110
  'test/handoff/faults-destination.test.ts', // 95
  'test/handoff/faults-origin.test.ts', // 60
  'test/runtime/cli.test.ts', // 48
  'test/store/crash.test.ts', // 45
  'test/handoff/leases.test.ts', // 41
  'test/bridge/pairing-refusal.test.ts', // 40
  'test/fleet/bundles.test.ts', // 40
  'test/bridge/pairing-e2e.test.ts', // 40
  'test/runtime/agent-process.test.ts', // 38
  'test/fleet/choice.test.ts', // 36
  'test/bridge/attacks.test.ts', // 36
  'test/bridge/pairing-cli-errors.test.ts', // 36
  'test/handoff/refusals.test.ts', // 28
  'test/fleet/federation.test.ts', // 27
  'test/handoff/faults-network.test.ts', // 25
];

/** Vitest's own order, with the files known to be slowest moved to the front (longest processing time first). */
export class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => {
      const i = SLOWEST.indexOf(relative(this.ctx.config.root, f.moduleId));
      return i < 0 ? SLOWEST.length : i;
    };
    return sorted.map((f, i) => ({ f, i })).sort((a, b) => rank(a.f) - rank(b.f) || a.i - b.i).map((x) => x.f);
  }
}
