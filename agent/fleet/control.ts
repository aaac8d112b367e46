import { FerryError } from '../../core/errors.js';
import type { ArgReader, ControlExtension } from '../runtime/control-server.js';
import type { Fleet } from './index.js';

/** The control commands the fleet adds (agent/runtime/DESIGN.md, "The control channel"). */
export const FLEET_COMMANDS = ['peers-for', 'migrate-best', 'plan-run', 'evacuate', 'fleet-summaries'] as const;

/** `evacuate`'s default total time, ms: a reboot should not wait longer than this for the apps. */
export const EVACUATE_DEFAULT_MS = 300_000;

/**
 * The fleet's control commands, or, when the fleet cannot run (the bridge did not start, or runs
 * without a runtime), the same commands each answering why.
 */
export function fleetControl(fleet: Fleet | FerryError): ControlExtension {
  if (fleet instanceof FerryError) {
    const fail = () => {
      throw fleet;
    };
    return { commands: Object.fromEntries(FLEET_COMMANDS.map((c) => [c, fail])) };
  }
  const f = fleet;
  const commands: Record<(typeof FLEET_COMMANDS)[number], (a: ArgReader) => unknown> = {
    'peers-for': (a) => f.candidates(a.str('instance'), { refresh: a.optBool('refresh') ?? false }),
    'migrate-best': (a) => {
      const options = a.raw('options') ?? {};
      if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new FerryError('AGENT_BAD_REQUEST', 'args.options must be a map of migrate options', { field: 'args.options' });
      return f.migrateBest(a.str('instance'), options);
    },
    'plan-run': (a) => f.runPlan(a.raw('plan'), a.optBool('dryRun') ?? false),
    evacuate: (a) => {
      const limit = a.optNat('downtimeLimitMs', 60_000);
      return f.evacuate({
        ...(a.optStr('to') !== undefined ? { to: a.optStr('to')! } : {}),
        dryRun: a.optBool('dryRun') ?? false,
        timeLimitMs: a.optNat('timeLimitMs', 86_400_000) ?? EVACUATE_DEFAULT_MS,
        ...(limit !== undefined ? { downtimeLimitMs: limit } : {}),
      });
    },
    'fleet-summaries': () => ({
      device: f.device(),
      own: f.summaries.ownSummaries().map((s) => ({ heap: s.heap, version: s.version, lines: s.n, values: s.count, bytes: s.data.length, p: s.p })),
      traffic: f.summaries.traffic,
      keepaliveBytes: f.summaries.keepaliveBytes(),
      peers: f.summaries.peerViews(),
    }),
  };
  return { commands };
}

/** Both extensions' commands on one control socket (the bridge's status is the one shown). */
export function mergeControl(a: ControlExtension, b: ControlExtension): ControlExtension {
  return { commands: { ...a.commands, ...b.commands }, ...(a.status ? { status: a.status } : {}) };
}
