import type { HwProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../transports/options.js';
import type { Services } from '../services/index.js';
import type { ResolvedAgentOptions } from './agent-options.js';
import { AppInstance } from './app-instance.js';
import { AppLeases } from './app-leases.js';
import type { LoadedApp } from './app-loader.js';
import { AppRunner } from './app-runner.js';
import { codeHash, runUpgradeHook } from './app-upgrade.js';
import type { Logger } from './logger.js';
import { answer, deliver, type DeliveryHost } from './outbox-delivery.js';
import type { InstanceRecord } from './registry.js';
import type { Running } from './running.js';

/**
 * Opening an instance: its heap (at a version, or the newest) with the app's upgrade hook when
 * the code changed, and the runner that serves it, wired to the agent's answers, deliveries and
 * logs. What the agent's `open` does once the module is loaded (agent.ts).
 */

/** What opening an instance needs of the agent (read when used: the services come up later). */
export interface OpeningHost {
  store: () => Store;
  profile: () => HwProfile;
  options: () => ResolvedAgentOptions;
  log: () => Logger;
  services: () => Services | undefined;
  delivery: () => DeliveryHost;
  /** A commit of this runner failed: the agent takes the instance off. */
  failed: (instance: string, runner: AppRunner, e: unknown) => void;
}

/** The instance opened and its runner made; not yet registered as running, connected or leased. */
export function openRunning(h: OpeningHost, rec: InstanceRecord, app: LoadedApp & { source: string; version?: number }): Running {
  const { definition, sandbox, source, version } = app;
  const o = h.options();
  const log = h.log();
  let running: Running | undefined;
  const instance = AppInstance.open({
    instance: rec.instance,
    definition,
    sandbox,
    heap: { store: h.store(), profile: h.profile(), ...(version !== undefined ? { version } : {}) },
    handlerTimeoutMs: o.handlerTimeoutMs,
    rememberReplies: o.rememberReplies,
    replayHorizonMs: o.replayHorizonMs,
    // Spent ids age only while the mailbox is connected: a broker that was down, or an
    // instance suspended, has not had the time to save what it acknowledged.
    mailboxMs: () => running?.session?.connectedMs() ?? 0,
    host: {
      now: () => Date.now(),
      log: (level, message, data) => log.log(level, 'app.log', { instance: rec.instance, message, data }),
      leasesJson: () => JSON.stringify(running?.leases?.view() ?? []),
      app: { name: definition.name, version: definition.version, instance: rec.instance },
    },
  });
  const toCode = codeHash(source);
  if (rec.code !== undefined && rec.code !== toCode) {
    const change = { fromVersion: rec.appVersion, toVersion: definition.version, fromCode: rec.code, toCode };
    runUpgradeHook(instance, change);
    log.info('app.upgraded', { instance: rec.instance, from: change.fromVersion, to: change.toVersion, checkpoint: instance.heapStats().version });
  }
  const runner = new AppRunner(
    instance,
    {
      answer: (replyTo, corr, outcome, then) => {
        const p = answer(h.delivery(), replyTo, corr, outcome, then);
        running?.answering.add(p);
        void p.finally(() => running?.answering.delete(p));
      },
      deliver: (entries) => {
        for (const e of entries) void deliver(h.delivery(), running!, e);
      },
      warn: (event, data) => log.warn(event, { instance: rec.instance, ...data }),
      // Only at debug level: the line is built per commit, so at other levels it is not offered.
      ...(o.logLevel === 'debug' ? { debug: (event: string, data: Record<string, unknown>) => log.debug(event, { instance: rec.instance, ...data }) } : {}),
      observer: o.observer,
      failed: (e) => h.failed(rec.instance, runner, e),
      now: () => Date.now(),
      maxClockSkewMs: 1000,
      // The agent's bus runs with the default limit (§1); its mailbox sessions take the same.
      maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    },
    o.maxBatch,
  );
  const services = h.services();
  running = { record: rec, instance, runner, leases: services ? new AppLeases(services, definition) : undefined, session: undefined, source, answering: new Set() };
  return running;
}
