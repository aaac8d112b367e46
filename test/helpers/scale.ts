/**
 * The tests' iteration counts (crash kills, property runs), scaled by `FERRY_TEST_SCALE`: a
 * fraction in (0, 1], 1 when unset. Only the ARM64 job sets it (scripts/test-arm64.mjs): on an
 * emulated Node, 10–20× slower, the full counts would take the better part of an hour, so it
 * runs the same tests with fewer iterations, and says so. A native `npm test` runs every count
 * in full; every assertion stays the same at any scale.
 */
export const TEST_SCALE = readScale(process.env.FERRY_TEST_SCALE);

function readScale(text: string | undefined): number {
  if (text === undefined || text === '') return 1;
  const n = Number(text);
  if (!(n > 0 && n <= 1)) throw new Error(`FERRY_TEST_SCALE=${text}: a fraction in (0, 1] is expected (1, or unset, for the full counts)`);
  return n;
}

/** `n` scaled by FERRY_TEST_SCALE, rounded, at least `min`. */
export function scaled(n: number, min = 1): number {
  return Math.max(min, Math.round(n * TEST_SCALE));
}

/**
 * How many times slower than a native Node this run's Node is: FERRY_TEST_SLOWDOWN, from 1 to
 * 100, 1 when unset; the ARM64 job sets 10 on the emulated Node. Durations that stand for an
 * amount of work or guard against a runaway are multiplied by it (`slowed`): the time a crash
 * child works before its kill (killed-child.ts: else an emulated child, whose first commit alone
 * takes ~150 ms, is killed before it commits anything) and an app handler's CPU-time limit set
 * low so a test that loops fails fast. What a test asserts is the same at any slowdown.
 */
export const SLOWDOWN = readSlowdown(process.env.FERRY_TEST_SLOWDOWN);

function readSlowdown(text: string | undefined): number {
  if (text === undefined || text === '') return 1;
  const n = Number(text);
  if (!(n >= 1 && n <= 100)) throw new Error(`FERRY_TEST_SLOWDOWN=${text}: a factor from 1 to 100 is expected (1, or unset, natively)`);
  return n;
}

/** A duration of work, or a runaway guard, of `ms` on a native Node: × FERRY_TEST_SLOWDOWN. */
export function slowed(ms: number): number {
  return Math.round(ms * SLOWDOWN);
}
