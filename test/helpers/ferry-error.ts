import { FerryError } from '../../core/errors.js';

/** What `caught` and `caughtAsync` do with what was thrown: a FerryError is returned, anything else fails the test. */
function asFerryError(e: unknown): FerryError {
  if (e instanceof FerryError) return e;
  throw new Error(`expected a FerryError, got ${String(e)}`, { cause: e });
}

const NOTHING = 'expected a FerryError, nothing was thrown';

/** Runs fn, which must throw a FerryError, and returns it; fails the test when it throws nothing or something else. */
export function caught(fn: () => unknown): FerryError {
  try {
    fn();
  } catch (e) {
    return asFerryError(e);
  }
  throw new Error(NOTHING);
}

/** `caught` for a function returning a promise, which must reject with a FerryError. */
export async function caughtAsync(fn: () => Promise<unknown>): Promise<FerryError> {
  try {
    await fn();
  } catch (e) {
    return asFerryError(e);
  }
  throw new Error(NOTHING);
}
