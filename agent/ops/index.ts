/**
 * agent/ops: the agent's optional HTTP endpoint on a loopback address, `/healthz` and
 * `/metrics` (DESIGN.md beside this file). Above the runtime (it reads the agent through
 * `agentSurface`, and counts through the runtime's `RunnerObserver`), below the CLI.
 */
import type { Agent } from '../runtime/agent.js';
import type { ControlExtension } from '../runtime/control-server.js';
import { agentSurface } from './agent-surface.js';
import { healthOf } from './health.js';
import { HttpEndpoint, type HttpEndpointOptions, type HttpMount } from './http-endpoint.js';
import type { OpsMetrics } from './metrics.js';
import { PROMETHEUS_CONTENT_TYPE } from './prometheus-text.js';

export { agentSurface, type OpsInstance, type OpsSurface } from './agent-surface.js';
export { healthOf, type HealthReport } from './health.js';
export { HttpEndpoint, LOOPBACK_HOSTS, readHttpEndpointOptions, type HttpEndpointOptions, type HttpMount, type ResolvedHttpEndpointOptions } from './http-endpoint.js';
export { COMMIT_SECONDS_BOUNDS, OpsMetrics } from './metrics.js';
export { PROMETHEUS_CONTENT_TYPE, PrometheusText, escapeHelp, escapeLabelValue } from './prometheus-text.js';

/**
 * Starts the endpoint for `agent`, whose calls `metrics` counts (it must have been the agent's
 * `observer` from `Agent.start`), and logs `http.listening` with its URL and port. `prefix`
 * names the option fields in errors (`http.port`). `mount` answers the other paths (the dashboard).
 */
export async function startOpsEndpoint(agent: Agent, metrics: OpsMetrics, options: HttpEndpointOptions, prefix = 'options', mount?: HttpMount): Promise<HttpEndpoint> {
  const surface = agentSurface(agent);
  const ep = await HttpEndpoint.start(
    options,
    {
      '/healthz': () => {
        const h = healthOf(surface);
        return { status: h.code, contentType: 'application/json; charset=utf-8', body: `${JSON.stringify(h.report)}\n` };
      },
      '/metrics': () => ({ status: 200, contentType: PROMETHEUS_CONTENT_TYPE, body: metrics.render(surface) }),
    },
    (level, event, fields) => agent.log.log(level, event, fields),
    prefix,
    mount,
  );
  agent.log.info('http.listening', { url: ep.url, host: ep.host, port: ep.port });
  return ep;
}

/** The control extension with `httpUrl` added to `ferry status` (when an endpoint runs), and `dashboardUrl` when it serves the dashboard. */
export function withHttpStatus(ext: ControlExtension, endpoint: HttpEndpoint | undefined, dashboard = false): ControlExtension {
  if (!endpoint) return ext;
  return { ...ext, status: () => ({ ...(ext.status?.() ?? {}), httpUrl: endpoint.url, ...(dashboard ? { dashboardUrl: `${endpoint.url}/` } : {}) }) };
}
