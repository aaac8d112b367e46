/**
 * The sealed channel under attack, between two real agent processes on aedes and on Mosquitto.
 * The attacker has full broker access: it reads every bridge frame (`ferry/v1/bridge/#`) and
 * publishes anything to the victim's channel topic. The victim here is the phone; the pi pings it
 * (the control command `peer-ping`), so the captured records are ping requests and the phone's
 * records on the pi's topic are its answers.
 *
 * Every frame the attacker captured has already reached the victim: a replayed, reordered or
 * modified copy of one meets a counter that was used (attacks-channel.test.ts holds records back
 * in process for the cases a broker cannot show). For each attack: the victim logs the refusal
 * with its code, acts on nothing (no ping answer goes out), keeps serving, and the genuine
 * channel still works.
 */
import { createHash, randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelTopic } from '../../agent/bridge/channel.js';
import { generateX25519 } from '../../agent/bridge/keys.js';
import { KKHandshake } from '../../agent/bridge/noise.js';
import { bridgePrologue, decodeFrame, decodeRefusal, encodeFrame, FrameKind, type DecodedFrame } from '../../agent/bridge/records.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';
import { Device, Dirs, pairViaCli, until } from './helpers.js';

/** What the attacker knows when it forges: the victim's latest two records from the pi, both already opened. */
interface Ctx {
  pi: string;
  phone: string;
  phoneStatic: Buffer;
  /** The latest ping request (an even counter c, so c with its lowest bit flipped is the next one expected). */
  last: Buffer;
  /** The one before it, same session (counter c - 1). */
  prev: Buffer;
  /** The hs1 that made their session. */
  hs1: Buffer;
  session: Buffer;
  next: bigint;
}

interface Case {
  name: string;
  frames(x: Ctx): Buffer[];
  /** The codes the victim logs, one per frame, in order. */
  codes: string[];
  /** The victim's log event; `bridge.refused` unless said. */
  event?: string;
  /** A refusal frame the victim sends back (a hint): to which device's topic, with which code. */
  hint?: { to(x: Ctx): string; code: string };
}

const HEADER = (x: Ctx) => 11 + x.pi.length;
/** Offset of a record's counter (after the header). */
const COUNTER = HEADER;

function flip(buf: Buffer, bit: number): Buffer {
  const out = Buffer.from(buf);
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

function withCounter(rec: Buffer, x: Ctx, c: bigint): Buffer {
  const out = Buffer.from(rec);
  out.writeBigUInt64BE(c, COUNTER(x));
  return out;
}

/** A record's frame with another sender id, everything after the header kept. */
function withFrom(rec: Buffer, x: Ctx, from: string): Buffer {
  return encodeFrame({ kind: FrameKind.Record, session: x.session, from }, rec.subarray(HEADER(x)));
}

/** A Noise KK first message as a device that holds `s` (the attacker's own key) would send it. */
function hs1(from: string, x: Ctx): Buffer {
  const session = randomBytes(8);
  const hs = new KKHandshake({ initiator: true, prologue: bridgePrologue(from, x.phone, session), s: generateX25519(), rs: x.phoneStatic });
  return encodeFrame({ kind: FrameKind.Hs1, session, from }, hs.writeMessage(Buffer.alloc(0)));
}

const CASES: Case[] = [
  { name: 'a captured record replayed', frames: (x) => [x.last], codes: ['BRIDGE_REPLAY'] },
  { name: 'the captured handshake (hs1) of the live session replayed', frames: (x) => [x.hs1], codes: ['BRIDGE_REPLAY'] },
  // The counter was used: refused before the tag is tried.
  { name: 'one bit flipped in the ciphertext', frames: (x) => [flip(x.last, (x.last.length - 20) * 8)], codes: ['BRIDGE_REPLAY'] },
  { name: 'one bit flipped in the tag, at the next counter', frames: (x) => [flip(withCounter(x.last, x, x.next), (x.last.length - 1) * 8)], codes: ['BRIDGE_RECORD_REFUSED'] },
  // c is even: flipping its lowest bit gives the very counter the victim expects next, so only the tag stops it.
  { name: "one bit flipped in the header's counter (to the next one)", frames: (x) => [flip(x.last, (COUNTER(x) + 7) * 8)], codes: ['BRIDGE_RECORD_REFUSED'] },
  { name: "one high bit flipped in the header's counter (a gap)", frames: (x) => [flip(x.last, COUNTER(x) * 8 + 6)], codes: ['BRIDGE_REPLAY'] },
  { name: 'one bit flipped in the session id', frames: (x) => [flip(x.last, 2 * 8)], codes: ['BRIDGE_CLOSED'], hint: { to: (x) => x.pi, code: 'BRIDGE_CLOSED' } },
  // 'p' becomes 'q': a valid device id, not paired.
  { name: 'one bit flipped in the from id', frames: (x) => [flip(x.last, 11 * 8)], codes: ['BRIDGE_NOT_PAIRED'], hint: { to: (x) => `q${x.pi.slice(1)}`, code: 'BRIDGE_NOT_PAIRED' } },
  { name: 'random ciphertext under a valid header at the next counter', frames: (x) => [Buffer.concat([withCounter(x.last, x, x.next).subarray(0, COUNTER(x) + 8), randomBytes(x.last.length - COUNTER(x) - 8)])], codes: ['BRIDGE_RECORD_REFUSED'] },
  { name: 'truncated inside the header', frames: (x) => [x.last.subarray(0, 10), x.last.subarray(0, HEADER(x) - 1)], codes: ['BRIDGE_FRAME_MALFORMED', 'BRIDGE_FRAME_MALFORMED'] },
  { name: 'truncated shorter than a counter and a tag', frames: (x) => [x.last.subarray(0, HEADER(x) + 8 + 15)], codes: ['BRIDGE_FRAME_MALFORMED'] },
  { name: 'truncated by one byte', frames: (x) => [x.last.subarray(0, -1)], codes: ['BRIDGE_REPLAY'] },
  { name: 'truncated by one byte, at the next counter', frames: (x) => [withCounter(x.last, x, x.next).subarray(0, -1)], codes: ['BRIDGE_RECORD_REFUSED'] },
  { name: 'two records reordered (the second first)', frames: (x) => [x.last, x.prev], codes: ['BRIDGE_REPLAY', 'BRIDGE_REPLAY'] },
  { name: 'a handshake from an unpaired device (a fresh Noise KK initiator)', frames: (x) => [hs1('mallory', x)], codes: ['BRIDGE_NOT_PAIRED'], hint: { to: () => 'mallory', code: 'BRIDGE_NOT_PAIRED' } },
  { name: 'a record claiming an unpaired sender', frames: (x) => [withFrom(x.last, x, 'mallory')], codes: ['BRIDGE_NOT_PAIRED'], hint: { to: () => 'mallory', code: 'BRIDGE_NOT_PAIRED' } },
  { name: "a handshake under the paired device's id with the attacker's static key", frames: (x) => [hs1(x.pi, x)], codes: ['BRIDGE_HANDSHAKE_FAILED'], hint: { to: (x) => x.pi, code: 'BRIDGE_HANDSHAKE_FAILED' } },
  { name: 'random bytes', frames: () => [Buffer.concat([Buffer.of(0x80 | randomBytes(1)[0]!), randomBytes(299)])], codes: ['BRIDGE_FRAME_MALFORMED'] },
  { name: 'an empty payload', frames: () => [Buffer.alloc(0)], codes: ['BRIDGE_FRAME_MALFORMED'] },
  { name: 'a wrong version byte', frames: (x) => [Buffer.concat([Buffer.of(2), x.last.subarray(1)])], codes: ['BRIDGE_FRAME_MALFORMED'] },
  // Over the bus's 262,144-byte limit the agent's connection drops it before the bridge sees it.
  { name: 'an oversized frame (262,145 bytes)', frames: (x) => [Buffer.concat([x.last, Buffer.alloc(262_145 - x.last.length)])], codes: ['MESSAGE_TOO_LARGE'], event: 'services.invalid' },
];

interface Seen {
  topic: string;
  frame: Buffer;
  f?: DecodedFrame;
}

describe.each(BROKERS)('the sealed channel under attack, real agents on %s', (name, start) => {
  const dirs = new Dirs();
  let broker: TestBroker;
  let pi: Device;
  let phone: Device;
  let spy: MqttClient;
  let phoneStatic: Buffer;
  const seen: Seen[] = [];
  /** Digests of what the attacker published (its own messages come back to it). */
  const mine = new Set<string>();
  const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const FLUSH = `ferry/v1/bridge/spy-${process.pid}/flush`;

  const frames = (topicOf: string, from: string, kind: number) => seen.filter((s) => s.topic === channelTopic(topicOf) && s.f?.from === from && s.f.kind === kind);
  /** Ping answers the phone sent. */
  const answers = () => frames(pi.id, phone.id, FrameKind.Record).length;

  async function inject(frame: Buffer, topic = channelTopic(phone.id)): Promise<void> {
    mine.add(digest(frame));
    await spy.publishAsync(topic, frame, { qos: 1 });
  }

  /** Waits until the spy has everything the broker took before now (a marker of its own comes back). */
  async function flush(): Promise<void> {
    const marker = randomBytes(16).toString('hex');
    const got = new Promise<void>((resolve) => {
      const on = (topic: string, payload: Buffer) => {
        if (topic === FLUSH && payload.toString() === marker) {
          spy.off('message', on);
          resolve();
        }
      };
      spy.on('message', on);
    });
    await spy.publishAsync(FLUSH, marker, { qos: 1 });
    await got;
  }

  async function ping(): Promise<void> {
    await pi.control('peer-ping', { peer: phone.id });
    await flush();
  }

  /** Pings until the latest two requests are consecutive in one session and the latest counter is even. */
  async function context(): Promise<Ctx> {
    for (let i = 0; i < 8; i++) {
      await ping();
      const recs = frames(phone.id, pi.id, FrameKind.Record);
      const [prev, last] = recs.slice(-2);
      if (!prev || !last || !prev.f!.session.equals(last.f!.session)) continue;
      const c = last.f!.body.readBigUInt64BE(0);
      if (prev.f!.body.readBigUInt64BE(0) !== c - 1n || c % 2n !== 0n) continue;
      const hello = frames(phone.id, pi.id, FrameKind.Hs1).filter((s) => s.f!.session.equals(last.f!.session)).at(-1);
      if (!hello) throw new Error('the live session was not made by the pi');
      return { pi: pi.id, phone: phone.id, phoneStatic, last: last.frame, prev: prev.frame, hs1: hello.frame, session: last.f!.session, next: c + 1n };
    }
    throw new Error('no two consecutive ping requests in one session');
  }

  beforeAll(async () => {
    broker = await start();
    const args = ['--broker', broker.url, '--log-level', 'debug'];
    pi = new Device(`pi-${process.pid}-${name}`, 'rpi-4b', dirs.make('pi'), args);
    phone = new Device(`phone-${process.pid}-${name}`, 'android-phone', dirs.make('phone'), args);
    await Promise.all([pi.start(), phone.start()]);
    await pairViaCli(pi, phone);
    phoneStatic = Buffer.from(((await phone.control('identity')) as { staticKey: string }).staticKey, 'base64url');
    spy = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: `spy-${process.pid}` });
    spy.on('message', (topic, payload) => {
      if (topic === FLUSH || mine.has(digest(payload))) return;
      let f: DecodedFrame | undefined;
      try {
        f = decodeFrame(payload, 1 << 20);
      } catch {
        f = undefined;
      }
      seen.push({ topic, frame: Buffer.from(payload), ...(f ? { f } : {}) });
    });
    await spy.subscribeAsync('ferry/v1/bridge/#', { qos: 1 });
  });
  afterAll(async () => {
    await spy?.endAsync();
    await Promise.all([pi?.stop(), phone?.stop()]);
    await broker?.stop();
    dirs.cleanup();
  });

  it.each(CASES)('$name: refused, nothing acted on, and the channel still works', async (c) => {
    const x = await context();
    const [answered, logged, hints] = [answers(), phone.logs.length, seen.length];
    for (const f of c.frames(x)) await inject(f);
    const event = c.event ?? 'bridge.refused';
    const lines = await until(`${c.codes.length} ${event} line(s) on the phone`, () => {
      const l = phone.logs.slice(logged).filter((e) => e.event === event);
      return l.length >= c.codes.length && l;
    });
    expect(lines.map((l) => l.code)).toEqual(c.codes);
    if (c.hint) {
      const hint = c.hint;
      const refusal = await until('the refusal frame', () => seen.slice(hints).find((s) => s.topic === channelTopic(hint.to(x)) && s.f?.kind === FrameKind.Refusal && s.f.from === phone.id));
      expect(decodeRefusal(refusal.f!.body).code).toBe(hint.code);
    }
    // It keeps serving, and acted on nothing: no ping answer went out.
    const status = await phone.json<{ deviceId: string }>(['status']);
    expect(status.code, status.stdout + status.stderr).toBe(0);
    expect(status.value.deviceId).toBe(phone.id);
    await flush();
    expect(answers()).toBe(answered);
    expect(phone.logs.slice(logged).filter((l) => l.event === 'bridge.refused' || l.event === 'services.invalid')).toHaveLength(c.codes.length);
    // The genuine channel still works: one ping, one answer.
    await ping();
    expect(answers()).toBe(answered + 1);
  });

  it('both devices still reach each other both ways after all of it', async () => {
    await expect(pi.control('peer-ping', { peer: phone.id })).resolves.toMatchObject({ peer: phone.id });
    await expect(phone.control('peer-ping', { peer: pi.id })).resolves.toMatchObject({ peer: pi.id });
    expect((await pi.peers()).paired).toEqual([expect.objectContaining({ deviceId: phone.id, reachable: true })]);
    expect((await phone.peers()).paired).toEqual([expect.objectContaining({ deviceId: pi.id, reachable: true })]);
  });
});
