import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeCommand, NODE_COMMAND_ENV } from '../../agent/runtime/node-command.js';
import { residentBytes, type ProcReader } from '../../agent/runtime/resident-memory.js';
import { caught } from '../helpers/ferry-error.js';

const dir = mkdtempSync(join(tmpdir(), 'ferry-node-cmd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('nodeCommand: the command that starts this Node again', () => {
  it('is process.execPath unless FERRY_NODE names another', () => {
    expect(nodeCommand({}, '/usr/bin/node')).toBe('/usr/bin/node');
    expect(nodeCommand({ [NODE_COMMAND_ENV]: '' }, '/usr/bin/node')).toBe('/usr/bin/node');
    const wrapper = join(dir, 'node-wrapper');
    // A wrapper as the ARM64 tree's (which runs this Node's command: under emulation, the emulator).
    writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(nodeCommand())} "$@"\n`);
    chmodSync(wrapper, 0o755);
    expect(nodeCommand({ [NODE_COMMAND_ENV]: wrapper }, '/usr/bin/node')).toBe(wrapper);
    // And it does run Node.
    expect(spawnSync(nodeCommand({ [NODE_COMMAND_ENV]: wrapper }), ['-p', '6*7'], { encoding: 'utf8' }).stdout).toBe('42\n');
  });

  it('refuses a FERRY_NODE that is relative, missing, a folder or not executable, naming the variable', () => {
    const plain = join(dir, 'not-executable');
    writeFileSync(plain, '#!/bin/sh\n');
    chmodSync(plain, 0o644);
    for (const bad of ['node', join(dir, 'missing'), dir, plain]) {
      const e = caught(() => nodeCommand({ [NODE_COMMAND_ENV]: bad }, '/usr/bin/node'));
      expect(e.code, bad).toBe('NODE_COMMAND_INVALID');
      expect(e.details.field).toBe(NODE_COMMAND_ENV);
      expect(e.message).toContain(bad);
    }
  });

  it('in this test run it is one that runs this very Node (FERRY_NODE under emulation)', () => {
    const r = spawnSync(nodeCommand(), ['-p', 'process.arch + " " + process.version'], { encoding: 'utf8' });
    expect(r.stdout.trim()).toBe(`${process.arch} ${process.version}`);
  });
});

describe('residentBytes: the resident set, also where Node reads 0 (qemu-user)', () => {
  // /proc/self/statm: size resident shared text lib data dt (pages); auxv: (type, value) words.
  const auxv = (pageSize: number) => {
    const b = Buffer.alloc(16 * 3);
    b.writeBigUInt64LE(33n, 0); // AT_SYSINFO_EHDR, something before
    b.writeBigUInt64LE(0x7fff0000n, 8);
    b.writeBigUInt64LE(6n, 16); // AT_PAGESZ
    b.writeBigUInt64LE(BigInt(pageSize), 24);
    return b; // then AT_NULL (zeros)
  };
  const reader = (pageSize: number): ProcReader => (p) => (p === '/proc/self/statm' ? Buffer.from('244002 22415 9622 1151 0 55381 0\n') : p === '/proc/self/auxv' ? auxv(pageSize) : Buffer.alloc(0));

  it("is Node's figure when it has one", () => {
    expect(residentBytes({ rss: () => 12_345_678, read: () => { throw new Error('not read'); } })).toBe(12_345_678);
  });

  it('falls back to the resident pages of /proc/self/statm times the page size from auxv', () => {
    expect(residentBytes({ rss: () => 0, read: reader(4096), wordBytes: 8, littleEndian: true })).toBe(22415 * 4096);
    expect(residentBytes({ rss: () => 0, read: reader(16384), wordBytes: 8, littleEndian: true })).toBe(22415 * 16384); // a Pi 5's kernel
    // 32-bit words (armv7 boards): the same vector in 4-byte words.
    const auxv32 = Buffer.alloc(8 * 2);
    auxv32.writeUInt32LE(6, 0);
    auxv32.writeUInt32LE(4096, 4);
    expect(residentBytes({ rss: () => 0, read: (p) => (p === '/proc/self/auxv' ? auxv32 : reader(4096)(p)), wordBytes: 4, littleEndian: true })).toBe(22415 * 4096);
    // No AT_PAGESZ: 4 KiB.
    expect(residentBytes({ rss: () => 0, read: (p) => (p === '/proc/self/auxv' ? Buffer.alloc(16) : reader(4096)(p)), wordBytes: 8, littleEndian: true })).toBe(22415 * 4096);
  });

  it('is 0 when neither can be read (not Linux), never NaN', () => {
    expect(residentBytes({ rss: () => 0, read: () => { throw new Error('ENOENT'); } })).toBe(0);
    expect(residentBytes({ rss: () => 0, read: () => Buffer.from('garbage') })).toBe(0);
  });

  it('is the real figure for this process, natively and under qemu-user (where process.memoryUsage().rss is 0)', () => {
    const bytes = residentBytes();
    expect(bytes).toBeGreaterThan(10 * 1024 * 1024);
    expect(bytes).toBeLessThan(8 * 1024 ** 3);
    if (process.memoryUsage.rss() > 0) expect(Math.abs(bytes - process.memoryUsage.rss())).toBeLessThan(bytes / 2);
  });
});
