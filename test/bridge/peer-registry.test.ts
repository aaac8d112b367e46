import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { fileCheck } from '../../agent/bridge/identity.js';
import { fingerprint, generateEd25519, generateX25519 } from '../../agent/bridge/keys.js';
import { PeerRegistry, type PeerInput, type PeerRecord } from '../../agent/bridge/peer-registry.js';
import { caught } from '../helpers/ferry-error.js';

const SELF = '3fa2:91c0:77de:0b1a:5e42';
const OTHER = '0000:1111:2222:3333:4444';

const roots: string[] = [];
afterAll(() => roots.forEach((d) => rmSync(d, { recursive: true, force: true })));

function registryFile(): string {
  const root = mkdtempSync(join(tmpdir(), 'ferry-peers-'));
  roots.push(root);
  return join(root, 'peers.json');
}

function peer(deviceId: string, extra: Partial<PeerInput> = {}): PeerInput {
  return { deviceId, deviceKey: generateEd25519().publicKey, staticKey: generateX25519().publicKey, profile: 'rpi-4b', label: `${deviceId}'s board`, pairedAt: 1_700_000_000_000, ...extra };
}

/** A record as comparable plain data. */
function plain(r: PeerRecord): unknown {
  return { ...r, deviceKey: r.deviceKey.toString('hex'), staticKey: r.staticKey.toString('hex') };
}

type FileJson = { v: unknown; self: unknown; peers: Record<string, Record<string, unknown>>; check?: unknown; [k: string]: unknown };

function readJson(file: string): FileJson {
  return JSON.parse(readFileSync(file, 'utf8')) as FileJson;
}

function writeResealed(file: string, json: FileJson): void {
  const { check: _check, ...rest } = json;
  writeFileSync(file, JSON.stringify({ ...rest, check: fileCheck(rest) }));
}

/** A registry file with two peers, and its parsed JSON. */
function twoPeers(): { file: string; json: FileJson } {
  const file = registryFile();
  const r = PeerRegistry.open(file, SELF);
  r.add(peer('kitchen'));
  r.add(peer('garage'));
  return { file, json: readJson(file) };
}

describe('PeerRegistry', () => {
  it('starts empty without creating the file; the first add writes it with mode 0600', () => {
    const file = registryFile();
    const r = PeerRegistry.open(file, SELF);
    expect(r.list()).toEqual([]);
    expect(r.size).toBe(0);
    expect(existsSync(file)).toBe(false);
    expect(r.remove('nobody')).toBe(false);
    expect(existsSync(file)).toBe(false);
    const added = r.add(peer('kitchen'));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(added.fingerprint).toBe(fingerprint(added.deviceKey, added.staticKey));
    const json = readJson(file);
    expect(json.v).toBe(1);
    expect(json.self).toBe(SELF);
    expect(Object.keys(json.peers)).toEqual(['kitchen']);
    expect(Object.keys(json.peers.kitchen!).sort()).toEqual(['deviceKey', 'label', 'pairedAt', 'profile', 'staticKey']);
    const { check, ...rest } = json;
    expect(check).toBe(fileCheck(rest));
  });

  it('with create, writes an empty registry at open', () => {
    const file = registryFile();
    PeerRegistry.open(file, SELF, { create: true });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readJson(file).peers).toEqual({});
    expect(PeerRegistry.open(file, SELF).list()).toEqual([]);
  });

  it('adds, replaces, gets, lists sorted, removes, and keeps it all across reopen', () => {
    const file = registryFile();
    const r = PeerRegistry.open(file, SELF);
    const b = r.add(peer('bravo'));
    const a = r.add(peer('alpha', { label: '', profile: 'esp32.s3-x_1' }));
    const c = r.add(peer('charlie:2', { label: 'Anna’s 👩‍💻 laptop — Küche' }));
    expect(r.list().map((p) => p.deviceId)).toEqual(['alpha', 'bravo', 'charlie:2']);
    expect(plain(r.require('alpha'))).toEqual(plain(a));
    expect(r.get('nobody')).toBeUndefined();

    const b2 = r.add({ ...peer('bravo'), label: 'replaced', fingerprint: undefined });
    expect(r.size).toBe(3);
    expect(r.get('bravo')!.label).toBe('replaced');
    expect(r.get('bravo')!.deviceKey.equals(b.deviceKey)).toBe(false);

    expect(r.remove('alpha')).toBe(true);
    expect(r.remove('alpha')).toBe(false);

    const again = PeerRegistry.open(file, SELF);
    expect(again.list().map(plain)).toEqual([b2, c].map(plain));
    expect(again.list().map(plain)).toEqual(r.list().map(plain));
  });

  it('hands out copies: changing a returned record changes nothing stored', () => {
    const file = registryFile();
    const r = PeerRegistry.open(file, SELF);
    const input = peer('alpha');
    const keyBefore = Buffer.from(input.deviceKey);
    const added = r.add(input);
    input.deviceKey.fill(0);
    added.staticKey.fill(0);
    r.get('alpha')!.label = 'changed';
    r.list()[0]!.deviceKey.fill(0);
    const got = r.require('alpha');
    expect(got.deviceKey.equals(keyBefore)).toBe(true);
    expect(got.staticKey.equals(Buffer.alloc(32))).toBe(false);
    expect(got.label).toBe("alpha's board");
  });

  it('require names the unknown peer with PEER_UNKNOWN', () => {
    const e = caught(() => PeerRegistry.open(registryFile(), SELF).require('ghost'));
    expect(e.code).toBe('PEER_UNKNOWN');
    expect(e.details.field).toBe('peer');
    expect(e.message).toContain('"ghost"');
  });

  it('leaves the registry (in memory and on disk) as it was when a write fails', () => {
    const file = registryFile();
    const r = PeerRegistry.open(file, SELF);
    r.add(peer('alpha'));
    const before = readFileSync(file, 'utf8');
    mkdirSync(`${file}.tmp`); // the temporary file cannot be made
    expect(() => r.add(peer('bravo'))).toThrow();
    expect(() => r.remove('alpha')).toThrow();
    expect(r.list().map((p) => p.deviceId)).toEqual(['alpha']);
    expect(readFileSync(file, 'utf8')).toBe(before);
    rmSync(`${file}.tmp`, { recursive: true });
    r.add(peer('bravo'));
    expect(PeerRegistry.open(file, SELF).list().map((p) => p.deviceId)).toEqual(['alpha', 'bravo']);
  });

  const badInputs: { name: string; field: string; input: () => PeerInput }[] = [
    { name: 'empty device id', field: 'peer.deviceId', input: () => peer('') },
    { name: 'device id with a slash', field: 'peer.deviceId', input: () => peer('a/b') },
    { name: 'device id of 65 characters', field: 'peer.deviceId', input: () => peer('a'.repeat(65)) },
    { name: 'short device key', field: 'peer.deviceKey', input: () => peer('a', { deviceKey: Buffer.alloc(31) }) },
    { name: 'static key not bytes', field: 'peer.staticKey', input: () => peer('a', { staticKey: 'x'.repeat(32) as unknown as Buffer }) },
    { name: 'empty profile', field: 'peer.profile', input: () => peer('a', { profile: '' }) },
    { name: 'profile with a space', field: 'peer.profile', input: () => peer('a', { profile: 'rpi 4b' }) },
    { name: 'profile of 65 characters', field: 'peer.profile', input: () => peer('a', { profile: 'p'.repeat(65) }) },
    { name: 'label of 65 characters', field: 'peer.label', input: () => peer('a', { label: 'l'.repeat(65) }) },
    { name: 'label with a newline', field: 'peer.label', input: () => peer('a', { label: 'a\nb' }) },
    { name: 'label with an escape', field: 'peer.label', input: () => peer('a', { label: '\u001b[31mred' }) },
    { name: 'label with a bidi override', field: 'peer.label', input: () => peer('a', { label: 'abc\u202Edef' }) },
    { name: 'label not a string', field: 'peer.label', input: () => peer('a', { label: 5 as unknown as string }) },
    { name: 'negative pairedAt', field: 'peer.pairedAt', input: () => peer('a', { pairedAt: -1 }) },
    { name: 'fractional pairedAt', field: 'peer.pairedAt', input: () => peer('a', { pairedAt: 1.5 }) },
    { name: 'a fingerprint of other keys', field: 'peer.fingerprint', input: () => peer('a', { fingerprint: OTHER }) },
  ];
  for (const c of badInputs) {
    it(`refuses to add a record with ${c.name} (BAD_OPTION naming the field)`, () => {
      const file = registryFile();
      const r = PeerRegistry.open(file, SELF);
      const e = caught(() => r.add(c.input()));
      expect(e.code).toBe('BAD_OPTION');
      expect(e.details.field).toBe(c.field);
      expect(e.message).toContain(c.field);
      expect(r.size).toBe(0);
      expect(existsSync(file)).toBe(false);
    });
  }

  it('accepts labels of 64 characters (code points) and profiles of 64', () => {
    const r = PeerRegistry.open(registryFile(), SELF);
    r.add(peer('a', { label: '🙂'.repeat(64), profile: 'p'.repeat(64) }));
    expect(PeerRegistry.open(r.file, SELF).require('a').label).toBe('🙂'.repeat(64));
  });

  it('refuses a malformed self fingerprint (BAD_OPTION)', () => {
    const e = caught(() => PeerRegistry.open(registryFile(), 'not-a-fingerprint'));
    expect(e.code).toBe('BAD_OPTION');
    expect(e.details.field).toBe('selfFingerprint');
  });

  const corrupt: { name: string; field: string; edit: (file: string, json: FileJson, text: string) => void }[] = [
    { name: 'truncated', field: 'peers.json', edit: (f, _j, t) => writeFileSync(f, t.slice(0, t.length - 20)) },
    { name: 'empty', field: 'peers.json', edit: (f) => writeFileSync(f, '') },
    { name: 'not JSON', field: 'peers.json', edit: (f) => writeFileSync(f, 'peers: none') },
    { name: 'JSON null', field: 'peers.json', edit: (f) => writeFileSync(f, 'null') },
    { name: 'bad checksum', field: 'check', edit: (f, j) => writeFileSync(f, JSON.stringify({ ...j, peers: { ...j.peers, kitchen: { ...j.peers.kitchen, label: 'edited' } } })) },
    { name: 'a record removed by hand', field: 'check', edit: (f, j) => writeFileSync(f, JSON.stringify({ ...j, peers: { garage: j.peers.garage } })) },
    { name: 'another version', field: 'v', edit: (f, j) => writeResealed(f, { ...j, v: 2 }) },
    { name: 'an unknown field', field: 'extra', edit: (f, j) => writeResealed(f, { ...j, extra: true }) },
    { name: 'missing self', field: 'self', edit: (f, j) => writeResealed(f, { ...j, self: undefined }) },
    { name: 'malformed self', field: 'self', edit: (f, j) => writeResealed(f, { ...j, self: 'me' }) },
    { name: 'peers an array', field: 'peers', edit: (f, j) => writeResealed(f, { ...j, peers: [] as unknown as FileJson['peers'] }) },
    { name: 'a record not an object', field: 'peers.kitchen', edit: (f, j) => writeResealed(f, { ...j, peers: { ...j.peers, kitchen: 'x' as unknown as Record<string, unknown> } }) },
    {
      name: 'a short device key',
      field: 'peers.kitchen.deviceKey',
      edit: (f, j) => writeResealed(f, { ...j, peers: { ...j.peers, kitchen: { ...j.peers.kitchen, deviceKey: Buffer.alloc(31).toString('base64url') } } }),
    },
    {
      name: 'a static key in hex',
      field: 'peers.garage.staticKey',
      edit: (f, j) => writeResealed(f, { ...j, peers: { ...j.peers, garage: { ...j.peers.garage, staticKey: Buffer.alloc(32, 1).toString('hex') } } }),
    },
    { name: 'a missing label', field: 'peers.kitchen.label', edit: (f, j) => writeResealed(f, { ...j, peers: { ...j.peers, kitchen: { ...j.peers.kitchen, label: undefined } } }) },
    { name: 'a bad profile', field: 'peers.kitchen.profile', edit: (f, j) => writeResealed(f, { ...j, peers: { ...j.peers, kitchen: { ...j.peers.kitchen, profile: '../etc' } } }) },
    { name: 'a bad pairedAt', field: 'peers.kitchen.pairedAt', edit: (f, j) => writeResealed(f, { ...j, peers: { ...j.peers, kitchen: { ...j.peers.kitchen, pairedAt: '2024' } } }) },
    { name: 'an unknown record field', field: 'peers.kitchen.owner', edit: (f, j) => writeResealed(f, { ...j, peers: { ...j.peers, kitchen: { ...j.peers.kitchen, owner: 'x' } } }) },
    { name: 'a malformed device id', field: 'peers.bad id', edit: (f, j) => writeResealed(f, { ...j, peers: { ...j.peers, 'bad id': j.peers.kitchen! } }) },
    {
      name: 'a directory in its place',
      field: 'peers.json',
      edit: (f) => {
        rmSync(f);
        mkdirSync(f);
      },
    },
  ];
  for (const c of corrupt) {
    it(`refuses a corrupt registry file: ${c.name} (PEERS_CORRUPT, never an empty list)`, () => {
      const { file, json } = twoPeers();
      c.edit(file, json, readFileSync(file, 'utf8'));
      const e = caught(() => PeerRegistry.open(file, SELF));
      expect(e.code).toBe('PEERS_CORRUPT');
      expect(e.details.field).toBe(c.field);
      expect(e.message).toContain(file);
      // create does not paper over it either.
      expect(caught(() => PeerRegistry.open(file, SELF, { create: true })).code).toBe('PEERS_CORRUPT');
    });
  }

  it('refuses a registry written for another identity (IDENTITY_CORRUPT)', () => {
    const { file } = twoPeers();
    const e = caught(() => PeerRegistry.open(file, OTHER));
    expect(e.code).toBe('IDENTITY_CORRUPT');
    expect(e.details.field).toBe('self');
    expect(e.message).toContain("identity.key is not the identity this device's peers were paired with");
    expect(e.message).toContain(SELF);
    expect(e.message).toContain(OTHER);
  });

  it('matches a model through any sequence of adds and removes, across reopens', () => {
    const ids = ['a', 'b', 'c', 'd.e', 'f:g'];
    const op = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), id: fc.constantFrom(...ids), label: fc.string({ maxLength: 10 }).filter((s) => /^[ -~]*$/.test(s)), pairedAt: fc.nat() }),
      fc.record({ kind: fc.constant('remove' as const), id: fc.constantFrom(...ids) }),
      fc.record({ kind: fc.constant('reopen' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 25 }), (ops) => {
        const file = registryFile();
        let r = PeerRegistry.open(file, SELF);
        const model = new Map<string, PeerRecord>();
        for (const o of ops) {
          if (o.kind === 'add') model.set(o.id, r.add(peer(o.id, { label: o.label, pairedAt: o.pairedAt })));
          else if (o.kind === 'remove') expect(r.remove(o.id)).toBe(model.delete(o.id));
          else r = PeerRegistry.open(file, SELF);
          expect(r.list().map(plain)).toEqual([...model.keys()].sort().map((k) => plain(model.get(k)!)));
        }
        expect(PeerRegistry.open(file, SELF).list().map(plain)).toEqual(r.list().map(plain));
      }),
      { numRuns: 40 },
    );
  });
});
