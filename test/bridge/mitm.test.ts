/**
 * A man in the middle of pairing with full control of the broker (PROTOCOL.md §B.2): every
 * pairing message reaches only the attacker, who answers each device posing as the other with
 * its own keys, and searches for a nonce that gives both devices the same code.
 *
 * The same attack and the same "defeated" assertions run twice: against real agent processes
 * speaking the real protocol (the attack fails), and against the test build without the
 * commitment (the attack succeeds, so the assertions fail: the test catches the attack).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../core/errors.js';
import { fingerprint, generateEd25519, generateX25519 } from '../../agent/bridge/keys.js';
import { Pairing } from '../../agent/bridge/pairing.js';
import { PeerRegistry } from '../../agent/bridge/peer-registry.js';
import { MqttBus } from '../../transports/mqtt-bus.js';
import { Device, Dirs, pendingWith, until } from './helpers.js';
import { Mitm, startCompromisedBroker, type CompromisedBroker, type MitmReport } from './mitm-relay.js';

/** The attacker's client id: the broker hands it every pairing message. */
const MALLORY = 'mallory-mitm';
/**
 * Search budget. One try in 10^6 matches, so 16 million tries fail with probability e^-16: the
 * attack without the commitment succeeds in every run, and the run with it cannot blame luck.
 */
const MAX_TRIES = 16_000_000;

type Outcome = { ok: true } | { error: string };
interface Shown {
  code: string;
  /** The fingerprint the device shows for its peer. */
  fingerprint: string;
}
interface StoredPeer {
  deviceId: string;
  deviceKey: string;
}

/** A device as its owner drives it. */
interface Owner {
  id: string;
  /** Its own device key, base64url. */
  deviceKey(): Promise<string>;
  /** `ferry pair <peer>`: resolves with what it shows once the code is known. */
  request(peer: string): Promise<Shown>;
  /** Resolves once a request from `peer` waits here. */
  incoming(peer: string): Promise<void>;
  /** `ferry pair --accept <peer>`. */
  accept(peer: string): Promise<Shown>;
  /** The owner types `code` (the one the other device shows) and confirms. */
  confirm(peer: string, role: 'initiator' | 'responder', code: string): Promise<Outcome>;
  /** The peers it stored. */
  stored(): Promise<StoredPeer[]>;
}

interface AttackResult {
  codes: { a: string; b: string };
  fingerprints: { a: string; b: string };
  search: MitmReport;
  confirmed: { a: Outcome; b: Outcome };
  stored: { a: StoredPeer[]; b: StoredPeer[] };
  keys: { a: string; b: string; mitm: string; mitmFingerprint: string };
}

/** A pairs with B while the man in the middle holds the broker; each owner types the code the other device shows. */
async function attack(a: Owner, b: Owner, mitm: Mitm): Promise<AttackResult> {
  const asking = a.request(b.id);
  await b.incoming(a.id);
  const atB = await b.accept(a.id);
  const atA = await asking;
  const [ca, cb] = await Promise.all([a.confirm(b.id, 'initiator', atB.code), b.confirm(a.id, 'responder', atA.code)]);
  expect(mitm.errors).toEqual([]);
  return {
    codes: { a: atA.code, b: atB.code },
    fingerprints: { a: atA.fingerprint, b: atB.fingerprint },
    search: { ...mitm.report },
    confirmed: { a: ca, b: cb },
    stored: { a: await a.stored(), b: await b.stored() },
    keys: { a: await a.deviceKey(), b: await b.deviceKey(), mitm: mitm.deviceKey.toString('base64url'), mitmFingerprint: fingerprint(mitm.deviceKey, mitm.staticKey) },
  };
}

/** The attack failed: different codes, both owners' confirmations refused, nothing stored. */
function assertDefeated(r: AttackResult): void {
  expect(r.search.found, 'the man in the middle found a nonce that matches the codes').toBe(false);
  expect(r.codes.a, 'both devices show the same code').not.toBe(r.codes.b);
  expect(r.confirmed).toEqual({ a: { error: 'PAIR_CODE_MISMATCH' }, b: { error: 'PAIR_CODE_MISMATCH' } });
  expect(r.stored).toEqual({ a: [], b: [] });
}

/** The devices talked to the attacker only: each shows the attacker's fingerprint as its peer's. */
function assertInTheMiddle(r: AttackResult, mitm: Mitm): void {
  expect(r.fingerprints).toEqual({ a: r.keys.mitmFingerprint, b: r.keys.mitmFingerprint });
  expect(mitm.report.forged.slice(0, 2)).toEqual([expect.stringMatching(/^pair\.request→/), expect.stringMatching(/^pair\.response→/)]);
}

const CLI_FAILED = (what: string, r: { stdout: string; stderr: string }) => new Error(`${what} failed: ${r.stdout}${r.stderr}`);

/** An agent process driven through the `ferry` command (the script flow). */
function processOwner(d: Device): Owner {
  const shown = async (args: string[]): Promise<Shown> => {
    const r = await d.json<Shown>(args);
    if (r.code !== 0) throw CLI_FAILED(`ferry ${args.join(' ')}`, r);
    return { code: r.value.code, fingerprint: r.value.fingerprint };
  };
  return {
    id: d.id,
    deviceKey: async () => ((await d.control('identity')) as { deviceKey: string }).deviceKey,
    request: (peer) => shown(['pair', peer]),
    incoming: async (peer) => void (await until(`the request from ${peer} pending on ${d.id}`, () => pendingWith(d, peer))),
    accept: (peer) => shown(['pair', '--accept', peer]),
    async confirm(peer, role, code) {
      const r = await d.json(role === 'initiator' ? ['pair', peer, '--confirm', code] : ['pair', '--accept', peer, '--confirm', code]);
      return r.code === 0 ? { ok: true } : { error: r.error?.code ?? `exit ${r.code}: ${r.stdout}${r.stderr}` };
    },
    async stored() {
      const file = JSON.parse(readFileSync(join(d.dataDir, 'bridge', 'peers.json'), 'utf8')) as { peers: Record<string, { deviceKey: string }> };
      return Object.entries(file.peers).map(([deviceId, p]) => ({ deviceId, deviceKey: p.deviceKey }));
    },
  };
}

/** A device in this process: the real Pairing on its own bus connection, storing into a real peer registry. */
async function inProcessOwner(url: string, id: string, dir: string, commit: boolean): Promise<Owner & { close(): Promise<void> }> {
  mkdirSync(dir, { recursive: true });
  const bus = await MqttBus.connect({ url, deviceId: id });
  const device = generateEd25519();
  const stat = generateX25519();
  const registry = PeerRegistry.open(join(dir, 'peers.json'), fingerprint(device.publicKey, stat.publicKey), { create: true });
  const pairing = await Pairing.start({
    bus,
    self: { deviceId: id, deviceKey: device.publicKey, staticKey: stat.publicKey, profile: 'rpi-4b', label: id },
    timeoutMs: 120_000,
    store: (rec) => void registry.add(rec),
    isPaired: (peer) => registry.get(peer) !== undefined,
    log: () => undefined,
    commit,
  });
  const shown = (v: { code: string; fingerprint: string }): Shown => ({ code: v.code, fingerprint: v.fingerprint });
  return {
    id,
    deviceKey: async () => device.publicKey.toString('base64url'),
    request: async (peer) => shown(await pairing.initiate(peer)),
    incoming: async (peer) => void (await until(`the request from ${peer} pending on ${id}`, () => pairing.attemptsView().some((x) => x.peer === peer && x.step === 'incoming'))),
    accept: async (peer) => shown(await pairing.accept(peer)),
    confirm: (peer, _role, code) => pairing.confirm(peer, true, code).then(
      (): Outcome => ({ ok: true }),
      (e: unknown): Outcome => ({ error: isFerryError(e) ? e.code : String(e) }),
    ),
    stored: async () => registry.list().map((p) => ({ deviceId: p.deviceId, deviceKey: p.deviceKey.toString('base64url') })),
    async close() {
      await pairing.close();
      await bus.close();
    },
  };
}

describe('a man in the middle of pairing, with the commitment (real agent processes)', () => {
  const dirs = new Dirs();
  let broker: CompromisedBroker;
  let mitm: Mitm;
  let pi: Device;
  let phone: Device;

  beforeAll(async () => {
    broker = await startCompromisedBroker(MALLORY);
    mitm = await Mitm.start(broker.url, MALLORY, MAX_TRIES);
    const args = ['--broker', broker.url];
    pi = new Device(`pi-${process.pid}`, 'rpi-4b', dirs.make('pi'), [...args, '--label', 'kitchen pi']);
    phone = new Device(`phone-${process.pid}`, 'android-phone', dirs.make('phone'), [...args, '--label', 'my phone']);
    await Promise.all([pi.start(), phone.start()]);
  });
  afterAll(async () => {
    await Promise.all([pi?.stop(), phone?.stop()]);
    await mitm?.close();
    await broker?.stop();
    dirs.cleanup();
  });

  it('cannot make the codes match: the owners see different codes, confirming fails with PAIR_CODE_MISMATCH and nothing is stored', async () => {
    const r = await attack(processOwner(pi), processOwner(phone), mitm);
    assertInTheMiddle(r, mitm);
    // It had to choose its nonce toward the initiator before the initiator revealed its own.
    expect(r.search).toMatchObject({ knewNonce: false, found: false, tries: 0 });
    expect(mitm.report.forged).toContain(`pair.reveal→${phone.id}`);
    assertDefeated(r);
    for (const d of [pi, phone]) {
      const peers = await d.peers(false);
      expect(peers.paired).toEqual([]);
      expect(peers.pending).toEqual([]);
      expect(d.logs.some((l) => l.event === 'peer.paired')).toBe(false);
    }
  });
});

describe('the same man in the middle against the test build without the commitment', () => {
  let broker: CompromisedBroker;
  let mitm: Mitm;
  let dir: string;
  const owners: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-mitm-'));
    broker = await startCompromisedBroker(MALLORY);
    mitm = await Mitm.start(broker.url, MALLORY, MAX_TRIES);
  });
  afterAll(async () => {
    for (const o of owners) await o.close();
    await mitm?.close();
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('succeeds: the assertions that pass against the real protocol fail here', async () => {
    const a = await inProcessOwner(broker.url, 'pi-nocommit', join(dir, 'a'), false);
    const b = await inProcessOwner(broker.url, 'phone-nocommit', join(dir, 'b'), false);
    owners.push(a, b);
    const r = await attack(a, b, mitm);
    assertInTheMiddle(r, mitm);
    expect(() => assertDefeated(r)).toThrow();
    // What it achieved: the initiator's nonce came with the request, the search found a nonce,
    // both owners saw one code and confirmed, and both devices stored the attacker's keys.
    expect(r.search).toMatchObject({ knewNonce: true, found: true });
    expect(r.codes.a).toBe(r.codes.b);
    expect(r.confirmed).toEqual({ a: { ok: true }, b: { ok: true } });
    expect(r.stored).toEqual({ a: [{ deviceId: b.id, deviceKey: r.keys.mitm }], b: [{ deviceId: a.id, deviceKey: r.keys.mitm }] });
    expect(r.keys.mitm).not.toBe(r.keys.a);
    expect(r.keys.mitm).not.toBe(r.keys.b);
  });
});
