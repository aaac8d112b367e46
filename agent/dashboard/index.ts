/**
 * agent/dashboard: the device's dashboard in a browser, served by the agent's own HTTP endpoint
 * (DESIGN.md beside this file). Above the runtime, the bridge (through the control commands) and
 * agent/ops (whose endpoint it is mounted on, and whose counters it charts); below the CLI.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { OpsMetrics } from '../ops/metrics.js';
import { agentSurface } from '../ops/agent-surface.js';
import type { HttpMount } from '../ops/http-endpoint.js';
import type { Agent } from '../runtime/agent.js';
import type { ControlDispatch } from '../runtime/control-server.js';
import { DashboardAccess, loadOrMakeToken, TOKEN_FILE } from './access.js';
import { LiveStreams } from './live.js';
import { readDashboardOptions, type DashboardOptions } from './options.js';
import { dashboardMount, type Asset } from './server.js';

export { CSRF_HEADER, DashboardAccess, loadOrMakeToken, TOKEN_FILE, TOKEN_PATTERN } from './access.js';
export { LiveStreams, type InstanceFigures, type LiveSource, type Sample } from './live.js';
export { readDashboardOptions, type DashboardOptions, type ResolvedDashboardOptions } from './options.js';
export { dashboardMount, PAGE_ACTIONS, PAGE_READS, type DashboardContext } from './server.js';

/** What the dashboard is started with, beside its options. */
export interface DashboardHost {
  agent: Agent;
  /** The agent's counters (its `observer`): requests per second and commit times. */
  metrics: OpsMetrics;
  /** The control commands, the agent's and the bridge's: every action goes through them. */
  dispatch: ControlDispatch;
  /** The folder of the page's files (index.html, app.js, app.css). */
  assetsDir: string;
  /** Ferry's version, shown on the device page. */
  version: string;
}

export interface Dashboard {
  /** To mount on the HTTP endpoint. */
  mount: HttpMount;
  /** The access token's file. */
  tokenFile: string;
  /** Ends the live streams (before the endpoint closes). */
  close(): void;
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };

/**
 * Reads (or makes) the access token, loads the page's files into memory (a few tens of KB) and
 * returns the mount. A bad option is BAD_OPTION naming `dashboard.<field>`; a corrupt token file
 * is DASHBOARD_TOKEN_CORRUPT.
 */
export function startDashboard(host: DashboardHost, options: DashboardOptions = {}): Dashboard {
  const o = readDashboardOptions(options, 'dashboard');
  const { agent, metrics } = host;
  const access = new DashboardAccess(loadOrMakeToken(agent.options.dataDir));
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(host.assetsDir)) {
    const type = TYPES[extname(name)];
    if (type) assets.set(`/${name}`, { type, body: readFileSync(join(host.assetsDir, name)) });
  }
  const surface = agentSurface(agent);
  const live = new LiveStreams(
    {
      dispatch: host.dispatch,
      instances: () => surface.instances().map((i) => ({ ...i, ...metrics.figures(i.instance) })),
    },
    o,
  );
  const p = agent.profile;
  const device = () => {
    const s = agent.store.stats();
    return {
      version: host.version,
      profile: { name: p.name, deviceClass: p.deviceClass, wordBits: p.wordBits, heapBudgetBytes: p.heapBudgetBytes, virtualHeapBytes: p.virtualHeapBytes, flashEnduranceCycles: p.flashEnduranceCycles, link: p.link, services: p.services },
      store: { fileBytes: s.fileBytes, liveBytes: s.liveBytes, segmentBytesWritten: s.segmentBytesWritten, commits: s.commits, erasesMax: s.wear.erasesMax, erasesMean: s.wear.erasesMean, wearPercent: Math.round((s.wear.erasesMax / p.flashEnduranceCycles) * 1e6) / 1e4 },
    };
  };
  // Who holds this device's own services (its grantor's table), for the services page.
  const grants = () => {
    const c = agent.connection;
    const grantor = c?.grantor;
    if (!c || !grantor) return [];
    return c.discovery
      .all()
      .filter((d) => d.provider === agent.options.deviceId)
      .map((d) => ({
        service: d.id,
        type: d.type,
        exclusive: d.exclusive,
        holders: grantor.table.leasesOf(d.name).map((l) => ({ holder: l.holder, ...(l.fence !== undefined ? { fence: l.fence } : {}), expiresAt: new Date(l.expiresAt).toISOString() })),
      }));
  };
  const log = (level: 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown>) => agent.log.log(level, event, fields);
  return { mount: dashboardMount({ access, live, dispatch: host.dispatch, local: { device, grants }, assets, options: o, log }), tokenFile: join(agent.options.dataDir, TOKEN_FILE), close: () => live.close() };
}
