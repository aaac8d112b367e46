import { OptionReader } from '../../core/options.js';

/** The fleet part's options (agent/fleet/DESIGN.md), each validated on entry naming the field. */
export interface FleetOptions {
  /**
   * How often this device looks for heaps checkpointed since their last summary and sends the
   * new summaries to its paired peers: the rate limit of summary traffic (a heap's summary goes
   * out at most once per interval however often it commits), ms. Default 60,000; 200..3,600,000.
   */
  summaryRefreshMs?: number;
  /**
   * With nothing changed, a short "still current" message goes to each peer every this many
   * refresh intervals; a peer's summary not confirmed for 1.5 of its promised interval (+5 s) is
   * shown as stale. Default 10; 1..1,000.
   */
  keepaliveEvery?: number;
  /** False-positive exponent of the summaries this device sends: a line it lacks is taken for one it holds with probability 2^-p. Default 10; 4..20. */
  summaryBits?: number;
  /** How long a choice waits for a stale or missing summary asked of a peer, ms. Default 1,500; 100..60,000. */
  askTimeoutMs?: number;
}

export type ResolvedFleetOptions = Required<FleetOptions>;

export const FLEET_OPTION_KEYS = ['summaryRefreshMs', 'keepaliveEvery', 'summaryBits', 'askTimeoutMs'] as const;

export function readFleetOptions(options: FleetOptions = {}, prefix = 'fleet'): ResolvedFleetOptions {
  const r = new OptionReader(options as unknown as Record<string, unknown>, prefix);
  r.rejectUnknown(FLEET_OPTION_KEYS);
  return {
    summaryRefreshMs: r.number('summaryRefreshMs', { min: 200, max: 3_600_000 }, 60_000),
    keepaliveEvery: r.number('keepaliveEvery', { min: 1, max: 1000 }, 10),
    summaryBits: r.number('summaryBits', { min: 4, max: 20 }, 10),
    askTimeoutMs: r.number('askTimeoutMs', { min: 100, max: 60_000 }, 1500),
  };
}
