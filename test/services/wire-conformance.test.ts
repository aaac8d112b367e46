/**
 * "Wire conformance: PROTOCOL.md and the agent agree", the services side. Each case is
 * something a client written from transports/PROTOCOL.md alone found to differ between the
 * document and the wire; the broker cases run against aedes and Mosquitto alike.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, FerryError, WIRE_DETAILS, type ErrorCode } from '../../core/errors.js';
import {
  callService,
  FenceGate,
  LeaseGrantor,
  ManualClock,
  ServicesLog,
  SpaceClient,
  SpaceHost,
  startServices,
  type HeldLease,
  type ServicesLogLevel,
} from '../../agent/services/index.js';
import type { Envelope } from '../../transports/contract.js';
import { decodeEnvelope, encodeEnvelope } from '../../transports/envelope.js';
import { errorAnswerBody, errorFromAnswer } from '../../transports/pending-requests.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';
import { codeOf, Devices, until } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const PROTOCOL = readFileSync(join(here, '../../transports/PROTOCOL.md'), 'utf8');

/** The text of one `### ` section of PROTOCOL.md. */
function section(title: string): string {
  const start = PROTOCOL.indexOf(`### ${title}`);
  expect(start, title).toBeGreaterThanOrEqual(0);
  const end = PROTOCOL.indexOf('\n## ', start + 4);
  const next = PROTOCOL.indexOf('\n### ', start + 4);
  return PROTOCOL.slice(start, Math.min(end < 0 ? Infinity : end, next < 0 ? Infinity : next));
}

/** The §4.1 example: its bytes ("In one piece") and its JSON ("i.e."). */
function example41(): { hex: string; json: Envelope } {
  const s = section('4.1 Error answers');
  const hex = /In one piece:\s*```\s*([0-9a-f]+)\s*```/.exec(s)?.[1];
  const json = /i\.e\.\s*```json\s*(\{.*\})\s*```/s.exec(s)?.[1];
  expect(hex, 'hex of §4.1').toBeDefined();
  expect(json, 'JSON of §4.1').toBeDefined();
  return { hex: hex!, json: JSON.parse(json!) as Envelope };
}

/** The error a promise rejects with. */
async function errorOf(p: Promise<unknown>): Promise<FerryError> {
  try {
    await p;
  } catch (e) {
    return e as FerryError;
  }
  throw new Error('expected a rejection');
}

describe('PROTOCOL §4.1 and the error table', () => {
  it('the example bytes decode to the JSON shown, and the JSON encodes to exactly those bytes', () => {
    const { hex, json } = example41();
    expect(decodeEnvelope(Buffer.from(hex, 'hex'))).toEqual(json);
    expect(encodeEnvelope(json).toString('hex')).toBe(hex);
    const body = json.body as { field: string; details: Record<string, unknown> };
    expect(body.field).toBe('body.service');
    expect(body.details).toEqual({ retryAfterMs: 3100 });
  });

  it('the details table of §4.1 is WIRE_DETAILS, and every code in it is a stable code', () => {
    const s = section('4.1 Error answers');
    const rows = [...s.matchAll(/^\| `([A-Z_]+)` \| `([A-Za-z]+)` \|/gm)].map((m) => `${m[1]}.${m[2]}`);
    const table = Object.entries(WIRE_DETAILS).flatMap(([code, keys]) => keys!.map((k) => `${code}.${k}`));
    expect(rows.sort()).toEqual(table.sort());
    for (const code of Object.keys(WIRE_DETAILS)) expect(Object.keys(ERROR_CODES)).toContain(code);
  });

  it('an error answer carries only the details its code defines, plain values only; a requester surfaces them', () => {
    const e = new FerryError('LEASE_DENIED', 'held', { field: 'body.service', retryAfterMs: 250, topic: 'ferry/v1/lease/x', secret: 's3cr3t', minDurationMs: { no: 1 } });
    const body = errorAnswerBody(e);
    expect(body).toEqual({ code: 'LEASE_DENIED', message: 'held', field: 'body.service', details: { retryAfterMs: 250 } });
    // A code without details keys sends none, whatever the local error holds.
    expect(errorAnswerBody(new FerryError('LEASE_EXPIRED', 'x', { field: 'body.leaseId', expiredAt: 5 }))).toEqual({ code: 'LEASE_EXPIRED', message: 'x', field: 'body.leaseId' });
    const env = { v: 1, type: 'error', id: 'i', from: 'g1', corr: 'c', ts: 1, body: { ...body, details: { retryAfterMs: 250, later: 'kept', nested: { dropped: true }, from: 'forged' } } };
    const back = errorFromAnswer(env);
    expect(back.code).toBe('LEASE_DENIED');
    expect(back.details).toEqual({ retryAfterMs: 250, later: 'kept', from: 'g1', field: 'body.service' });
  });
});

describe('the services log: rate-limited, never a payload byte', () => {
  it('allows linesPerSource lines per source and maxLines in all per interval, then counts the rest', () => {
    const clock = new ManualClock(0);
    const lines: [ServicesLogLevel, string, Record<string, unknown>][] = [];
    const log = new ServicesLog((l, e, f) => lines.push([l, e, f]), { linesPerSource: 2, intervalMs: 1000, maxLines: 3 }, clock);
    const env = (from: string): Envelope => ({ v: 1, type: 'lease.grant', id: 'x', from, ts: 0, body: { reqId: 'top-secret-value' } });
    const bad = new FerryError('SERVICE_BAD_REQUEST', 'body.reqId must be ..., got "top-secret-value"', { field: 'body.reqId' });
    for (let i = 0; i < 5; i++) log.badRequest(env('a1'), 'ferry/v1/lease/g', bad);
    log.badRequest(env('b1'), 'ferry/v1/lease/g', bad);
    log.badRequest(env('c1'), 'ferry/v1/lease/g', bad); // over maxLines
    expect(lines.map(([, , f]) => f.source)).toEqual(['a1', 'a1', 'b1']);
    expect(lines[0]).toEqual(['debug', 'services.bad-request', { code: 'SERVICE_BAD_REQUEST', field: 'body.reqId', topic: 'ferry/v1/lease/g', type: 'lease.grant', from: 'a1', source: 'a1' }]);
    clock.advance(1000);
    log.badRequest(env('a1'), 'ferry/v1/lease/g', bad);
    expect(lines[3]).toEqual(['warn', 'services.log-suppressed', { suppressed: 4, intervalMs: 1000, bySource: { a1: 3, c1: 1 } }]);
    expect(lines[4]![2].source).toBe('a1');
    expect(JSON.stringify(lines)).not.toContain('top-secret');
    // A forged sender is not trusted as a source: the topic is.
    log.badRequest(env('evil/+/#'), 'ferry/v1/lease/g', bad);
    expect(lines.at(-1)![2]).toMatchObject({ source: 'ferry/v1/lease/g' });
    expect(lines.at(-1)![2].from).toBeUndefined();
  });

  it('startServices validates log and logLimits, naming the field', async () => {
    const base = { deviceId: 'v1', url: 'mqtt://127.0.0.1:1' };
    await expect(startServices({ ...base, log: 'stdout' as never })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.log' } });
    await expect(startServices({ ...base, logLimits: { intervalMs: 1000 } })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.logLimits' } });
    await expect(startServices({ ...base, log: () => undefined, logLimits: { intervalMs: 5 } })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.logLimits.intervalMs' } });
    await expect(startServices({ ...base, log: () => undefined, logLimits: { linesPerSource: 0 } })).rejects.toMatchObject({ details: { field: 'options.logLimits.linesPerSource' } });
    await expect(startServices({ ...base, log: () => undefined, logLimits: { maxLines: 1.5 } })).rejects.toMatchObject({ details: { field: 'options.logLimits.maxLines' } });
    await expect(startServices({ ...base, log: () => undefined, logLimits: { lines: 3 } as never })).rejects.toMatchObject({ details: { field: 'options.logLimits.lines' } });
  });
});

describe('FenceGate: fencing at a resource outside the grantor', () => {
  it('admits tokens that do not go back, refuses an older one with LEASE_FENCED naming body.fence', () => {
    const g = new FenceGate();
    expect(g.admit('lock', 5)).toBe(5);
    expect(g.admit('lock', 5)).toBe(5);
    expect(g.admit('lock', 9)).toBe(9);
    expect(() => g.admit('lock', 5)).toThrow(expect.objectContaining({ code: 'LEASE_FENCED', details: { field: 'body.fence' } }));
    expect(g.admit('other', 1)).toBe(1); // tokens of different services are not compared
    expect(() => g.admit('lock', undefined)).toThrow(expect.objectContaining({ code: 'SERVICE_BAD_REQUEST', details: { field: 'body.fence' } }));
    expect(g.highest('lock')).toBe(9);
  });
});

/** A raw MQTT 3.1.1 client: sends hand-made envelopes (any `from`) and reads the answers. */
async function rawClient(url: string, id: string) {
  const inbox = `ferry/v1/inbox/${id}`;
  const client: MqttClient = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: `${id}-raw` });
  const answers = new Map<string, Envelope>();
  client.on('message', (_t, payload) => {
    const env = decodeEnvelope(payload);
    if (env.corr !== undefined) answers.set(env.corr, env);
  });
  await client.subscribeAsync(inbox, { qos: 1 });
  let n = 0;
  return {
    inbox,
    async ask(topic: string, type: string, body: unknown, from = id, msgId = `${id}-m${++n}-${Date.now()}`): Promise<Envelope> {
      await client.publishAsync(topic, encodeEnvelope({ v: 1, type, id: msgId, from, replyTo: inbox, ts: Date.now(), body }), { qos: 1 });
      await until(() => answers.has(msgId), 3000, `answer to ${type} on ${topic}`);
      return answers.get(msgId)!;
    },
    async send(topic: string, payload: Buffer): Promise<void> {
      await client.publishAsync(topic, payload, { qos: 1 });
    },
    close: () => client.endAsync(true),
  };
}
type Raw = Awaited<ReturnType<typeof rawClient>>;

describe.each(BROKERS)('services on the wire match PROTOCOL.md, over %s', (_name, start) => {
  let broker: TestBroker;
  let devs: Devices;
  const raws: Raw[] = [];
  const cleanup: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    broker = await start();
    devs = new Devices(() => broker.url);
  });
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    for (const r of raws.splice(0)) await r.close();
    await devs.closeAll();
  });
  afterAll(async () => {
    await broker.stop();
    devs.cleanup();
  });
  const raw = async (id: string) => {
    const r = await rawClient(broker.url, id);
    raws.push(r);
    return r;
  };

  it('1, 2: a real refusal is the §4.1 example, details and all; a Ferry requester surfaces details.retryAfterMs', async () => {
    const clock = new ManualClock(Date.now());
    const g = await devs.start('pda-2', { grantor: true, clock });
    await g.offer({ name: 'lamp', type: 'lamp', exclusive: true });
    const holder = await devs.start('holder41');
    await holder.client.grant({ leaseTopic: g.grantor!.topic, service: 'lamp' }, 4000);
    clock.advance(900);
    const r = await raw('foreign41');
    const answer = await r.ask(g.grantor!.topic, 'lease.grant', { service: 'lamp', durationMs: 1000, reqId: 'r41' }, 'foreign41', 'AAECAwQFBgcICQoLDA0ODw');
    const { json } = example41();
    expect(answer).toMatchObject({ type: 'error', from: 'pda-2', corr: 'AAECAwQFBgcICQoLDA0ODw' });
    expect(answer.body).toEqual(json.body);

    const other = await devs.start('other41');
    const e = await errorOf(other.client.grant({ leaseTopic: g.grantor!.topic, service: 'lamp' }, 1000));
    expect(e.code).toBe('LEASE_DENIED');
    expect(e.details).toMatchObject({ field: 'body.service', retryAfterMs: 3100, from: 'pda-2' });
    // Below the minimum: the minimum is in the details, not only in the message.
    const short = await errorOf(other.client.grant({ leaseTopic: g.grantor!.topic, service: 'lamp' }, 1));
    expect(short.details).toMatchObject({ field: 'body.durationMs', minDurationMs: 10 });
  });

  it('3: `service` is a name or <grantor>/<name>; an id of another device is SERVICE_NOT_FOUND', async () => {
    const g = await devs.start('g3', { grantor: true });
    await g.offer({ name: 'lamp', type: 'lamp3', exclusive: false });
    const d = await g.discovery.waitFor({ type: 'lamp3' });
    expect(d.id).toBe('g3/lamp');
    const r = await raw('c3');
    const byId = await r.ask(d.leaseTopic, 'lease.grant', { service: d.id, durationMs: 1000, reqId: 'a' });
    expect(byId.type).toBe('lease.grant.ok');
    expect((byId.body as { service: string }).service).toBe('lamp');
    const byName = await r.ask(d.leaseTopic, 'lease.grant', { service: d.name, durationMs: 1000, reqId: 'b' });
    expect(byName.type).toBe('lease.grant.ok');
    const elsewhere = await r.ask(d.leaseTopic, 'lease.grant', { service: 'g9/lamp', durationMs: 1000, reqId: 'c' });
    expect(elsewhere.body).toMatchObject({ code: 'SERVICE_NOT_FOUND', field: 'body.service' });
    for (const service of ['g3/lamp/x', 'g9/lamp/x', '/lamp', 'g3/', 'a+/lamp']) {
      const nested = await r.ask(d.leaseTopic, 'lease.grant', { service, durationMs: 1000, reqId: `d-${service}` });
      expect([service, nested.body]).toMatchObject([service, { code: 'SERVICE_BAD_REQUEST', field: 'body.service' }]);
    }
    const none = await r.ask(d.leaseTopic, 'lease.grant', { service: 'g3/nope', durationMs: 1000, reqId: 'e' });
    expect(none.body).toMatchObject({ code: 'SERVICE_NOT_FOUND', field: 'body.service' });
  });

  it('4: svc.call results as §S.5 gives them; argument errors name body.args.<name>', async () => {
    const pi = await devs.start('pi4', { grantor: true, system: { profile: 'rpi-4b' } });
    const app = await devs.start('app4');
    const find = (type: string) => app.discovery.waitFor({ type, attrs: { device: 'pi4' } });
    const disp = await find('display');
    const l = await app.client.grant(disp, 5000);
    const call = (lease: HeldLease, topic: string, op: string, args?: Record<string, unknown>) => callService(app.bus, lease, topic, op, args);
    expect(await call(l, disp.callTopic!, 'draw', { text: 'a' })).toEqual({ frame: 1 });
    expect(await call(l, disp.callTopic!, 'clear')).toEqual({ frame: 2 });
    expect(await call(l, disp.callTopic!, 'frames')).toEqual({ frames: [{ by: 'app4', text: 'a' }, { by: 'app4', text: '' }] });
    const noText = await errorOf(call(l, disp.callTopic!, 'draw', {}));
    expect([noText.code, noText.details.field]).toEqual(['SERVICE_BAD_REQUEST', 'body.args.text']);
    const badOp = await errorOf(call(l, disp.callTopic!, 'explode'));
    expect([badOp.code, badOp.details.field]).toEqual(['SERVICE_BAD_REQUEST', 'body.op']);
    const argsNotMap = await errorOf(app.bus.request(disp.callTopic!, 'svc.call', { reqId: 'q4', leaseId: l.leaseId, op: 'draw', args: [1] }));
    expect(argsNotMap.details.field).toBe('body.args');

    const gpio = await find('gpio');
    const lg = await app.client.grant(gpio, 5000);
    expect(await call(lg, gpio.callTopic!, 'write', { pin: 3, value: 1 })).toEqual({ ok: true });
    expect(await call(lg, gpio.callTopic!, 'read', { pin: 3 })).toEqual({ value: 1 });
    expect(await call(lg, gpio.callTopic!, 'read', { pin: 4 })).toEqual({ value: 0 });
    expect((await errorOf(call(lg, gpio.callTopic!, 'write', { pin: 64, value: 1 }))).details.field).toBe('body.args.pin');
    expect((await errorOf(call(lg, gpio.callTopic!, 'write', { pin: 1, value: 2 }))).details.field).toBe('body.args.value');

    const storage = await find('storage');
    const ls = await app.client.grant(storage, 5000);
    expect(await call(ls, storage.callTopic!, 'get', { key: 'k' })).toEqual({ value: null });
    expect(await call(ls, storage.callTopic!, 'put', { key: 'k', value: { x: [1] } })).toEqual({ ok: true });
    expect(await call(ls, storage.callTopic!, 'get', { key: 'k' })).toEqual({ value: { x: [1] } });
    expect((await errorOf(call(ls, storage.callTopic!, 'put', { value: 1 }))).details.field).toBe('body.args.key');

    const sensor = await find('sensor');
    const lsn = await app.client.grant(sensor, 5000);
    expect(Object.keys((await call(lsn, sensor.callTopic!, 'read')) as object).sort()).toEqual(['celsius', 'seq']);
    if (pi.system!.drivers.has('speaker')) {
      const sp = await find('speaker');
      const lsp = await app.client.grant(sp, 5000);
      expect(await call(lsp, sp.callTopic!, 'play', { code: 440 })).toEqual({ count: 1 });
      expect((await errorOf(call(lsp, sp.callTopic!, 'play', { code: -1 }))).details.field).toBe('body.args.code');
    }
    // A kind the device does not offer: refused naming the topic.
    const missing = await errorOf(app.bus.request('ferry/v1/svc-call/pi4/teleporter', 'svc.call', { reqId: 'm', leaseId: l.leaseId, op: 'x' }));
    expect([missing.code, missing.details.field]).toEqual(['SERVICE_NOT_FOUND', 'topic']);
  });

  it('5: an unknown message type is SERVICE_BAD_REQUEST naming envelope.type on every service topic', async () => {
    const pi = await devs.start('pi5', { grantor: true, system: { profile: 'rpi-4b' } });
    const space = await pi.hostSpace({ name: 'meet' });
    const app = await devs.start('app5');
    for (const topic of [pi.grantor!.topic, 'ferry/v1/svc-call/pi5/display', space.topic, 'ferry/v1/space/pi5/nowhere']) {
      const e = await errorOf(app.bus.request(topic, 'lease.steal', { reqId: 'q' }));
      expect([topic, e.code, e.details.field]).toEqual([topic, 'SERVICE_BAD_REQUEST', 'envelope.type']);
    }
    // A request of another topic is unknown here too (a lease request on a space topic).
    const e = await errorOf(app.bus.request(space.topic, 'lease.grant', { service: 'x', durationMs: 1000, reqId: 'q' }));
    expect(e.details.field).toBe('envelope.type');
  });

  it('6: one name per field (body.<path>); a bad batch entry is named and renews nothing', async () => {
    const clock = new ManualClock(Date.now());
    const g = await devs.start('g6', { grantor: true, clock, system: { profile: 'rpi-4b' } });
    const h = await devs.start('h6');
    for (let i = 0; i < 4; i++) await g.offer({ name: `s${i}`, type: 'six', attrs: { i }, exclusive: true });
    const leases: HeldLease[] = [];
    for (let i = 0; i < 4; i++) leases.push(await h.client.grant({ leaseTopic: g.grantor!.topic, service: `s${i}` }, 1000));
    const gone = { ...leases[0]!, leaseId: 'AAAAAAAAAAAAAAAAAAAAAA' };
    // The same field, the same name, whichever request: body.leaseId.
    const cancel = await errorOf(h.client.cancel(gone));
    expect([cancel.code, cancel.details.field]).toEqual(['LEASE_UNKNOWN', 'body.leaseId']);
    const handover = await errorOf(h.client.handover(gone, 'x6'));
    expect(handover.details.field).toBe('body.leaseId');
    const disp = await h.discovery.waitFor({ type: 'display', attrs: { device: 'g6' } });
    const call = await errorOf(callService(h.bus, { ...gone, service: 'display' }, disp.callTopic!, 'frames'));
    expect([call.code, call.details.field]).toEqual(['LEASE_UNKNOWN', 'body.leaseId']);
    // In a batch, within the batch: body.leases[i].leaseId.
    const renew = await errorOf(h.client.renew(gone));
    expect([renew.code, renew.details.field]).toEqual(['LEASE_UNKNOWN', 'body.leases[0].leaseId']);
    const results = await h.client.renewBatch(g.grantor!.topic, [
      { lease: leases[1]!, durationMs: 2000 },
      { lease: gone, durationMs: 2000 },
      { lease: leases[2]!, durationMs: 1 },
    ]);
    expect(results.map((r) => (r.ok ? 'ok' : `${r.code} ${r.field}`))).toEqual(['ok', 'LEASE_UNKNOWN body.leases[1].leaseId', 'LEASE_DENIED body.leases[2].durationMs']);
    expect(results[2]).toMatchObject({ ok: false, details: { minDurationMs: 10 } });
    // A cancelled lease says so in its details.
    await h.client.cancel(leases[3]!);
    const cancelled = await errorOf(h.client.renew(leases[3]!));
    expect(cancelled.details).toMatchObject({ field: 'body.leases[0].leaseId', ended: 'cancelled' });
    // A malformed entry refuses the whole batch, naming it; nothing is renewed.
    const before = leases.slice(0, 3).map((l) => g.grantor!.table.get(l.leaseId)!.expiresAt);
    clock.advance(10);
    const entries: unknown[] = leases.slice(0, 3).map((l) => ({ leaseId: l.leaseId, durationMs: 3000 }));
    entries.push({ leaseId: 7, durationMs: 3000 });
    const batch = await errorOf(h.bus.request(g.grantor!.topic, 'lease.renew', { reqId: 'b6', leases: entries }));
    expect([batch.code, batch.details.field]).toEqual(['SERVICE_BAD_REQUEST', 'body.leases[3].leaseId']);
    expect(leases.slice(0, 3).map((l) => g.grantor!.table.get(l.leaseId)!.expiresAt)).toEqual(before);
    const notMap = await errorOf(h.bus.request(g.grantor!.topic, 'lease.renew', { reqId: 'b7', leases: [{ leaseId: leases[0]!.leaseId, durationMs: 'soon' }, 3] }));
    expect(notMap.details.field).toBe('body.leases[0].durationMs');
  });

  it('7: spaces are announced and found by lookup; a space that does not exist is refused, never silent', async () => {
    const host = await devs.start('host7', { grantor: true });
    const plain = await devs.start('plain7'); // no grantor, hosts nothing
    const peer = await devs.start('peer7');
    for (const topic of ['ferry/v1/space/host7/default', 'ferry/v1/space/plain7/default']) {
      const e = await errorOf(peer.bus.request(topic, 'space.read', { reqId: 'r', template: {} }, { timeoutMs: 2000 }));
      expect([topic, e.code, e.details.field]).toEqual([topic, 'SPACE_NOT_FOUND', 'topic']);
    }
    const space = await host.hostSpace({ name: 'meet' });
    const d = await peer.discovery.waitFor({ type: 'space', attrs: { space: 'meet' } });
    expect(d).toMatchObject({ id: 'host7/space.meet', provider: 'host7', exclusive: false, callTopic: 'ferry/v1/space/host7/meet', attrs: { space: 'meet', kind: 'transient', maxEntryBytes: 65536 } });
    const c = new SpaceClient(peer.client, d.callTopic!);
    await c.write({ k: 1 }, 5000);
    expect((await c.read({ k: null })).entry).toEqual({ k: 1 });
    // The space itself may be leased (shared): liveness, alternates.
    const l = await peer.client.grant(d, 1000);
    expect(l.exclusive).toBe(false);
    expect(await codeOf(host.hostSpace({ name: 'meet' }))).toBe('BAD_OPTION');
    expect(await codeOf(host.offer({ name: 'space.x', type: 'x', exclusive: false }))).toBe('BAD_OPTION');
    await space.close();
    await until(() => !peer.discovery.isLive('host7/space.meet'), 3000, 'withdrawal');
    // A retained replay of the old announcement arriving after the live withdrawal (aedes does
    // this) does not bring it back.
    await new Promise((r) => setTimeout(r, 100));
    expect(peer.discovery.isLive('host7/space.meet')).toBe(false);
    expect(await codeOf(c.read({ k: null }))).toBe('SPACE_NOT_FOUND');
  });

  it('8: malformed and refused service messages are logged, rate-limited, without payload bytes', async () => {
    const lines: [ServicesLogLevel, string, Record<string, unknown>][] = [];
    const g = await devs.start('g8', { grantor: true, log: (l, e, f) => lines.push([l, e, f]), logLimits: { linesPerSource: 3, intervalMs: 60_000, maxLines: 50 } });
    const r = await raw('c8');
    const secret = 'hunter2-hunter2-hunter2';
    // Not CBOR at all, with a secret inside: dropped unanswered, logged at warn without the bytes.
    await r.send(g.grantor!.topic, Buffer.concat([Buffer.from([0xff]), Buffer.from(secret)]));
    await until(() => lines.some(([, e]) => e === 'services.invalid'), 3000, 'invalid line');
    expect(lines.find(([, e]) => e === 'services.invalid')).toEqual(['warn', 'services.invalid', { code: 'ENVELOPE_MALFORMED', field: 'envelope', topic: 'ferry/v1/lease/g8', source: 'ferry/v1/lease/g8' }]);
    // Refused requests: at most linesPerSource lines from one sender, the rest counted.
    for (let i = 0; i < 6; i++) {
      const a = await r.ask(g.grantor!.topic, 'lease.grant', { service: 'x', durationMs: secret, reqId: `q${i}` });
      expect(a.body).toMatchObject({ code: 'SERVICE_BAD_REQUEST', field: 'body.durationMs' });
    }
    const bad = lines.filter(([, e]) => e === 'services.bad-request');
    expect(bad.length).toBe(3);
    expect(bad[0]).toEqual(['debug', 'services.bad-request', { code: 'SERVICE_BAD_REQUEST', field: 'body.durationMs', topic: 'ferry/v1/lease/g8', type: 'lease.grant', from: 'c8', source: 'c8' }]);
    g.log.flush();
    expect(lines.at(-1)).toEqual(['warn', 'services.log-suppressed', { suppressed: 3, intervalMs: 60_000, bySource: { c8: 3 } }]);
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  it('9: a stale fence is refused (LEASE_FENCED, body.fence) after a handover and after expiry; the new holder works', async () => {
    const clock = new ManualClock(Date.now());
    const pi = await devs.start('pi9', { grantor: true, clock, system: { profile: 'rpi-4b' } });
    const a = await devs.start('a9');
    const b = await devs.start('b9');
    const disp = await a.discovery.waitFor({ type: 'display', attrs: { device: 'pi9' } });
    // Moved by handover: same lease id, new holder, higher fence.
    const la = await a.client.grant(disp, 5000);
    expect(await callService(a.bus, la, disp.callTopic!, 'draw', { text: 'a' })).toEqual({ frame: 1 });
    const lb = await a.client.handover(la, 'b9');
    expect(lb.fence!).toBeGreaterThan(la.fence!);
    const stale = await errorOf(callService(a.bus, la, disp.callTopic!, 'draw', { text: 'stale' }));
    expect([stale.code, stale.details.field]).toEqual(['LEASE_FENCED', 'body.fence']);
    expect(await callService(b.bus, lb, disp.callTopic!, 'draw', { text: 'b' })).toEqual({ frame: 2 });
    // Whoever sends a stale token is refused: B with A's old token too.
    expect(await codeOf(callService(b.bus, { ...lb, fence: la.fence! }, disp.callTopic!, 'draw', { text: 'x' }))).toBe('LEASE_FENCED');
    // A token above any issued is not the lease's.
    expect(await codeOf(callService(b.bus, { ...lb, fence: lb.fence! + 1000 }, disp.callTopic!, 'draw', { text: 'x' }))).toBe('LEASE_FENCED');
    await b.client.cancel(lb);
    // Moved by expiry: A's term runs out while it is paused, B leases, A wakes up.
    const la2 = await a.client.grant(disp, 1000);
    clock.advance(1000);
    const lb2 = await b.client.grant(disp, 5000);
    expect(lb2.fence!).toBeGreaterThan(la2.fence!);
    expect(await codeOf(callService(a.bus, la2, disp.callTopic!, 'draw', { text: 'late' }))).toBe('LEASE_FENCED');
    expect(await callService(b.bus, lb2, disp.callTopic!, 'draw', { text: 'b2' })).toEqual({ frame: 3 });
    const frames = (await callService<{ frames: { by: string; text: string }[] }>(b.bus, lb2, disp.callTopic!, 'frames')).frames;
    expect(frames.map((f) => f.text)).toEqual(['a', 'b', 'b2']);
  });

  it('10: holder ids that break §2 are refused, naming the field', async () => {
    const g = await devs.start('g10', { grantor: true });
    await g.offer({ name: 'lamp', type: 'lamp', exclusive: true });
    const space = await g.hostSpace({ name: 'sp' });
    const r = await raw('c10');
    for (const from of ['evil/+/#', 'a+', 'x#', `${'a'.repeat(65)}`, '-lead', 'sp ace']) {
      const a = await r.ask(g.grantor!.topic, 'lease.grant', { service: 'lamp', durationMs: 1000, reqId: `r-${from}` }, from);
      expect([from, a.body]).toMatchObject([from, { code: 'SERVICE_BAD_REQUEST', field: 'envelope.from' }]);
      const w = await r.ask(space.topic, 'space.write', { reqId: `w-${from}`, entry: { a: 1 }, durationMs: 1000 }, from);
      expect([from, w.body]).toMatchObject([from, { code: 'SERVICE_BAD_REQUEST', field: 'envelope.from' }]);
    }
    expect(g.grantor!.table.leasesOf('lamp')).toEqual([]);
    expect(space.size).toBe(0);
    const ok = await r.ask(g.grantor!.topic, 'lease.grant', { service: 'lamp', durationMs: 1000, reqId: 'good' });
    const leaseId = (ok.body as { leaseId: string }).leaseId;
    for (const newHolder of ['a/b+#', 'a/b', '+', '', 7]) {
      const h = await r.ask(g.grantor!.topic, 'lease.handover', { reqId: `h-${String(newHolder)}`, leaseId, newHolder });
      expect([newHolder, h.body]).toMatchObject([newHolder, { code: 'SERVICE_BAD_REQUEST', field: 'body.newHolder' }]);
    }
    expect(g.grantor!.table.leasesOf('lamp').map((l) => l.holder)).toEqual(['c10']);
  });
});

describe('LeaseGrantor options', () => {
  it('refuses a log that is neither a function nor a ServicesLog, naming options.log', async () => {
    const code = (f: () => unknown) => {
      try {
        f();
        return 'ok';
      } catch (e) {
        return `${(e as FerryError).code} ${String((e as FerryError).details.field)}`;
      }
    };
    const { readGrantorOptions, readSpaceOptions } = await import('../../agent/services/options.js');
    expect(code(() => readGrantorOptions({ stateFile: 'x', log: 3 as never }))).toBe('BAD_OPTION options.log');
    expect(code(() => readSpaceOptions({ name: 'a'.repeat(123) }))).toBe('BAD_OPTION options.name');
    expect(code(() => readSpaceOptions({ name: 'ok', discovery: {} as never }))).toBe('BAD_OPTION options.discovery');
    expect(Object.keys(ERROR_CODES)).toEqual(expect.arrayContaining(['SPACE_NOT_FOUND', 'LEASE_FENCED'] satisfies ErrorCode[]));
    expect(typeof LeaseGrantor.start).toBe('function');
    expect(typeof SpaceHost.start).toBe('function');
  });
});
