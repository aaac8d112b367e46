/**
 * The sealed channel under attack, in process: two real `Channels` on a wire the attacker owns,
 * where it can also hold a record back before the victim has seen it. (A broker does not let a
 * test do that to real agents: there every captured record has already been opened, see
 * attacks.test.ts.) test/bridge/records.test.ts proves bit flips are refused by RecordOpener;
 * here the property runs through the channel's whole receive path: frame parsing, session lookup,
 * sender checks, handshakes, dispatch.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Channels, channelTopic } from '../../agent/bridge/channel.js';
import { generateX25519 } from '../../agent/bridge/keys.js';
import { decodeFrame, FrameKind } from '../../agent/bridge/records.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';

const A = 'pi-a';
const B = 'pi-b';
const MAX_FRAME = 262_144;

type Line = Record<string, unknown> & { event: string };

/**
 * The parts of the bus a channel uses, in memory. Frames are delivered on the next microtask,
 * unless the attacker holds the next one to a topic back; `inject` delivers at once, so the
 * receiver has acted (or refused) when it returns.
 */
class Wire {
  private readonly subs = new Map<string, (topic: string, payload: Buffer) => void>();
  /** Every frame sent, in order. */
  readonly sent: Array<{ topic: string; frame: Buffer }> = [];
  private holding: string | undefined;
  held: Buffer | undefined;

  bus(): MqttBus {
    const fake = {
      subscribeRaw: async (filter: string, h: (topic: string, payload: Buffer) => void) => {
        this.subs.set(filter, h);
        return async () => void this.subs.delete(filter);
      },
      publishRaw: async (topic: string, payload: Uint8Array) => {
        const frame = Buffer.from(payload);
        this.sent.push({ topic, frame });
        if (this.holding === topic) {
          this.holding = undefined;
          this.held = frame;
          return;
        }
        queueMicrotask(() => this.subs.get(topic)?.(topic, frame));
      },
    };
    return fake as unknown as MqttBus;
  }

  /** Keeps the next frame to `topic` from its receiver (in `held`). */
  holdNext(topic: string): void {
    this.holding = topic;
    this.held = undefined;
  }

  inject(topic: string, frame: Buffer): void {
    this.subs.get(topic)?.(topic, frame);
  }
}

interface Pair {
  wire: Wire;
  a: Channels;
  b: Channels;
  /** B's log lines. */
  lines: Line[];
  /** The one-way `note` messages B acted on, in order. */
  notes: unknown[];
}

const open: Channels[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
});

/** A and B paired (each knows the other's static key), with a session made by one echo. */
async function pair(): Promise<Pair> {
  const wire = new Wire();
  const [ka, kb] = [generateX25519(), generateX25519()];
  const lines: Line[] = [];
  const options = (deviceId: string, key: typeof ka, peer: string, peerKey: Buffer, log: (l: Line) => void) => ({
    bus: wire.bus(),
    deviceId,
    staticKey: key,
    peerStaticKey: (p: string) => (p === peer ? peerKey : undefined),
    handshakeTimeoutMs: 5_000,
    requestTimeoutMs: 5_000,
    maxFrameBytes: MAX_FRAME,
    seen: () => undefined,
    log: (_level: string, event: string, fields: Record<string, unknown>) => log({ event, ...fields }),
  });
  const a = await Channels.start(options(A, ka, B, kb.publicKey, () => undefined));
  const b = await Channels.start(options(B, kb, A, ka.publicKey, (l) => lines.push(l)));
  open.push(a, b);
  const notes: unknown[] = [];
  b.handle('note', (_peer, body) => void notes.push(body));
  b.handle('echo', (_peer, body) => body);
  expect(await a.request(B, 'echo', 'up')).toBe('up');
  return { wire, a, b, lines, notes };
}

/** Sends a note from A and returns its record, held back from B. */
async function heldNote(p: Pair, body: unknown): Promise<Buffer> {
  p.wire.holdNext(channelTopic(B));
  await p.a.send(B, 'note', body);
  expect(p.wire.held).toBeDefined();
  return p.wire.held!;
}

function flip(buf: Buffer, bit: number): Buffer {
  const out = Buffer.from(buf);
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

describe('the channel in process, records held back by the attacker', () => {
  it('any bit flip of a record the victim has not seen yet is refused and not acted on, and the genuine record then opens once (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 48 }), fc.integer({ min: 0, max: 3 }), fc.nat(), async (body, before, bitSeed) => {
        const p = await pair();
        for (let i = 0; i < before; i++) await p.a.send(B, 'note', `before ${i}`);
        await new Promise((r) => setImmediate(r));
        const note = Buffer.from(body).toString('hex');
        const frame = await heldNote(p, note);
        const [notes, opened, lines] = [p.notes.length, p.b.stats.opened, p.lines.length];
        p.wire.inject(channelTopic(B), flip(frame, bitSeed % (frame.length * 8)));
        expect(p.notes.length).toBe(notes);
        expect(p.b.stats.opened).toBe(opened);
        // One line says what became of it: refused with a code, or (a record turned hs2) a stray answer to no handshake.
        const said = p.lines.slice(lines);
        expect(said).toHaveLength(1);
        expect(said[0]!.event === 'bridge.stray' || (said[0]!.event === 'bridge.refused' && typeof said[0]!.code === 'string')).toBe(true);
        p.wire.inject(channelTopic(B), frame);
        expect(p.notes.slice(notes)).toEqual([note]);
        for (const c of open.splice(0)) await c.close();
      }),
      { numRuns: 200 },
    );
  });

  it('a record past a lost one ends the session at both ends, and the next message makes a new one', async () => {
    const p = await pair();
    const first = await heldNote(p, 1); // held back: lost to B
    expect(first).toBeDefined();
    const second = await heldNote(p, 2);
    const handshakes = p.a.stats.handshakes;
    p.wire.inject(channelTopic(B), second);
    expect(p.lines.at(-1)).toMatchObject({ event: 'bridge.refused', code: 'BRIDGE_RECORD_LOST', field: 'record.counter' });
    expect(p.notes).toEqual([]);
    // The lost record arriving late opens nothing either: the session is gone here.
    p.wire.inject(channelTopic(B), first);
    expect(p.lines.at(-1)).toMatchObject({ event: 'bridge.refused', code: 'BRIDGE_CLOSED', field: 'frame.session' });
    expect(p.notes).toEqual([]);
    // A was told (the refusal frame): its next message goes on a new session and is acted on.
    await new Promise((r) => setTimeout(r, 10));
    await p.a.send(B, 'note', 3);
    await new Promise((r) => setTimeout(r, 10));
    expect(p.notes).toEqual([3]);
    expect(p.a.stats.handshakes).toBe(handshakes + 1);
  });

  it('a forged record past the next counter is refused and changes nothing', async () => {
    const p = await pair();
    const genuine = await heldNote(p, 1);
    const forged = Buffer.from(genuine!);
    const counterAt = decodeFrame(forged).headerBytes + 7; // lowest byte of the counter: one ahead
    forged[counterAt] = forged[counterAt]! + 1;
    p.wire.inject(channelTopic(B), forged);
    expect(p.lines.at(-1)).toMatchObject({ event: 'bridge.refused', code: 'BRIDGE_REPLAY' });
    p.wire.inject(channelTopic(B), genuine!);
    expect(p.notes).toEqual([1]);
  });

  it('a replayed handshake is refused and the live session keeps working', async () => {
    const p = await pair();
    const hs1 = p.wire.sent.find((s) => s.topic === channelTopic(B) && decodeFrame(s.frame).kind === FrameKind.Hs1)!.frame;
    const handshakes = p.b.stats.handshakes;
    p.wire.inject(channelTopic(B), hs1);
    expect(p.lines.at(-1)).toMatchObject({ event: 'bridge.refused', code: 'BRIDGE_REPLAY' });
    expect(p.b.stats.handshakes).toBe(handshakes);
    expect(await p.a.request(B, 'echo', 'still')).toBe('still');
  });

  it('a frame over maxFrameBytes is refused as malformed before anything in it is read', async () => {
    const p = await pair();
    const frame = await heldNote(p, 'x');
    const big = Buffer.concat([frame, Buffer.alloc(MAX_FRAME + 1 - frame.length)]);
    p.wire.inject(channelTopic(B), big);
    expect(p.lines.at(-1)).toMatchObject({ event: 'bridge.refused', code: 'BRIDGE_FRAME_MALFORMED', field: 'frame.length' });
    p.wire.inject(channelTopic(B), frame);
    expect(p.notes).toEqual(['x']);
  });
});

describe('a flood of forged frames', () => {
  it('is refused in full but logged and answered at a bounded rate (60 per sender per minute), and the channel serves on', async () => {
    const p = await pair();
    const before = p.wire.sent.length;
    const forged = (i: number) => {
      // A first handshake message from an unpaired device: the kind that earns a refusal frame.
      const session = Buffer.alloc(8);
      session.writeUInt32BE(i);
      const id = Buffer.from('flooder');
      return Buffer.concat([Buffer.of(1, FrameKind.Hs1), session, Buffer.of(id.length), id, Buffer.alloc(48, 7)]);
    };
    for (let i = 0; i < 500; i++) p.wire.inject(channelTopic(B), forged(i));
    await new Promise((r) => setImmediate(r));
    expect(p.b.stats.refused.BRIDGE_NOT_PAIRED).toBe(500);
    const refusals = p.wire.sent.slice(before).filter((s) => s.topic === channelTopic('flooder'));
    expect(refusals).toHaveLength(60);
    expect(p.lines.filter((l) => l.event === 'bridge.refused')).toHaveLength(60);
    expect(await p.a.request(B, 'echo', 'still here')).toBe('still here');
    await p.b.close();
    // The count of what was held back is reported when the interval ends (here: at close).
    expect(p.lines.find((l) => l.event === 'bridge.log-suppressed')).toMatchObject({ suppressed: 440 });
  });
});
