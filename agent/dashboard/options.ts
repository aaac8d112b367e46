import { OptionReader } from '../../core/options.js';

/** Options of the dashboard (DESIGN.md beside this file). Validated on entry; errors (BAD_OPTION) name the field. */
export interface DashboardOptions {
  /** Interval of the live samples a watching page gets (the charts' resolution), ms. Default 1,000. Limits 250..10,000. */
  sampleMs?: number;
  /** Pages watching live at once (each holds one event stream); one more is answered 503. Default 4. Limits 1..16. */
  maxStreams?: number;
  /** Samples kept for the charts of a page opened later (at `sampleMs`, 120 = two minutes). Default 120. Limits 10..1,000. */
  historySamples?: number;
  /** Largest body of an action (a POST), bytes; a larger one is 413 and nothing runs. Default 65,536. Limits 1,024..1,048,576. */
  maxBodyBytes?: number;
}

export type ResolvedDashboardOptions = Required<DashboardOptions>;

/** Checks the options; `prefix` names the fields in errors (`dashboard.sampleMs`). */
export function readDashboardOptions(options: DashboardOptions = {}, prefix = 'options'): ResolvedDashboardOptions {
  const r = new OptionReader(options as unknown as Record<string, unknown>, prefix);
  r.rejectUnknown(['sampleMs', 'maxStreams', 'historySamples', 'maxBodyBytes']);
  return {
    sampleMs: r.number('sampleMs', { min: 250, max: 10_000 }, 1000),
    maxStreams: r.number('maxStreams', { min: 1, max: 16 }, 4),
    historySamples: r.number('historySamples', { min: 10, max: 1000 }, 120),
    maxBodyBytes: r.number('maxBodyBytes', { min: 1024, max: 1_048_576 }, 65_536),
  };
}
