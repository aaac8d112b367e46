/**
 * The pairing state machine in process, on a real (embedded aedes) broker: the paths the
 * end-to-end tests cannot reach with the `ferry` command — out-of-turn and malformed messages,
 * a reveal that does not open the commitment, a forged confirmation, a flood of requests,
 * both owners asking at once.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEd25519, generateX25519 } from '../../agent/bridge/keys.js';
import { commitment } from '../../agent/bridge/pairing-crypto.js';
import { pairTopic } from '../../agent/bridge/pairing-messages.js';
import { MAX_INCOMING, Pairing } from '../../agent/bridge/pairing.js';
import type { PeerRecord } from '../../agent/bridge/peer-registry.js';
import { connectBus, startEmbeddedBroker, type EmbeddedBroker } from '../../transports/index.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { caughtAsync } from '../helpers/ferry-error.js';

async function expectFerryError(p: Promise<unknown>, code: string, field: string): Promise<void> {
  const e = await caughtAsync(() => p);
  expect({ code: e.code, field: e.details.field }).toEqual({ code, field });
}

interface Device {
  id: string;
  bus: MqttBus;
  pairing: Pairing;
  stored: PeerRecord[];
  lines: Array<{ event: string; fields: Record<string, unknown> }>;
}

let broker: EmbeddedBroker;
const open: Device[] = [];

beforeAll(async () => {
  broker = await startEmbeddedBroker({ port: 0 });
});

afterAll(async () => {
  for (const d of open) {
    await d.pairing.close();
    await d.bus.close();
  }
  await broker.close();
});

let seq = 0;
async function device(name: string, timeoutMs = 20_000): Promise<Device> {
  const id = `${name}-${++seq}`;
  const bus = (await connectBus({ url: broker.url, deviceId: id })) as MqttBus;
  const stored: PeerRecord[] = [];
  const lines: Device['lines'] = [];
  const pairing = await Pairing.start({
    bus,
    self: { deviceId: id, deviceKey: generateEd25519().publicKey, staticKey: generateX25519().publicKey, profile: 'rpi-4b', label: name },
    timeoutMs,
    store: (r) => void stored.push(r),
    isPaired: (p) => stored.some((r) => r.deviceId === p),
    log: (_l, event, fields) => void lines.push({ event, fields }),
  });
  const d = { id, bus, pairing, stored, lines };
  open.push(d);
  return d;
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A hand-driven initiator: sends what the test says, reads what comes back. */
async function rogue(name: string) {
  const id = `${name}-${++seq}`;
  const bus = (await connectBus({ url: broker.url, deviceId: id })) as MqttBus;
  const got: Array<{ type: string; body: Record<string, unknown> }> = [];
  await bus.subscribe(pairTopic(id), (env) => void got.push({ type: env.type, body: env.body as Record<string, unknown> }));
  const keys = { deviceKey: generateEd25519().publicKey, staticKey: generateX25519().publicKey, ephemeral: generateX25519().publicKey };
  open.push({ id, bus, pairing: { close: async () => undefined } as unknown as Pairing, stored: [], lines: [] });
  return { id, bus, got, keys, send: (to: string, type: string, body: Record<string, unknown>) => bus.publish(pairTopic(to), type, body) };
}

describe('pairing (in process, aedes)', () => {
  it('pairs two devices: the same code on both, each stores the other after both confirmations', async () => {
    const a = await device('pi');
    const b = await device('phone');
    const codeA = a.pairing.initiate(b.id);
    await until(() => b.pairing.attemptsView().some((x) => x.peer === a.id && x.step === 'incoming'), 'the incoming request');
    const [va, vb] = await Promise.all([codeA, b.pairing.accept(a.id)]);
    expect(va.code).toMatch(/^\d{6}$/);
    expect(vb.code).toBe(va.code);
    const doneA = a.pairing.confirm(b.id, true, va.code);
    expect(a.stored).toEqual([]); // not before the peer's confirmation
    const [ra, rb] = await Promise.all([doneA, b.pairing.confirm(a.id, true)]);
    expect(ra.deviceId).toBe(b.id);
    expect(rb.deviceId).toBe(a.id);
    expect(a.stored.map((r) => r.deviceId)).toEqual([b.id]);
    expect(b.stored.map((r) => r.deviceId)).toEqual([a.id]);
    expect(a.pairing.attemptsView()).toEqual([]);
  });

  it('both owners asking at once end in one attempt with one code', async () => {
    const a = await device('x');
    const b = await device('y');
    const [va, vb] = await Promise.all([a.pairing.initiate(b.id), b.pairing.initiate(a.id)]);
    expect(va.code).toBe(vb.code);
    expect(new Set([va.role, vb.role])).toEqual(new Set(['initiator', 'responder']));
    await Promise.all([a.pairing.confirm(b.id, true), b.pairing.confirm(a.id, true)]);
    expect(a.stored).toHaveLength(1);
    expect(b.stored).toHaveLength(1);
  });

  it('a reveal that does not open the commitment ends the attempt with PAIR_PROTOCOL and stores nothing', async () => {
    const r = await device('victim');
    const m = await rogue('liar');
    const pairing = randomBytes(16).toString('base64url');
    const nonce = randomBytes(16);
    const side = { deviceId: m.id, ...m.keys };
    await m.send(r.id, 'pair.request', { pairing, ...m.keys, commit: commitment(side, pairing, nonce), profile: 'rpi-4b', label: 'liar' });
    await until(() => r.pairing.attemptsView().length === 1, 'the request');
    const accepted = r.pairing.accept(m.id);
    await until(() => m.got.some((g) => g.type === 'pair.response'), 'the response');
    await m.send(r.id, 'pair.reveal', { pairing, nonce: randomBytes(16) });
    await expectFerryError(accepted, 'PAIR_PROTOCOL', 'body.nonce');
    await until(() => m.got.some((g) => g.type === 'pair.cancel'), 'the cancel');
    expect(m.got.find((g) => g.type === 'pair.cancel')!.body.code).toBe('PAIR_PROTOCOL');
    expect(r.stored).toEqual([]);
    expect(r.pairing.attemptsView()).toEqual([]);
  });

  it('a confirmation whose MAC is not from the device that computed the code is refused', async () => {
    const r = await device('victim');
    const m = await rogue('forger');
    const pairing = randomBytes(16).toString('base64url');
    const nonce = randomBytes(16);
    await m.send(r.id, 'pair.request', { pairing, ...m.keys, commit: commitment({ deviceId: m.id, ...m.keys }, pairing, nonce), profile: 'rpi-4b', label: 'forger' });
    await until(() => r.pairing.attemptsView().length === 1, 'the request');
    const code = r.pairing.accept(m.id);
    await until(() => m.got.some((g) => g.type === 'pair.response'), 'the response');
    await m.send(r.id, 'pair.reveal', { pairing, nonce });
    await code;
    await m.send(r.id, 'pair.confirm', { pairing, mac: randomBytes(32) });
    await expectFerryError(r.pairing.confirm(m.id, true), 'PAIR_PROTOCOL', 'body.mac');
    expect(r.stored).toEqual([]);
  });

  const malformed: Array<[string, (k: Record<string, Buffer>) => Record<string, unknown>, string]> = [
    ['a 31-byte device key', (k) => ({ ...k, deviceKey: k.deviceKey!.subarray(1) }), 'body.deviceKey'],
    ['a text static key', (k) => ({ ...k, staticKey: 'abc' }), 'body.staticKey'],
    ['no commitment', (k) => ({ ...k, commit: undefined }), 'body.commit'],
    ['a control character in the label', (k) => ({ ...k, label: 'evil\u001b[2J' }), 'body.label'],
    ['a profile with a slash', (k) => ({ ...k, profile: 'a/b' }), 'body.profile'],
    ['a short pairing id', (k) => ({ ...k, pairing: 'abc' }), 'body.pairing'],
  ];
  it.each(malformed)('a request with %s is logged and creates no attempt', async (_name, make, field) => {
    const r = await device('victim');
    const m = await rogue('sloppy');
    const base = { pairing: randomBytes(16).toString('base64url'), ...m.keys, commit: randomBytes(32), profile: 'rpi-4b', label: 'ok' };
    await m.send(r.id, 'pair.request', make(base as unknown as Record<string, Buffer>));
    await until(() => r.lines.some((l) => l.event === 'pair.bad-message'), 'the log line');
    expect(r.lines.find((l) => l.event === 'pair.bad-message')!.fields).toMatchObject({ code: 'PAIR_PROTOCOL', field });
    expect(r.pairing.attemptsView()).toEqual([]);
  });

  it('a message out of turn ends the attempt on both sides with PAIR_PROTOCOL', async () => {
    const r = await device('victim');
    const m = await rogue('hasty');
    const pairing = randomBytes(16).toString('base64url');
    await m.send(r.id, 'pair.request', { pairing, ...m.keys, commit: randomBytes(32), profile: 'rpi-4b', label: 'hasty' });
    await until(() => r.pairing.attemptsView().length === 1, 'the request');
    await m.send(r.id, 'pair.reveal', { pairing, nonce: randomBytes(16) }); // before the owner accepted
    await until(() => m.got.some((g) => g.type === 'pair.cancel'), 'the cancel');
    expect(m.got.find((g) => g.type === 'pair.cancel')!.body.code).toBe('PAIR_PROTOCOL');
    expect(r.pairing.attemptsView()).toEqual([]);
  });

  it('a message for an attempt that is not in progress is ignored', async () => {
    const r = await device('victim');
    const m = await rogue('stray');
    await m.send(r.id, 'pair.confirm', { pairing: randomBytes(16).toString('base64url'), mac: randomBytes(32) });
    await until(() => r.lines.some((l) => l.event === 'pair.stray'), 'the stray line');
    expect(m.got).toEqual([]);
    expect(r.pairing.attemptsView()).toEqual([]);
  });

  it(`holds at most ${MAX_INCOMING} incoming requests; a flood evicts the oldest (told PAIR_CANCELLED)`, async () => {
    const r = await device('popular');
    const senders: Array<Awaited<ReturnType<typeof rogue>>> = [];
    for (let i = 0; i < MAX_INCOMING + 3; i++) senders.push(await rogue(`fan${i}`));
    for (const s of senders) {
      await s.send(r.id, 'pair.request', { pairing: randomBytes(16).toString('base64url'), ...s.keys, commit: randomBytes(32), profile: 'rpi-4b', label: 'fan' });
      await until(() => r.pairing.attemptsView().some((a) => a.peer === s.id) || r.lines.some((l) => l.event === 'pair.incoming' && l.fields.peer === s.id), 'each request');
    }
    expect(r.pairing.attemptsView()).toHaveLength(MAX_INCOMING);
    await until(() => senders.slice(0, 3).every((s) => s.got.some((g) => g.type === 'pair.cancel' && g.body.code === 'PAIR_CANCELLED')), 'the evictions');
    expect(r.pairing.attemptsView().map((a) => a.peer)).not.toContain(senders[0]!.id);
  });

  it('a timeout ends the attempt on both sides with PAIR_TIMEOUT', async () => {
    const a = await device('slow', 1000);
    const b = await device('away');
    const code = a.pairing.initiate(b.id);
    await expectFerryError(code, 'PAIR_TIMEOUT', 'peer');
    await until(() => b.pairing.attemptsView().length === 0, 'the responder to drop its pending request');
    expect(b.lines.some((l) => l.event === 'pair.ended' && l.fields.code === 'PAIR_TIMEOUT')).toBe(true);
  });

  it('bad arguments from the owner: own id, a malformed id, confirm/cancel of nothing, a code that is not 6 digits', async () => {
    const a = await device('me');
    expect(() => a.pairing.initiate(a.id)).toThrow(/cannot pair with itself/);
    expect(() => a.pairing.initiate('bad id!')).toThrow(/device id/);
    expect(() => a.pairing.accept('nobody')).toThrow(expect.objectContaining({ code: 'PAIR_UNKNOWN' }));
    await expectFerryError(a.pairing.confirm('nobody', true), 'PAIR_UNKNOWN', 'peer');
    expect(() => a.pairing.cancel('nobody')).toThrow(expect.objectContaining({ code: 'PAIR_UNKNOWN' }));
    const b = await device('other');
    void a.pairing.initiate(b.id).catch(() => undefined);
    await expectFerryError(a.pairing.confirm(b.id, true, '12ab56'), 'BAD_OPTION', 'code');
    a.pairing.cancel(b.id);
  });
});
