import { OptionReader } from '../../core/options.js';

/** One move's options (`ferry migrate`), each validated on entry naming the field. */
export interface MigrateOptions {
  /** The most the instance may be paused (from the bookmark to running on the peer), ms. Default 300 (QEMU's default); 10..60,000. A promise: the move aborts rather than exceed it. */
  downtimeLimitMs?: number;
  /** Pre-copy delta rounds before giving up (MIGRATE_NO_CONVERGENCE). Default 30; 1..1,000. */
  maxRounds?: number;
  /** The whole move before the switch, ms; past it the move aborts (the watchdog). Default 120,000; 1,000..3,600,000. */
  maxTotalMs?: number;
  /** How long each step's request (prepare, a round, the commit) may take, ms. Default 30,000; 100..600,000. */
  stepTimeoutMs?: number;
  /** Resends of the commit after a lost answer (it is idempotent). Default 3; 0..20. */
  retries?: number;
  /** Plan only: fit, bytes to send, expected downtime, lease plan; nothing moves. Default false. */
  dryRun?: boolean;
  /**
   * false: stop and copy, the baseline the benchmark compares with: pause first, then send the
   * whole heap (no pre-copy, no lines reused from the destination's cache). Default true.
   */
  precopy?: boolean;
}

export type ResolvedMigrateOptions = Required<MigrateOptions>;

const KNOWN = ['downtimeLimitMs', 'maxRounds', 'maxTotalMs', 'stepTimeoutMs', 'retries', 'dryRun', 'precopy'];

export function readMigrateOptions(options: MigrateOptions = {}): ResolvedMigrateOptions {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(KNOWN);
  return {
    downtimeLimitMs: r.number('downtimeLimitMs', { min: 10, max: 60_000 }, 300),
    maxRounds: r.number('maxRounds', { min: 1, max: 1000 }, 30),
    maxTotalMs: r.number('maxTotalMs', { min: 1000, max: 3_600_000 }, 120_000),
    stepTimeoutMs: r.number('stepTimeoutMs', { min: 100, max: 600_000 }, 30_000),
    retries: r.number('retries', { min: 0, max: 20 }, 3),
    dryRun: r.boolean('dryRun', false),
    precopy: r.boolean('precopy', true),
  };
}
