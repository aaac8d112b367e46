import type { Store } from '../../store/index.js';
import { reasonOf } from '../heap/index.js';
import type { InstanceState, Registry } from './registry.js';
import type { Running } from './running.js';

/** What `ferry apps` shows of one instance. */
export interface InstanceView {
  instance: string;
  app: string;
  appVersion: string | undefined;
  /** `failed`: it should run and cannot (see `error`); `ferry resume` tries again. */
  state: InstanceState | 'failed';
  error?: string;
  /** Newest committed checkpoint version (0 before any). */
  checkpoint: number;
  /** Calls that changed state (durable), and calls since the instance opened that changed nothing (no checkpoint). */
  applied: number | undefined;
  readOnly: number | undefined;
  /** `maxObjectBytes`: the largest encoded size of one heap object (HEAP_VALUE_TOO_LARGE past it). */
  heap: { residentBytes: number; budgetBytes: number; virtualBytes: number; maxObjectBytes: number } | undefined;
  mailbox: { calls: number; commits: number; maxBatch: number } | undefined;
}

/** An instance as `ferry apps` shows it: from the registry, and from the running instance if it runs. */
export function instanceView(instance: string, a: { registry: Registry; store: Store; running: Running | undefined; failed: string | undefined }): InstanceView {
  const rec = a.registry.instance(instance);
  const r = a.running;
  const hs = r?.instance.heapStats();
  return {
    instance,
    app: rec?.app ?? r?.record.app ?? '?',
    appVersion: a.registry.app(rec?.app ?? '')?.version,
    state: r ? 'running' : a.failed !== undefined ? 'failed' : (rec?.state ?? 'stopped'),
    ...(a.failed !== undefined ? { error: a.failed } : {}),
    checkpoint: hs?.version ?? (a.store.hasApp(instance) ? a.store.headVersion(instance) : 0),
    applied: r?.instance.applied,
    readOnly: r?.instance.readOnlyCalls,
    heap: hs ? { residentBytes: hs.residentBytes, budgetBytes: hs.budgetBytes, virtualBytes: hs.virtualBytes, maxObjectBytes: hs.maxObjectBytes } : undefined,
    mailbox: r ? { calls: r.runner.stats.calls, commits: r.runner.stats.commits, maxBatch: r.runner.stats.maxBatch } : undefined,
  };
}

/** One kept version as `ferry checkpoints` lists it. */
export interface CheckpointView {
  instance: string;
  version: number;
  createdAt: number;
  /** Its lines and state blob, bytes. */
  bytes: number;
  current: boolean;
  /** Why it was taken (`init`, `group`, `suspend`, `restore of 3`, `arrived`...); absent in versions older than the field. */
  reason?: string;
}

/** The kept versions of `instance` (none without a heap). */
export function checkpointViews(store: Store, instance: string): CheckpointView[] {
  if (!store.hasApp(instance)) return [];
  return store.versions(instance).map((v) => {
    const reason = reasonOf(store.readState(instance, { version: v.version }));
    return { instance, version: v.version, createdAt: v.createdAt, bytes: v.bytes + v.stateBytes, current: v.current, ...(reason !== undefined ? { reason } : {}) };
  });
}
