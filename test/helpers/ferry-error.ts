import { FerryError } from '../../core/errors.js';

/** Runs fn, which must throw a FerryError, and returns it; fails the test when it throws nothing or something else. */
export function caught(fn: () => unknown): FerryError {
  try {
    fn();
  } catch (e) {
    if (e instanceof FerryError) return e;
    throw new Error(`expected a FerryError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected a FerryError, nothing was thrown');
}

/** `caught` for a function returning a promise, which must reject with a FerryError. */
export async function caughtAsync(fn: () => Promise<unknown>): Promise<FerryError> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof FerryError) return e;
    throw new Error(`expected a FerryError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected a FerryError, nothing was thrown');
}
