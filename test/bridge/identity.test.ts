import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { canonicalJson, fileCheck, loadIdentity, type DeviceIdentity } from '../../agent/bridge/identity.js';
import { ed25519Verify, fingerprint, generateEd25519, generateX25519, x25519 } from '../../agent/bridge/keys.js';
import { caught } from '../helpers/ferry-error.js';

const roots: string[] = [];
afterAll(() => roots.forEach((d) => rmSync(d, { recursive: true, force: true })));

function bridgeDir(): string {
  const root = mkdtempSync(join(tmpdir(), 'ferry-identity-'));
  roots.push(root);
  return join(root, 'data', 'bridge');
}

type IdentityJson = {
  v: unknown;
  deviceKey: Record<string, unknown>;
  staticKey: Record<string, unknown>;
  createdAt: unknown;
  check?: unknown;
  [k: string]: unknown;
};

/** A freshly made identity directory, and its file parsed. */
function fresh(): { dir: string; file: string; json: IdentityJson; id: DeviceIdentity } {
  const dir = bridgeDir();
  const id = loadIdentity(dir);
  const json = JSON.parse(readFileSync(id.file, 'utf8')) as IdentityJson;
  return { dir, file: id.file, json, id };
}

/** Writes `json` with a correct check, as a hand edit that also fixed the checksum would. */
function writeResealed(file: string, json: IdentityJson): void {
  const { check: _check, ...rest } = json;
  writeFileSync(file, JSON.stringify({ ...rest, check: fileCheck(rest) }));
}

/** Every spelling of a secret that a leak could take. */
function spellings(secret: Buffer): string[] {
  return [secret.toString('hex'), secret.toString('base64'), secret.toString('base64url'), secret.toString('base64url').slice(0, 20), [...secret].join(','), [...secret].join(', ')];
}

function expectNoSecret(text: string, secrets: Buffer[]): void {
  for (const s of secrets) for (const sp of spellings(s)) expect(text.includes(sp), `leaked ${sp.slice(0, 6)}…`).toBe(false);
}

describe('loadIdentity', () => {
  it('makes a new identity at first start, in a 0600 file under a 0700 directory', () => {
    const dir = bridgeDir();
    const id = loadIdentity(dir);
    expect(id.created).toBe(true);
    expect(id.warnings).toEqual([]);
    expect(id.file).toBe(join(dir, 'identity.key'));
    expect(statSync(id.file).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(id.deviceKey.length).toBe(32);
    expect(id.staticKey.publicKey.length).toBe(32);
    expect(id.staticKey.privateKey.length).toBe(32);
    expect(id.fingerprint).toBe(fingerprint(id.deviceKey, id.staticKey.publicKey));
    expect(id.fingerprint).toMatch(/^[0-9a-f]{4}(:[0-9a-f]{4}){4}$/);
    // The file is the documented format.
    const json = JSON.parse(readFileSync(id.file, 'utf8')) as IdentityJson;
    expect(Object.keys(json).sort()).toEqual(['check', 'createdAt', 'deviceKey', 'staticKey', 'v']);
    const { check, ...rest } = json;
    expect(check).toMatch(/^[0-9a-f]{16}$/);
    expect(check).toBe(fileCheck(rest));
    expect(json.deviceKey.public).toBe(id.deviceKey.toString('base64url'));
    expect(json.staticKey.public).toBe(id.staticKey.publicKey.toString('base64url'));
  });

  it('loads the same keys at the next start, and they work', () => {
    const { dir, id: first } = fresh();
    const again = loadIdentity(dir);
    expect(again.created).toBe(false);
    expect(again.warnings).toEqual([]);
    expect(again.deviceKey.equals(first.deviceKey)).toBe(true);
    expect(again.staticKey.publicKey.equals(first.staticKey.publicKey)).toBe(true);
    expect(again.staticKey.privateKey.equals(first.staticKey.privateKey)).toBe(true);
    expect(again.fingerprint).toBe(first.fingerprint);
    expect(again.createdAt).toBe(first.createdAt);
    const data = Buffer.from('hello peer');
    expect(ed25519Verify(first.deviceKey, data, again.sign(data))).toBe(true);
    // The static key agrees with another party's key (Noise DH).
    const other = generateX25519();
    expect(x25519(again.staticKey.privateKey, other.publicKey).equals(x25519(other.privateKey, again.staticKey.publicKey))).toBe(true);
  });

  it('hands out copies of the static private key, so a caller cannot change the identity', () => {
    const { id } = fresh();
    const k = id.staticKey.privateKey;
    const before = Buffer.from(k);
    k.fill(0);
    expect(id.staticKey.privateKey.equals(before)).toBe(true);
  });

  it('warns (but loads) when the key file is accessible by group or others', () => {
    const { dir, file } = fresh();
    chmodSync(file, 0o644);
    const id = loadIdentity(dir);
    expect(id.warnings).toHaveLength(1);
    expect(id.warnings[0]).toContain(file);
    expect(id.warnings[0]).toContain('0644');
  });

  it('refuses to make a new identity when the key is missing but the device has peers', () => {
    const dir = bridgeDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'peers.json'), '{}');
    const e = caught(() => loadIdentity(dir));
    expect(e.code).toBe('IDENTITY_CORRUPT');
    expect(e.message).toContain(join(dir, 'identity.key'));
    expect(e.message).toContain('is missing but this device has paired peers');
    expect(e.message).toContain(join(dir, 'peers.json'));
    expect(() => statSync(join(dir, 'identity.key'))).toThrow(); // nothing was made
  });

  const other = () => ({ ed: generateEd25519(), x: generateX25519() });
  const corrupt: { name: string; field: string; edit: (file: string, json: IdentityJson, text: string) => void }[] = [
    { name: 'truncated', field: 'identity.key', edit: (f, _j, t) => writeFileSync(f, t.slice(0, Math.floor(t.length / 2))) },
    { name: 'empty', field: 'identity.key', edit: (f) => writeFileSync(f, '') },
    { name: 'not JSON', field: 'identity.key', edit: (f, _j, t) => writeFileSync(f, t.replace('{', '<')) },
    { name: 'a JSON array', field: 'identity.key', edit: (f) => writeFileSync(f, '[1,2]') },
    { name: 'another version', field: 'v', edit: (f, j) => writeResealed(f, { ...j, v: 2 }) },
    { name: 'bad checksum', field: 'check', edit: (f, j) => writeFileSync(f, JSON.stringify({ ...j, createdAt: (j.createdAt as number) + 1 })) },
    { name: 'missing checksum', field: 'check', edit: (f, j) => writeFileSync(f, JSON.stringify({ ...j, check: undefined })) },
    {
      name: 'swapped device public key, checksum not fixed',
      field: 'check',
      edit: (f, j) => writeFileSync(f, JSON.stringify({ ...j, deviceKey: { ...j.deviceKey, public: other().ed.publicKey.toString('base64url') } })),
    },
    {
      name: 'swapped device public key (checksum fixed)',
      field: 'deviceKey.public',
      edit: (f, j) => writeResealed(f, { ...j, deviceKey: { ...j.deviceKey, public: other().ed.publicKey.toString('base64url') } }),
    },
    {
      name: 'swapped static public key (checksum fixed)',
      field: 'staticKey.public',
      edit: (f, j) => writeResealed(f, { ...j, staticKey: { ...j.staticKey, public: other().x.publicKey.toString('base64url') } }),
    },
    {
      name: 'static private key from another device (checksum fixed)',
      field: 'staticKey.public',
      edit: (f, j) => writeResealed(f, { ...j, staticKey: { ...j.staticKey, private: other().x.privateKey.toString('base64url') } }),
    },
    {
      name: 'wrong-length seed',
      field: 'deviceKey.seed',
      edit: (f, j) => writeResealed(f, { ...j, deviceKey: { ...j.deviceKey, seed: Buffer.alloc(31, 7).toString('base64url') } }),
    },
    {
      name: 'wrong-length static public key',
      field: 'staticKey.public',
      edit: (f, j) => writeResealed(f, { ...j, staticKey: { ...j.staticKey, public: Buffer.alloc(33, 7).toString('base64url') } }),
    },
    { name: 'seed in plain base64', field: 'deviceKey.seed', edit: (f, j) => writeResealed(f, { ...j, deviceKey: { ...j.deviceKey, seed: 'A+/' + String(j.deviceKey.seed).slice(3) } }) },
    { name: 'seed of another type', field: 'deviceKey.seed', edit: (f, j) => writeResealed(f, { ...j, deviceKey: { ...j.deviceKey, seed: 42 } }) },
    { name: 'missing static key', field: 'staticKey', edit: (f, j) => writeResealed(f, { ...j, staticKey: undefined as unknown as Record<string, unknown> }) },
    { name: 'unknown field', field: 'extra', edit: (f, j) => writeResealed(f, { ...j, extra: 1 }) },
    { name: 'bad createdAt', field: 'createdAt', edit: (f, j) => writeResealed(f, { ...j, createdAt: -5 }) },
    {
      name: 'a directory in its place',
      field: 'identity.key',
      edit: (f) => {
        rmSync(f);
        mkdirSync(f);
      },
    },
  ];

  for (const c of corrupt) {
    it(`refuses a corrupt key file: ${c.name}`, () => {
      const { dir, file, json, id } = fresh();
      const secrets = [Buffer.from(String(json.deviceKey.seed), 'base64url'), id.staticKey.privateKey];
      c.edit(file, json, readFileSync(file, 'utf8'));
      const edited = statSync(file).isFile() ? readFileSync(file) : undefined;
      const e = caught(() => loadIdentity(dir));
      expect(e.code).toBe('IDENTITY_CORRUPT');
      expect(e.details.field).toBe(c.field);
      expect(e.message).toContain(file);
      expect(e.message).not.toMatch(/ENOENT/);
      // No key byte in the message, the details, the cause or any printed form of the error.
      expectNoSecret(`${e.message}\n${JSON.stringify(e)}\n${inspect(e, { depth: Infinity })}\n${String(e)}`, secrets);
      // Nothing replaced the damaged file.
      if (edited) expect(readFileSync(file).equals(edited)).toBe(true);
      else expect(statSync(file).isDirectory()).toBe(true);
    });
  }

  it.skipIf(process.platform === 'win32' || process.getuid?.() === 0)('refuses an unreadable key file (mode 000)', () => {
    const { dir, file } = fresh();
    chmodSync(file, 0);
    const e = caught(() => loadIdentity(dir));
    expect(e.code).toBe('IDENTITY_CORRUPT');
    expect(e.message).toContain(file);
    expect(e.message).toContain('EACCES');
  });

  it('keeps every private byte out of JSON, inspect and string forms', () => {
    const { id, json } = fresh();
    const secrets = [Buffer.from(String(json.deviceKey.seed), 'base64url'), id.staticKey.privateKey];
    const forms = [
      JSON.stringify(id),
      JSON.stringify({ nested: id }),
      JSON.stringify(id.staticKey),
      inspect(id),
      inspect(id, { depth: Infinity, showHidden: true, getters: true }),
      inspect(id.staticKey, { depth: Infinity, showHidden: true, getters: true }),
      inspect({ nested: id }, { depth: Infinity }),
      String(id),
      `${id.staticKey}`,
      JSON.stringify({ ...id }),
      inspect({ ...id }, { depth: Infinity, showHidden: true }),
      Object.keys(id).join(','),
    ];
    for (const f of forms) expectNoSecret(f, secrets);
    // The public parts are there, so the forms are useful in logs.
    expect(JSON.stringify(id)).toContain(id.fingerprint);
    expect(inspect(id)).toContain(id.fingerprint);
    expect(String(id)).toContain(id.fingerprint);
  });

  it('checks with canonical JSON: key order and spacing do not matter', () => {
    expect(canonicalJson({ b: 1, a: { d: 'x', c: [1, { f: 2, e: 3 }] } })).toBe('{"a":{"c":[1,{"e":3,"f":2}],"d":"x"},"b":1}');
    const { dir, file, json, id } = fresh();
    // Rewritten with another key order and indentation: still the same identity.
    const reordered = { check: json.check, createdAt: json.createdAt, staticKey: { public: json.staticKey.public, private: json.staticKey.private }, deviceKey: json.deviceKey, v: json.v };
    writeFileSync(file, JSON.stringify(reordered, null, 4));
    expect(loadIdentity(dir).fingerprint).toBe(id.fingerprint);
  });
});
