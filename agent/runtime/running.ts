import type { DurableSession } from '../../transports/durable-session.js';
import type { AppInstance } from './app-instance.js';
import type { AppLeases } from './app-leases.js';
import type { AppRunner } from './app-runner.js';
import type { InstanceRecord } from './registry.js';

/** One running instance and what serves it. */
export interface Running {
  record: InstanceRecord;
  instance: AppInstance;
  runner: AppRunner;
  /** Made once the services are up (recovery opens heaps before connecting). */
  leases: AppLeases | undefined;
  session: DurableSession | undefined;
  /** The module's JavaScript this instance runs (installing another keeps it until `upgrade`). */
  source: string;
  /** At a handoff's bookmark: no handler runs and its timers and deliveries wait (instance-moves.ts). */
  paused?: boolean;
  /** Answers on their way to the broker (their requests are acknowledged once each is there). */
  answering: Set<Promise<void>>;
}
