import type { RunnerObserver } from '../runtime/runner-observer.js';
import type { OpsSurface } from './agent-surface.js';
import { PrometheusText, type HistogramSample, type Sample } from './prometheus-text.js';

/**
 * Upper bounds of the commit latency buckets, seconds: 0.5 ms (a batched commit on a fast
 * disk) to 5 s (a synced commit on a tired SD card). 13 buckets and +Inf per instance.
 */
export const COMMIT_SECONDS_BOUNDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const OUTCOMES = ['ok', 'error', 'repeat'] as const;
type Outcome = (typeof OUTCOMES)[number];

/** What is counted per instance, since the agent started (an instance's figures outlive its openings). */
interface PerInstance {
  calls: Record<Outcome, number>;
  dropped: number;
  commitCounts: number[];
  commitSum: number;
  /** The latest group commit's time, seconds (undefined before the first). */
  lastCommitSeconds?: number;
}

/**
 * The agent's metrics: counters pushed by the runtime (this object is its `RunnerObserver`:
 * calls by outcome, dropped messages, commit latency) and figures read from the agent at each
 * scrape (heaps, store, leases, broker, process). The list, with types, labels and units, is in
 * DESIGN.md beside this file. Counting is a few additions into per-instance records; memory is
 * bounded by the instances run since the agent started.
 */
export class OpsMetrics implements RunnerObserver {
  private readonly per = new Map<string, PerInstance>();

  called(instance: string, outcome: Outcome): void {
    this.of(instance).calls[outcome]++;
  }

  dropped(instance: string): void {
    this.of(instance).dropped++;
  }

  committed(instance: string, _calls: number, seconds: number): void {
    const p = this.of(instance);
    let i = 0;
    while (i < COMMIT_SECONDS_BOUNDS.length && seconds > COMMIT_SECONDS_BOUNDS[i]!) i++;
    p.commitCounts[i]!++;
    p.commitSum += seconds;
    p.lastCommitSeconds = seconds;
  }

  /** One instance's counters since the agent started: calls run (every outcome), and the latest commit's time (seconds). */
  figures(instance: string): { calls: number; lastCommitSeconds?: number } {
    const p = this.per.get(instance);
    if (!p) return { calls: 0 };
    return { calls: p.calls.ok + p.calls.error + p.calls.repeat, ...(p.lastCommitSeconds !== undefined ? { lastCommitSeconds: p.lastCommitSeconds } : {}) };
  }

  /** The exposition text (Prometheus 0.0.4), with the agent's present figures read from `surface`. */
  render(surface: OpsSurface): string {
    const t = new PrometheusText();
    const per = [...this.per].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    t.counter(
      'ferry_mailbox_requests_total',
      'Calls run by an instance (mailbox requests, ferry call, timer ticks, service replies), by outcome: ok, error (the handler failed or was refused; its changes rolled back), repeat (an id applied before: nothing ran).',
      per.flatMap(([instance, p]) => OUTCOMES.map((outcome) => ({ labels: { instance, outcome }, value: p.calls[outcome] }))),
    );
    t.counter('ferry_mailbox_dropped_total', 'Mailbox messages that ran nothing (too large, malformed, expired, not an app.call): acknowledged, never applied.', per.map(([instance, p]) => ({ labels: { instance }, value: p.dropped })));
    t.histogram(
      'ferry_mailbox_commit_seconds',
      'Time of one group commit of an instance (its heap checkpoint, synced with durability full), seconds.',
      per.map(([instance, p]): HistogramSample => ({ labels: { instance }, bounds: COMMIT_SECONDS_BOUNDS, counts: p.commitCounts, sum: p.commitSum })),
    );

    const instances = surface.instances();
    const states = ['running', 'suspended', 'stopped', 'failed', 'moved', 'incoming'] as const;
    t.gauge('ferry_instances', 'Instances known to the agent, by state (failed: should run and cannot).', states.map((state) => ({ labels: { state }, value: instances.filter((i) => i.state === state).length })));
    const heaps = instances.filter((i) => i.heap !== undefined).map((i) => ({ instance: i.instance, heap: i.heap! }));
    const heap = (pick: (h: NonNullable<(typeof heaps)[number]['heap']>) => number): Sample[] => heaps.map((i) => ({ labels: { instance: i.instance }, value: pick(i.heap) }));
    t.counter('ferry_heap_faults_total', "Lines a running instance's heap read from the store, since the heap was last opened (starts again at resume).", heap((h) => h.faults));
    t.gauge('ferry_heap_resident_bytes', "Bytes of a running instance's heap in memory (resident lines and the nursery).", heap((h) => h.residentBytes));
    t.gauge('ferry_heap_budget_bytes', "A running instance's in-memory heap budget (the profile's), bytes.", heap((h) => h.budgetBytes));
    t.gauge('ferry_heap_virtual_bytes', "Bytes of a running instance's virtual heap in use (lines in use times the line size).", heap((h) => h.virtualBytes));

    const store = surface.store();
    t.counter('ferry_store_bytes_written_total', 'Line bytes the store wrote to its segment file (flash) since the agent started, compaction copies included.', [{ value: store.bytesWritten }]);
    t.counter('ferry_store_commits_total', 'Store transactions committed (checkpoints of every instance) since the agent started.', [{ value: store.commits }]);

    const leases = surface.leases();
    t.counter('ferry_lease_renewals_total', "Lease renewals the grantor granted to this agent's renewal manager.", leases ? [{ value: leases.renewed }] : []);
    t.counter('ferry_lease_renewal_failures_total', 'Lease renewals that failed (refused, or unanswered and retried).', leases ? [{ value: leases.failures }] : []);

    const broker = surface.broker();
    t.gauge('ferry_broker_connected', "1 while the agent's connection to the broker is up, else 0.", [{ value: broker.connected ? 1 : 0 }]);
    t.counter('ferry_broker_reconnects_total', 'Times the connection to the broker came back after it was lost.', [{ value: broker.reconnects }]);

    const proc = surface.process();
    t.gauge('process_resident_memory_bytes', "The agent process's resident set size, bytes.", [{ value: proc.rssBytes }]);
    t.gauge('process_start_time_seconds', 'When the agent process started, seconds since the Unix epoch.', [{ value: proc.startTimeSeconds }]);
    t.gauge('ferry_uptime_seconds', 'Seconds since the agent started (as ferry status).', [{ value: proc.uptimeSeconds }]);
    return t.text();
  }

  private of(instance: string): PerInstance {
    let p = this.per.get(instance);
    if (!p) {
      p = { calls: { ok: 0, error: 0, repeat: 0 }, dropped: 0, commitCounts: new Array<number>(COMMIT_SECONDS_BOUNDS.length + 1).fill(0), commitSum: 0 };
      this.per.set(instance, p);
    }
    return p;
  }
}
