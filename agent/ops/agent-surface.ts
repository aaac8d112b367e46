import type { Agent } from '../runtime/agent.js';
import { residentBytes } from '../runtime/resident-memory.js';

/** One instance as the endpoint reports it. */
export interface OpsInstance {
  instance: string;
  app: string;
  /** `failed`: it should run and cannot (`error` says why); `suspended`, `stopped`: the operator took it off; `moved`: handed off to a peer; `incoming`: arriving. */
  state: 'running' | 'suspended' | 'stopped' | 'failed' | 'moved' | 'incoming';
  error?: string;
  /** While it runs: its heap's figures since the heap was last opened. */
  heap?: { faults: number; residentBytes: number; budgetBytes: number; virtualBytes: number };
}

/**
 * Everything the ops endpoint reads of the agent, read at each request: the narrow view that
 * keeps `agent/ops` on the runtime's public surface (status, apps, the running instance's
 * heap, the store's and the renewal manager's counters). Tests may hand their own.
 */
export interface OpsSurface {
  /** `connected`: the bus is up and subscribed again after any outage; `downSince` (ISO) while it is not. */
  broker(): { connected: boolean; downSince?: string; reconnects: number };
  instances(): OpsInstance[];
  /** Since the agent opened its store: line bytes written to the segment file (compaction copies included), commits. */
  store(): { bytesWritten: number; commits: number };
  /** Since the services started (undefined before): lease renewals granted, renewals that failed. */
  leases(): { renewed: number; failures: number } | undefined;
  /** The process's resident set, the agent's uptime (as `ferry status`), when the process started (s since the epoch). */
  process(): { rssBytes: number; uptimeSeconds: number; startTimeSeconds: number };
}

/** The surface of a running agent. */
export function agentSurface(agent: Agent): OpsSurface {
  const startedAt = Date.now() - process.uptime() * 1000;
  return {
    broker() {
      const s = agent.status() as { brokerConnected?: boolean; brokerDownSince?: string; brokerReconnects?: number };
      // Back only once the bus is connected *and* subscribed again (broker-watch.ts's `broker.back`):
      // between the two the agent's subscriptions are not in place yet.
      const connected = s.brokerConnected === true && s.brokerDownSince === undefined;
      return { connected, ...(s.brokerDownSince !== undefined ? { downSince: s.brokerDownSince } : {}), reconnects: s.brokerReconnects ?? 0 };
    },
    instances() {
      return agent.apps().instances.map((v) => {
        const i: OpsInstance = { instance: v.instance, app: v.app, state: v.state, ...(v.error !== undefined ? { error: v.error } : {}) };
        // Not while a handoff has it paused at its bookmark (agent.runner refuses then).
        if (v.state === 'running' && !agent.moves.isMoving(v.instance)) {
          const h = agent.runner(v.instance).instance.heapStats();
          i.heap = { faults: h.faults, residentBytes: h.residentBytes, budgetBytes: h.budgetBytes, virtualBytes: h.virtualBytes };
        }
        return i;
      });
    },
    store() {
      const s = agent.store.stats();
      return { bytesWritten: s.segmentBytesWritten, commits: s.commits };
    },
    leases() {
      const s = agent.connection?.renewals.stats;
      return s ? { renewed: s.renewed, failures: s.failures } : undefined;
    },
    process() {
      const uptimeMs = (agent.status() as { uptimeMs?: number }).uptimeMs ?? 0;
      return { rssBytes: residentBytes(), uptimeSeconds: uptimeMs / 1000, startTimeSeconds: Math.floor(startedAt / 1000) };
    },
  };
}
