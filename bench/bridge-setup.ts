/**
 * Setup for bench/bridge.ts: two devices on one broker, each a service stack
 * (startServices, its own device id) with a Bridge on a temp data directory,
 * paired through the Pairing API with the codes each side computed (instant
 * confirmations), and a bare MQTT observer that counts what goes on the bridge topics.
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { Bridge } from '../agent/bridge/bridge.js';
import type { SealedTransfer } from '../agent/bridge/sealed-bulk.js';
import { startServices, type Services } from '../agent/services/index.js';
import { decodeCbor } from '../transports/envelope.js';
import type { MqttBus } from '../transports/mqtt-bus.js';

export interface Device {
  id: string;
  services: Services;
  bus: MqttBus;
  bridge: Bridge;
  events: EventEmitter; // the bridge's log lines, by event name
  received: number[]; // sizes of the sealed transfers received, in order
  warnings: string[]; // warn/error lines from the bridge (none expected)
  close(): Promise<void>;
}

export async function startDevice(url: string, id: string, root: string): Promise<Device> {
  // The agent's own bus settings (agent/runtime/agent.ts).
  const services = await startServices({ url, deviceId: id, bus: { maxInFlight: 256 } });
  const events = new EventEmitter();
  const received: number[] = [];
  const warnings: string[] = [];
  const dataDir = mkdtempSync(join(root, `${id}-`));
  let bridge: Bridge;
  try {
    bridge = await Bridge.start(
      { dataDir, deviceId: id, profile: 'bench', label: id },
      {
        bus: services.bus as MqttBus,
        discovery: services.discovery,
        log: (level, event, fields) => {
          if (level === 'warn' || level === 'error') warnings.push(`${event} ${JSON.stringify(fields)}`);
          events.emit(event, fields);
        },
      },
      (t: SealedTransfer) => received.push(t.data.length),
    );
  } catch (e) {
    await services.close();
    throw e;
  }
  return {
    id,
    services,
    bus: services.bus as MqttBus,
    bridge,
    events,
    received,
    warnings,
    close: async () => {
      await bridge.close();
      await services.close();
    },
  };
}

/** Resolves at the next `event` from `d`'s bridge whose `peer` is `peer`. */
function nextEvent(d: Device, event: string, peer: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (f: { peer?: unknown }) => {
      if (f.peer !== peer) return;
      d.events.off(event, on);
      resolve();
    };
    d.events.on(event, on);
  });
}

/**
 * One complete pairing, `a` initiating, `b` accepting as soon as the request is in, both owners
 * confirming at once with the code their own device computed. Resolves with its time (ms).
 */
export async function pair(a: Device, b: Device): Promise<{ ms: number; code: string }> {
  const incoming = nextEvent(b, 'pair.incoming', a.id);
  const t0 = performance.now();
  const codeA = a.bridge.pair(b.id, false);
  await incoming;
  const [ca, cb] = await Promise.all([codeA, b.bridge.pair(a.id, true)]);
  if (ca.code !== cb.code) throw new Error(`pairing codes differ: ${ca.code} vs ${cb.code}`);
  await Promise.all([a.bridge.confirm(b.id, true, ca.code), b.bridge.confirm(a.id, true, cb.code)]);
  return { ms: performance.now() - t0, code: ca.code };
}

/** A frame or envelope the observer saw. */
export interface Seen {
  topic: string;
  bytes: number;
  /** Bridge frame kind (byte 1) on channel topics. */
  kind?: number;
  /** Envelope type on pairing topics. */
  type?: string;
}

/** A bare MQTT client subscribed to `ferry/v1/bridge/#`: the broker's view of the bridge. */
export interface Observer {
  seen: Seen[];
  /** Waits until `settleMs` pass with nothing new (everything published so far has arrived). */
  quiet(settleMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function observe(url: string): Promise<Observer> {
  const c: MqttClient = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0, log: () => undefined });
  (c.stream as Socket).setNoDelay?.(true);
  const seen: Seen[] = [];
  let last = performance.now();
  c.on('message', (topic, payload) => {
    last = performance.now();
    const s: Seen = { topic, bytes: payload.length };
    if (topic.endsWith('/ch')) s.kind = payload[1];
    else if (topic.endsWith('/pair')) s.type = String((decodeCbor(payload) as { type?: unknown } | null)?.type);
    seen.push(s);
  });
  await c.subscribeAsync('ferry/v1/bridge/#', { qos: 1 });
  return {
    seen,
    quiet: async (settleMs = 150) => {
      const from = performance.now();
      while (performance.now() - Math.max(last, from) < settleMs) await new Promise((r) => setTimeout(r, 25));
    },
    close: () => c.endAsync(true),
  };
}

export function tempRoot(): string {
  return mkdtempSync(join(tmpdir(), 'ferry-bench-bridge-'));
}
