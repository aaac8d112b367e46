import { createHash } from 'node:crypto';
import { FerryError } from '../../core/errors.js';
import { getProfile, validateProfile, type HwProfile, type LocalServiceKind } from '../../hw-profiles/index.js';
import type { Bus, Envelope } from '../../transports/contract.js';
import { randomId, systemClock, type Clock } from './clock.js';
import type { Discovery } from './discovery.js';
import type { HeldLease } from './lease-client.js';
import type { LeaseGrantor } from './lease-grantor.js';
import { readSystemServicesOptions, type SystemServicesOptions } from './options.js';
import { fencedError } from './fence.js';
import type { ServicesLog } from './service-log.js';
import { asMap, badAt, optUint, requestEnvelope, str, topics, type ServiceDescription } from './protocol.js';
import { Replay } from './replay.js';

/**
 * System services (the seed's "leased system services"): the local resources of
 * the device's profile offered as leasable services, each through an emulated
 * driver, so an app leases this Pi's display exactly like a remote one: it finds
 * it by discovery, leases it from this device's grantor and calls it on
 * `<prefix>/svc-call/<device>/<kind>` with its lease id. Only the lease holder may
 * call.
 *
 * Output devices are exclusive (one app draws at a time); readings are shared.
 */
export const EXCLUSIVE_KINDS: ReadonlySet<LocalServiceKind> = new Set(['display', 'gpio', 'camera', 'speaker', 'ir']);

export interface Driver {
  readonly kind: LocalServiceKind;
  call(op: string, args: Record<string, unknown>, caller: string): unknown;
}

class Recorder<T> {
  readonly items: T[] = [];
  private total = 0;
  constructor(private readonly max: number) {}
  /** Records x; returns its ordinal since the driver started (1, 2, ...), which keeps counting past `max`. */
  push(x: T): number {
    this.items.push(x);
    if (this.items.length > this.max) this.items.shift();
    return ++this.total;
  }
}

/** Deterministic pseudo-random stream from (seed, device, kind, n): the same device always reads the same values. */
function det(seed: number, device: string, kind: string, n: number, bytes = 8): Buffer {
  return createHash('sha256').update(`${seed}/${device}/${kind}/${n}`).digest().subarray(0, bytes);
}

function unknownOp(kind: string, op: string, ops: string[]): FerryError {
  return new FerryError('SERVICE_BAD_REQUEST', `${kind} has no operation ${JSON.stringify(op)} (has: ${ops.join(', ')})`, { field: 'body.op' });
}

/** Arguments of a call are `body.args.<name>` on the wire: errors name them so. */
const ARGS = 'body.args';

function num(args: Record<string, unknown>, f: string, min: number, max: number): number {
  const v = args[f];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw badAt(`${ARGS}.${f}`, `an integer in ${min}..${max}`, v);
  return v;
}

function text(args: Record<string, unknown>, f: string, max: number): string {
  return str(args, f, max, ARGS);
}

/** Builds the emulated driver of one kind. */
export function emulatedDriver(kind: LocalServiceKind, device: string, seed: number, maxRecorded: number): Driver {
  switch (kind) {
    case 'display': {
      const frames = new Recorder<{ by: string; text: string }>(maxRecorded);
      return {
        kind,
        call(op, args, caller) {
          if (op === 'draw') return { frame: frames.push({ by: caller, text: text(args, 'text', 4096) }) };
          if (op === 'frames') return { frames: frames.items };
          if (op === 'clear') return { frame: frames.push({ by: caller, text: '' }) };
          throw unknownOp(kind, op, ['draw', 'clear', 'frames']);
        },
      };
    }
    case 'gpio': {
      const pins = new Map<number, number>();
      return {
        kind,
        call(op, args) {
          if (op === 'write') {
            pins.set(num(args, 'pin', 0, 63), num(args, 'value', 0, 1));
            return { ok: true };
          }
          if (op === 'read') return { value: pins.get(num(args, 'pin', 0, 63)) ?? 0 };
          throw unknownOp(kind, op, ['write', 'read']);
        },
      };
    }
    case 'sensor':
    case 'gps': {
      let n = 0;
      return {
        kind,
        call(op) {
          if (op !== 'read') throw unknownOp(kind, op, ['read']);
          const b = det(seed, device, kind, n);
          const seq = n++;
          if (kind === 'sensor') return { seq, celsius: 15 + b.readUInt16BE(0) / 6553.5 }; // 15..25 °C
          return { seq, lat: 52 + b.readUInt16BE(0) / 655_350, lon: 4 + b.readUInt16BE(2) / 655_350 };
        },
      };
    }
    case 'camera': {
      let n = 0;
      return {
        kind,
        call(op) {
          if (op !== 'capture') throw unknownOp(kind, op, ['capture']);
          return { seq: n, image: new Uint8Array(det(seed, device, kind, n++, 32)) };
        },
      };
    }
    case 'speaker':
    case 'ir': {
      const played = new Recorder<{ by: string; code: number }>(maxRecorded);
      const verb = kind === 'speaker' ? 'play' : 'send';
      return {
        kind,
        call(op, args, caller) {
          if (op === verb) return { count: played.push({ by: caller, code: num(args, 'code', 0, 0xffff) }) };
          if (op === 'log') return { log: played.items };
          throw unknownOp(kind, op, [verb, 'log']);
        },
      };
    }
    case 'storage': {
      const kv = new Map<string, unknown>();
      return {
        kind,
        call(op, args) {
          if (op === 'put') {
            kv.set(text(args, 'key', 256), args.value ?? null);
            return { ok: true };
          }
          if (op === 'get') return { value: kv.get(text(args, 'key', 256)) ?? null };
          throw unknownOp(kind, op, ['put', 'get']);
        },
      };
    }
  }
}

export class SystemServices {
  readonly drivers = new Map<string, Driver>();
  readonly descriptions: ServiceDescription[] = [];
  private unserve: (() => Promise<void>) | undefined;
  private readonly replay: Replay;

  private constructor(
    readonly bus: Bus,
    readonly grantor: LeaseGrantor,
    readonly profile: HwProfile,
    clock: Clock,
    private readonly log: ServicesLog,
  ) {
    this.replay = new Replay(clock, 120_000, 100_000);
  }

  /** Offers and announces the profile's local services. */
  static async start(bus: Bus, grantor: LeaseGrantor, discovery: Discovery, options: SystemServicesOptions, clock: Clock = systemClock): Promise<SystemServices> {
    const o = readSystemServicesOptions(options);
    const profile = typeof o.profile === 'string' ? getProfile(o.profile) : validateProfile(o.profile, 'options.profile');
    const kinds = (o.kinds ?? profile.services) as LocalServiceKind[];
    for (const [i, k] of kinds.entries()) {
      if (!profile.services.includes(k)) {
        throw new FerryError('BAD_OPTION', `options.kinds[${i}] ${JSON.stringify(k)} is not a service of profile ${profile.name} (${profile.services.join(', ')})`, { field: `options.kinds[${i}]` });
      }
    }
    const s = new SystemServices(bus, grantor, profile, clock, o.log);
    const t = topics(grantor.options.topicPrefix);
    s.unserve = await bus.serve(`${t.call(bus.deviceId, '+')}`, (env, topic) => {
      try {
        return s.handle(env, topic);
      } catch (e) {
        if (e instanceof FerryError && e.code === 'SERVICE_BAD_REQUEST') s.log.badRequest(env, topic, e);
        throw e;
      }
    });
    for (const kind of kinds) {
      s.drivers.set(kind, emulatedDriver(kind, bus.deviceId, o.seed, o.maxRecorded));
      const exclusive = EXCLUSIVE_KINDS.has(kind);
      grantor.offer(kind, { exclusive });
      s.descriptions.push(
        await discovery.announce({ name: kind, type: kind, attrs: { system: true, device: bus.deviceId, profile: profile.name }, exclusive, callTopic: t.call(bus.deviceId, kind) }),
      );
    }
    return s;
  }

  /** The emulated driver behind a kind (tests read what the display drew). */
  driver(kind: string): Driver | undefined {
    return this.drivers.get(kind);
  }

  async close(): Promise<void> {
    const u = this.unserve;
    this.unserve = undefined;
    try {
      await u?.();
    } catch {
      // bus already closed
    }
  }

  /**
   * One `svc.call` (PROTOCOL §S.5). Checked in this order: envelope type and sender, the
   * service (the topic's last level), body, `reqId` (repeats answered from memory), `leaseId`,
   * `op`, `fence`, `args`; then the fence against the newest token issued for the service
   * (LEASE_FENCED), the lease (LEASE_UNKNOWN, LEASE_NOT_HOLDER), the fence against the lease's
   * own token (LEASE_FENCED), and last the operation.
   */
  private handle(env: Envelope, topic: string): unknown {
    const kind = topic.slice(topic.lastIndexOf('/') + 1);
    requestEnvelope(env, CALL_TYPES, 'a system service');
    const driver = this.drivers.get(kind);
    if (!driver) throw new FerryError('SERVICE_NOT_FOUND', `device ${this.bus.deviceId} offers no system service ${JSON.stringify(kind)}`, { field: 'topic' });
    const body = asMap(env.body);
    const reqId = str(body, 'reqId', 128);
    return this.replay.run(env.from, env.type, reqId, () => {
      const leaseId = str(body, 'leaseId', 64);
      const op = str(body, 'op', 64);
      const fence = optUint(body, 'fence');
      const args = body.args === undefined ? {} : asMap(body.args, ARGS);
      // A token older than the newest issued for the service is stale whoever sends it.
      const newest = this.grantor.table.newestFence(kind);
      if (fence !== undefined && newest !== undefined && fence < newest) throw fencedError(kind, fence, 'stale');
      const lease = this.grantor.table.get(leaseId);
      if (!lease || lease.resource !== kind) throw new FerryError('LEASE_UNKNOWN', `no live lease ${leaseId} on ${kind}`, { field: 'body.leaseId' });
      if (lease.holder !== env.from) throw new FerryError('LEASE_NOT_HOLDER', `only the holder of lease ${leaseId} may use ${kind}`, { field: 'body.leaseId' });
      // A shared lease has no token: a fence sent with one is ignored.
      if (fence !== undefined && lease.fence !== undefined && fence !== lease.fence) throw fencedError(kind, fence, 'foreign');
      return driver.call(op, args, env.from);
    });
  }
}

/** The one request a system service serves on its call topic. */
export const CALL_TYPES = ['svc.call'] as const;

/** Calls a system service (local or remote) under a held lease; an exclusive lease's fencing token goes along (`fence`). */
export async function callService<R = unknown>(bus: Bus, lease: HeldLease, callTopic: string, op: string, args: Record<string, unknown> = {}, timeoutMs = 2000): Promise<R> {
  const body = lease.fence !== undefined ? { reqId: randomId(), leaseId: lease.leaseId, op, args, fence: lease.fence } : { reqId: randomId(), leaseId: lease.leaseId, op, args };
  const env = await bus.request<R>(callTopic, 'svc.call', body, { timeoutMs });
  return env.body;
}
