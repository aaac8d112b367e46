import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getProfile, loadProfileFile, profileNames, resolveProfile, validateProfile, type HwProfile } from '../../hw-profiles/index.js';
import { FerryError } from '../../core/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'ferry-profiles-'));

function writeJson(name: string, value: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof value === 'string' ? value : JSON.stringify(value));
  return p;
}

describe('hardware profiles', () => {
  it('ships the device classes the design names', () => {
    expect(profileNames()).toEqual(expect.arrayContaining(['rpi-zero-2w', 'rpi-4b', 'rpi-5', 'android-phone', 'j2me-phone', 'palm-pda']));
  });

  it('j2me-phone is a 32-bit KVM-class device with a 128 KiB heap and a slow link', () => {
    const p = getProfile('j2me-phone');
    expect(p.wordBits).toBe(32);
    expect(p.heapBudgetBytes).toBe(128 * 1024);
    expect(p.virtualHeapBytes).toBeGreaterThanOrEqual(10 * p.heapBudgetBytes);
    expect(p.link.bandwidthBps).toBeLessThan(100_000);
  });

  it('every built-in profile carries its sources and is frozen', () => {
    for (const name of profileNames()) {
      const p = getProfile(name);
      expect(p.sources?.length, name).toBeGreaterThan(0);
      expect(Object.isFrozen(p)).toBe(true);
      expect(p.flashWriteBlockBytes % p.cacheLineBytes).toBe(0);
    }
  });

  it('every built-in profile has the CPU rating and RAM the device harness needs; a custom profile may leave them out', () => {
    for (const name of profileNames()) {
      const p = getProfile(name);
      expect(p.cpu?.singleCoreMips, name).toBeGreaterThan(0);
      expect(p.ramBytes, name).toBeGreaterThan(0);
      expect(p.sources!.some((s) => s.startsWith('cpu: ')), `${name} names the source of its CPU figure`).toBe(true);
    }
    // A Zero's core is slower than a Pi 4's, slower than a Pi 5's; the PDA's slower than all.
    const mips = (n: string) => getProfile(n).cpu!.singleCoreMips;
    expect(mips('rpi-zero-2w')).toBeLessThan(mips('rpi-4b'));
    expect(mips('rpi-4b')).toBeLessThan(mips('rpi-5'));
    expect(mips('palm-pda')).toBeLessThan(mips('rpi-zero-2w'));
    const { cpu: _c, ramBytes: _r, ...bare } = getProfile('rpi-4b');
    const p = loadProfileFile(writeJson('bare.json', { ...bare, name: 'bare-board' }));
    expect(p.cpu).toBeUndefined();
    expect(p.ramBytes).toBeUndefined();
  });

  it('an unknown name lists the known ones', () => {
    expect(() => getProfile('nokia-3310')).toThrowError(/not built in \(known: rpi-zero-2w/);
    try { getProfile('x'); } catch (e) { expect((e as FerryError).code).toBe('PROFILE_UNKNOWN'); }
  });

  it('loads a custom profile from JSON', () => {
    const custom: HwProfile = { ...getProfile('rpi-4b'), name: 'my-board', services: ['gpio'] };
    const p = loadProfileFile(writeJson('ok.json', custom));
    expect(p.name).toBe('my-board');
    expect(resolveProfile(join(dir, 'ok.json')).services).toEqual(['gpio']);
  });

  const base = { ...getProfile('rpi-4b') } as Record<string, unknown>;
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['cacheLineBytes not a power of two', { ...base, cacheLineBytes: 3000 }, /cacheLineBytes must be a power of two, got 3000/],
    ['wordBits 48', { ...base, wordBits: 48 }, /wordBits must be 32 or 64, got 48/],
    ['heap budget as a string', { ...base, heapBudgetBytes: '64MB' }, /heapBudgetBytes must be an integer/],
    ['virtual heap below budget', { ...base, virtualHeapBytes: 1024 * 1024 }, /virtualHeapBytes must be an integer in 67108864\.\./],
    ['write block below line', { ...base, flashWriteBlockBytes: 1024 }, /flashWriteBlockBytes/],
    ['link loss above 1', { ...base, link: { ...(base.link as object), lossRate: 2 } }, /link\.lossRate must be a number in 0\.\.1, got 2/],
    ['link missing', { ...base, link: undefined }, /link must be an object/],
    ['unknown service', { ...base, services: ['gpio', 'toaster'] }, /services\[1\] must be one of display/],
    ['typo in a field', { ...base, cacheLineByte: 4096 }, /cacheLineByte is not a known option/],
    ['bad name', { ...base, name: 'My Board' }, /name must be a string matching/],
    ['cpu rating zero', { ...base, cpu: { cores: 4, singleCoreMips: 0 } }, /cpu\.singleCoreMips must be an integer in 1\.\.1000000, got 0/],
    ['cpu without cores', { ...base, cpu: { singleCoreMips: 900 } }, /cpu\.cores must be an integer in 1\.\.1024/],
    ['cpu with an unknown field', { ...base, cpu: { cores: 1, singleCoreMips: 9, mhz: 700 } }, /cpu\.mhz is not a known option/],
    ['RAM below 64 KiB', { ...base, ramBytes: 1024 }, /ramBytes must be an integer in 65536\.\./],
  ];
  it.each(bad)('refuses %s, naming the field', (_label, value, message) => {
    const path = writeJson('bad.json', value);
    let err: unknown;
    try { loadProfileFile(path); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(FerryError);
    expect((err as FerryError).code).toBe('PROFILE_INVALID');
    expect((err as FerryError).message).toMatch(message);
  });

  it('refuses a file that is not JSON, or missing', () => {
    expect(() => loadProfileFile(writeJson('broken.json', '{"name": '))).toThrowError(/is not valid JSON/);
    expect(() => loadProfileFile(join(dir, 'absent.json'))).toThrowError(/cannot be read/);
  });

  it('validateProfile refuses a non-object', () => {
    expect(() => validateProfile(42)).toThrowError(/profile must be an object, got 42/);
  });
});
