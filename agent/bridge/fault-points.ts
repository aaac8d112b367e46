import { FerryError } from '../../core/errors.js';

/**
 * Fault points of the handoff, for the tests that prove every step survives a crash or a lost
 * message (test/handoff/faults.test.ts). Off unless the agent's environment names one:
 * `FERRY_FAULT=<side>:<step>:<fault>`, where fault is `kill` (SIGKILL this process at that step),
 * `drop` (ignore that one incoming request: its answer is never sent) or `fail` (the step fails
 * with STORE_IO, as a full or broken disk would). Each fires once per process. The steps are
 * listed in DESIGN.md, "Handoff: failure cases" and "Offline bundles" (`origin:bundle-sealed`,
 * `origin:bundle-decided`, `destination:bundle-installed`, `destination:bundle-imported`).
 */

const spec = process.env.FERRY_FAULT;
let fired = false;

/** The fault armed for `side:step`, once; undefined for every other step (and always when none is set). */
function armed(side: 'origin' | 'destination', step: string): string | undefined {
  if (spec === undefined || fired) return undefined;
  const [s, st, fault] = spec.split(':');
  if (s !== side || st !== step) return undefined;
  fired = true;
  return fault;
}

/** Reached `step`: kills the process or throws if that fault is armed here. */
export function faultPoint(side: 'origin' | 'destination', step: string): void {
  const f = armed(side, step);
  if (f === 'kill') process.kill(process.pid, 'SIGKILL');
  if (f === 'fail') throw new FerryError('STORE_IO', `injected failure at ${side} step ${step} (FERRY_FAULT)`, { field: 'store' });
}

/** Whether the incoming request of `step` is to be dropped (never answered). */
export function dropHere(side: 'origin' | 'destination', step: string): boolean {
  if (spec === undefined || fired || !spec.endsWith(':drop')) return false;
  return armed(side, step) === 'drop';
}
