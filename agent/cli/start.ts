import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { FerryError } from '../../core/errors.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { Bridge, isBridgeFileError } from '../bridge/bridge.js';
import { bridgeControl } from '../bridge/control.js';
import { Fleet, readFleetOptions, type FleetOptions } from '../fleet/index.js';
import { fleetControl, mergeControl } from '../fleet/control.js';
import type { BridgeOptions } from '../bridge/options.js';
import { Agent } from '../runtime/agent.js';
import type { AgentOptions } from '../runtime/agent-options.js';
import { ControlServer, controlDispatcher, type ControlDispatch } from '../runtime/control-server.js';
import { readDashboardOptions, startDashboard, type Dashboard, type DashboardOptions } from '../dashboard/index.js';
import { OpsMetrics, readHttpEndpointOptions, startOpsEndpoint, withHttpStatus, type HttpEndpoint, type HttpEndpointOptions } from '../ops/index.js';
import { nodeCommand } from '../runtime/node-command.js';
import { AGENT_NODE_FLAGS, vmModulesAvailable } from '../runtime/sandbox.js';
import { packageDir } from './package-dir.js';

/** The sample apps `ferry start --samples` installs and runs on a fresh data directory. */
export const SAMPLE_APPS = ['counter', 'notes', 'sensor-log'];

/** The `apps/` folder of this package (from the sources or from `dist/`). */
export function samplesDir(): string {
  return join(packageDir(), 'apps');
}

/** Set in the agent's environment by the wrapper that re-ran it: the agent then stops when the wrapper goes. */
const WRAPPED = 'FERRY_AGENT_WRAPPED';

/**
 * Re-runs this command in a Node with the agent's flags (app modules need
 * `--experimental-vm-modules`); resolves with its exit code. Only `node main.js start` without
 * the flags comes here: the installed command gets them from main.js's `#!` line, and the
 * systemd unit from its ExecStart, so those run as one process. Signals are passed on (the agent
 * takes any number of them as one stop), and an IPC channel ties the agent to this process:
 * if this one is killed outright, the channel closes and the agent stops too, so no agent
 * outlives the process a supervisor started.
 */
export function reexecWithAgentFlags(): Promise<number> {
  // Through FERRY_NODE where execPath cannot be run again (an emulated ARM64 Node, node-command.ts).
  const child = spawn(nodeCommand(), [...process.execArgv, ...AGENT_NODE_FLAGS, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, [WRAPPED]: '1' },
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

/**
 * `ferry start`: runs the agent in this process until SIGINT/SIGTERM or
 * `ferry shutdown`. With `samples`, a data directory without apps gets the sample apps installed and running.
 * With `http`, the ops endpoint (/healthz, /metrics) listens beside the control socket (errors name `http.<field>`);
 * with `dashboard` too, it serves the dashboard (errors name `dashboard.<field>`).
 */
export async function runAgent(options: AgentOptions, samples: boolean, say: (text: string) => void, bridgeOptions: Partial<BridgeOptions> = {}, http?: HttpEndpointOptions, dashboard?: DashboardOptions, fleetOptions: FleetOptions = {}): Promise<number> {
  if (!vmModulesAvailable()) return reexecWithAgentFlags();
  // V8's memory-saving mode: an agent mostly idles on a small device. About 10 MB less idle RSS,
  // mailbox throughput within the noise (bench/agent.ts). Set here, not in AGENT_NODE_FLAGS, so an agent
  // started with only those flags (no re-exec) has it too.
  setFlagsFromString('--optimize-for-size');
  // Run by the wrapper: when it is gone (killed outright), stop rather than run on as an orphan.
  // Watched from the start; before the agent is up there is nothing to shut down cleanly.
  let onOrphaned: (() => void) | undefined;
  if (process.env[WRAPPED] === '1' && process.channel) {
    process.on('disconnect', () => {
      if (onOrphaned) onOrphaned();
      else process.exit(1);
    });
    process.channel.unref(); // the channel alone must not keep the agent alive
  }
  // A signal during start-up is kept and acted on once the agent is up (then it stops cleanly).
  let signalled: NodeJS.Signals | undefined;
  const early = (sig: NodeJS.Signals) => (signalled = sig);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, early);
  await ControlServer.checkFree(options.dataDir);
  if (http) readHttpEndpointOptions(http, 'http'); // a bad option is refused before anything starts
  if (dashboard) readDashboardOptions(dashboard, 'dashboard');
  readFleetOptions(fleetOptions, 'fleet');
  const metrics = http ? new OpsMetrics() : undefined;
  const agent = await Agent.start(metrics ? { ...options, observer: metrics } : options);
  let stopping: Promise<void> | undefined;
  let control: ControlServer | undefined;
  let endpoint: HttpEndpoint | undefined;
  let dash: Dashboard | undefined;
  let bridge: Bridge | FerryError | undefined;
  let fleet: Fleet | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      dash?.close();
      await endpoint?.close();
      await control?.close();
      fleet?.close();
      if (bridge instanceof Bridge) await bridge.close();
      await agent.close();
    })());
  const exit = () =>
    stop().then(
      () => process.exit(0),
      (e: unknown) => {
        agent.log.error('agent.stop-failed', { error: String(e) });
        process.exit(1);
      },
    );
  try {
    // A bundle leaves out the code when the peer's fresh summary says it holds it (the fleet starts after the bridge).
    bridge = await startBridge(agent, bridgeOptions, (peer, _app, code) => fleet?.codeHeld(peer, code));
    if (bridge instanceof Bridge) fleet = startFleet(agent, bridge, fleetOptions);
    const extension = mergeControl(bridgeControl(bridge), fleetControl(fleet ?? (bridge instanceof FerryError ? bridge : new FerryError('BRIDGE_CLOSED', 'the bridge is not running', { field: 'bridge' }))));
    if (http && metrics) {
      // The dashboard acts through the same dispatcher as the control socket: one code path.
      // Its `status` is the control socket's, `httpUrl` and `dashboardUrl` included once the endpoint is up.
      const dispatch: ControlDispatch = (cmd, args) => controlDispatcher(agent, withHttpStatus(extension, endpoint, dash !== undefined))(cmd, args);
      if (dashboard) dash = startDashboard({ agent, metrics, dispatch, assetsDir: join(packageDir(), 'agent', 'dashboard', 'public'), version: ferryVersion() }, dashboard);
      endpoint = await startOpsEndpoint(agent, metrics, http, 'http', dash?.mount);
    }
    control = await ControlServer.listen(agent, agent.options.dataDir, () => void exit(), withHttpStatus(extension, endpoint, dash !== undefined));
    if (samples && agent.registry.apps().length === 0) {
      for (const name of SAMPLE_APPS) {
        await agent.install(join(samplesDir(), `${name}.mjs`));
        // A sample the device cannot run (sensor-log on a profile without a sensor, none on the
        // broker) stays installed and stopped; the others run.
        await agent.run(name).catch((e: unknown) => agent.log.warn('sample.not-running', { app: name, error: String(e) }));
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  // Every signal, not just the first: Ctrl-C and a supervisor's SIGTERM reach both this process and
  // the wrapper (which passes them on), and a repeat during the shutdown must not cut it short.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.off(sig, early);
    process.on(sig, () => {
      if (stopping) agent.log.debug('agent.signal-again', { signal: sig });
      else agent.log.info('agent.stopping', { signal: sig });
      void exit();
    });
  }
  if (signalled) {
    agent.log.info('agent.stopping', { signal: signalled });
    void exit();
  }
  onOrphaned = () => {
    agent.log.warn('agent.stopping', { reason: 'the ferry start process that ran this agent is gone' });
    void exit();
  };
  const s = agent.status();
  agent.log.info('agent.ready', { ...s, control: control.path });
  const dataFlag = agent.options.dataDir === join(process.cwd(), 'ferry-data') ? '' : ` --data ${agent.options.dataDir}`;
  const running = agent.apps().instances.filter((i) => i.state === 'running').map((i) => i.instance);
  // Suggest what works here: a call to an instance that runs, else how to get one running.
  const first = running.includes('counter') ? 'counter' : running[0];
  const next =
    first === 'counter'
      ? [`  npx ferry call counter increment${dataFlag}`, `  npx ferry apps${dataFlag}`, `  npx ferry checkpoints counter${dataFlag}`]
      : first !== undefined
        ? [`  npx ferry apps${dataFlag}`, `  npx ferry checkpoints ${first}${dataFlag}`]
        : [`  npx ferry install <app.mjs>${dataFlag}`, `  npx ferry run <app>${dataFlag}`, '  (or start with --samples for the sample apps)'];
  say(
    [
      `ferry agent ${s.deviceId} (profile ${s.profile}) is up; broker ${s.broker}${s.embeddedBroker ? ' (embedded)' : ''}.`,
      `apps running: ${running.join(', ') || 'none'}`,
      ...(endpoint ? [`health and metrics: ${endpoint.url}/healthz, ${endpoint.url}/metrics`] : []),
      ...(endpoint && dash ? [`dashboard: ${endpoint.url}/ (\`npx ferry dashboard${dataFlag}\` prints the address with its access token)`] : []),
      'try, in another terminal:',
      ...next,
      'stop with Ctrl-C (apps are checkpointed and resume at the next start).',
    ].join('\n'),
  );
  return new Promise<number>(() => undefined); // runs until a signal or `ferry shutdown`
}

/** This package's version (package.json). */
export function ferryVersion(): string {
  try {
    return String((JSON.parse(readFileSync(join(packageDir(), 'package.json'), 'utf8')) as { version?: unknown }).version ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

/** Starts the fleet part (region summaries, peer choice, plans) over the bridge. */
function startFleet(agent: Agent, bridge: Bridge, options: FleetOptions): Fleet {
  return Fleet.start(
    {
      bridge,
      moves: agent.moves,
      store: agent.store,
      profile: agent.profile,
      dataDir: agent.options.dataDir,
      maxInstances: agent.options.maxInstances,
      instances: () => agent.registry.instances(),
      apps: () => agent.registry.apps(),
      serviceTypes: () => (agent.connection?.discovery.all() ?? []).map((s) => s.type),
      log: (level, event, fields) => agent.log.log(level, event, fields),
    },
    options,
  );
}

/**
 * Starts the bridge on the agent's connection. A missing or corrupt identity or peer registry
 * does not stop the agent (its apps run on): the bridge stays off, every bridge command answers
 * with that error, and `ferry status` says so.
 */
async function startBridge(agent: Agent, extra: Partial<BridgeOptions>, codeHeld: (peer: string, app: string, code: string) => boolean | undefined): Promise<Bridge | FerryError> {
  const c = agent.connection!;
  try {
    return await Bridge.start(
      { ...extra, dataDir: agent.options.dataDir, deviceId: agent.options.deviceId, profile: agent.profile.name },
      {
        bus: c.bus as MqttBus,
        discovery: c.discovery,
        log: (level, event, fields) => agent.log.log(level, event, fields),
        runtime: { moves: agent.moves, store: agent.store, profile: agent.profile, services: () => agent.connection },
        codeHeld,
      },
    );
  } catch (e) {
    if (!isBridgeFileError(e)) throw e;
    agent.log.error('bridge.disabled', { error: String(e) });
    return e as FerryError;
  }
}
