import type { OutgoingInstance } from '../runtime/instance-moves.js';
import type { PrepareAnswer } from './move-wire.js';

/** What a handoff says: its prepare request, and its report as it goes and when it ends (`ferry migrate`, `ferry migrations`, the bench). */

export type MovePhase = 'prepare' | 'code' | 'precopy' | 'switch' | 'commit' | 'done' | 'aborted';

export interface MoveProgress {
  phase: MovePhase;
  round: number;
  bytesSent: number;
  /** Bytes of the lines the destination lacked at the prepare (the least any move must send). */
  bytesMissing: number;
  heapBytes: number;
  dirtyRateBps: number;
  bandwidthBps: number;
  rttMs: number;
  expectedDowntimeMs: number;
}

export interface MoveReport extends MoveProgress {
  id: string;
  instance: string;
  from: string;
  to: string;
  path: 'lines' | 'objects';
  outcome: 'moved' | 'aborted' | 'planned';
  code?: string;
  message?: string;
  startedAt: string;
  totalMs: number;
  /** Pause to the destination's answer that the instance runs there (0 if it never paused). */
  downtimeMs: number;
  downtimeLimitMs: number;
  rounds: number;
  linesReused: number;
  linesSent: number;
  leasesHandedOver: number;
  leasePlan: PrepareAnswer['leasePlan'];
  codeSent: boolean;
  /** Where the downtime went, ms from the pause: paused, destination prepared, decision written, leases handed over, destination running. */
  switchSteps?: { pausedMs: number; preparedMs: number; decidedMs: number; handedOverMs: number; runningMs: number };
  /** A move to a device on another broker: the requests left in the origin broker's mailbox session, forwarded to the destination's (DESIGN.md, "Handoff across brokers"). */
  mailboxForwarded?: number;
}

/** The `move.prepare` body (PROTOCOL §B.8) for an instance described by the runtime. */
export function prepareBody(id: string, d: OutgoingInstance, deviceId: string): Record<string, unknown> {
  return {
    id,
    instance: d.instance,
    app: d.app,
    appVersion: d.appVersion,
    code: d.code,
    lineSize: d.lineSize,
    maxLines: d.maxLines,
    wordBits: d.wordBits,
    minHeapBytes: d.minHeapBytes,
    ...(d.requiredWordBits !== undefined ? { requiredWordBits: d.requiredWordBits } : {}),
    // Array.from, not d.services.map: the list was built in the app's sandbox realm, whose arrays
    // are no `Array` here, and CBOR would encode one as an indefinite-length array (refused on arrival).
    services: Array.from(d.services, (s) => ({ type: s.type, optional: s.optional, ...(s.attributes ? { attributes: { ...s.attributes } } : {}) })),
    leases: d.leases.map(({ type, lease }) => {
      const provider = String(lease.description?.attrs?.device ?? lease.description?.provider ?? lease.leaseTopic);
      return { type, provider, exclusive: lease.exclusive, local: lease.description?.attrs?.system === true && provider === deviceId };
    }),
  };
}
