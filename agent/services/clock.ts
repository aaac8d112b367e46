import { randomId128 } from '../../transports/random-id.js';

/**
 * Time as the services see it. Injected everywhere so tests advance time
 * instead of sleeping. `now()` is wall-clock-like milliseconds: lease expiry
 * is relative to it, and persisted horizons (see lease-grantor.ts) compare
 * values across restarts, so the default is `Date.now`.
 */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private t = 1_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
  set(t: number): void {
    this.t = t;
  }
}

/** 128 random bits, base64url (22 characters): lease ids, request ids, entry ids. Unguessable by design. */
export function randomId(): string {
  return randomId128();
}
