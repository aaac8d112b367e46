import type { OpsSurface } from './agent-surface.js';

/** The body of `/healthz` (JSON). */
export interface HealthReport {
  /** `ok` (HTTP 200) or `unhealthy` (HTTP 503). */
  status: 'ok' | 'unhealthy';
  /** Why not, one line per problem; empty when ok. */
  problems: string[];
  broker: { connected: boolean; downSince?: string; reconnects: number };
  /** Every instance the agent knows; `healthy` false only for `failed` ones. */
  instances: Array<{ instance: string; app: string; state: string; healthy: boolean; error?: string }>;
  uptimeSeconds: number;
}

/**
 * The agent is healthy when its broker connection is up and no instance is `failed` (it should
 * run and cannot: its heap did not open, its mailbox did not connect, a commit failed). An
 * instance the operator suspended or stopped is not a fault: it is listed with its state and
 * leaves the agent healthy, so a supervisor that restarts unhealthy services does not fight a
 * deliberate `ferry suspend`. No instance at all is healthy too.
 */
export function healthOf(surface: OpsSurface): { code: 200 | 503; report: HealthReport } {
  const broker = surface.broker();
  const problems: string[] = [];
  if (!broker.connected) problems.push(`broker disconnected${broker.downSince !== undefined ? ` since ${broker.downSince}` : ''}`);
  const instances = surface.instances().map((i) => {
    const healthy = i.state !== 'failed';
    if (!healthy) problems.push(`instance ${i.instance} failed${i.error !== undefined ? `: ${i.error}` : ''}`);
    return { instance: i.instance, app: i.app, state: i.state, healthy, ...(i.error !== undefined ? { error: i.error } : {}) };
  });
  const report: HealthReport = { status: problems.length === 0 ? 'ok' : 'unhealthy', problems, broker, instances, uptimeSeconds: surface.process().uptimeSeconds };
  return { code: problems.length === 0 ? 200 : 503, report };
}
