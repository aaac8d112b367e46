import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { FerryError } from '../../core/errors.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { Bridge, isBridgeFileError } from '../bridge/bridge.js';
import { bridgeControl } from '../bridge/control.js';
import type { BridgeOptions } from '../bridge/options.js';
import { Agent } from '../runtime/agent.js';
import type { AgentOptions } from '../runtime/agent-options.js';
import { ControlServer } from '../runtime/control-server.js';
import { AGENT_NODE_FLAGS, vmModulesAvailable } from '../runtime/sandbox.js';

/** The sample apps `ferry start --samples` installs and runs on a fresh data directory. */
export const SAMPLE_APPS = ['counter', 'notes', 'sensor-log'];

/** The `apps/` folder of this package (from the sources or from `dist/`). */
export function samplesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'apps', 'counter.mjs')) && existsSync(join(dir, 'package.json'))) return join(dir, 'apps');
    dir = dirname(dir);
  }
  return join(process.cwd(), 'apps');
}

/**
 * Re-runs this command in a Node with the agent's flags (app modules need
 * `--experimental-vm-modules`); resolves with its exit code. Signals are passed on.
 */
export function reexecWithAgentFlags(): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, ...AGENT_NODE_FLAGS, ...process.argv.slice(1)], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

/**
 * `ferry start`: runs the agent in this process until SIGINT/SIGTERM or
 * `ferry shutdown`. With `samples`, a data directory without apps gets the sample apps installed and running.
 */
export async function runAgent(options: AgentOptions, samples: boolean, say: (text: string) => void, bridgeOptions: Partial<BridgeOptions> = {}): Promise<number> {
  if (!vmModulesAvailable()) return reexecWithAgentFlags();
  // V8's memory-saving mode: an agent mostly idles on a small device. About 10 MB less idle RSS,
  // mailbox throughput within the noise (bench/agent.ts). Set here, not in AGENT_NODE_FLAGS, so an agent
  // started with only those flags (no re-exec) has it too.
  setFlagsFromString('--optimize-for-size');
  await ControlServer.checkFree(options.dataDir);
  const agent = await Agent.start(options);
  let stopping: Promise<void> | undefined;
  let control: ControlServer | undefined;
  let bridge: Bridge | FerryError | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await control?.close();
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
    bridge = await startBridge(agent, bridgeOptions);
    control = await ControlServer.listen(agent, agent.options.dataDir, () => void exit(), bridgeControl(bridge));
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
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void exit());
  const s = agent.status();
  agent.log.info('agent.ready', { ...s, control: control.path, next: 'ferry call counter increment' });
  const dataFlag = agent.options.dataDir === join(process.cwd(), 'ferry-data') ? '' : ` --data ${agent.options.dataDir}`;
  say(
    [
      `ferry agent ${s.deviceId} (profile ${s.profile}) is up; broker ${s.broker}${s.embeddedBroker ? ' (embedded)' : ''}.`,
      `apps running: ${agent.apps().instances.filter((i) => i.state === 'running').map((i) => i.instance).join(', ') || 'none'}`,
      'try, in another terminal:',
      `  npx ferry call counter increment${dataFlag}`,
      `  npx ferry apps${dataFlag}`,
      `  npx ferry checkpoints counter${dataFlag}`,
      'stop with Ctrl-C (apps are checkpointed and resume at the next start).',
    ].join('\n'),
  );
  return new Promise<number>(() => undefined); // runs until a signal or `ferry shutdown`
}

/**
 * Starts the bridge on the agent's connection. A missing or corrupt identity or peer registry
 * does not stop the agent (its apps run on): the bridge stays off, every bridge command answers
 * with that error, and `ferry status` says so.
 */
async function startBridge(agent: Agent, extra: Partial<BridgeOptions>): Promise<Bridge | FerryError> {
  const c = agent.connection!;
  try {
    return await Bridge.start(
      { ...extra, dataDir: agent.options.dataDir, deviceId: agent.options.deviceId, profile: agent.profile.name },
      { bus: c.bus as MqttBus, discovery: c.discovery, log: (level, event, fields) => agent.log.log(level, event, fields) },
    );
  } catch (e) {
    if (!isBridgeFileError(e)) throw e;
    agent.log.error('bridge.disabled', { error: String(e) });
    return e as FerryError;
  }
}
