import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
// The ARM64 tree script's pieces (scripts/arm64/): plain .mjs, no types.
// @ts-expect-error untyped module
import { isArm64Elf } from '../../scripts/arm64/native-build.mjs';
// @ts-expect-error untyped module
import { syncFiles } from '../../scripts/arm64/tree-copy.mjs';
// @ts-expect-error untyped module
import { writeWrappers } from '../../scripts/arm64/wrappers.mjs';
// @ts-expect-error untyped module
import { readReport } from '../../scripts/arm64/vitest-report.mjs';

const dir = mkdtempSync(join(tmpdir(), 'ferry-arm64-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the ARM64 tree script', () => {
  it('copies only changed files, keeps modes, removes files gone from the checkout, and hashes content', () => {
    const src = join(dir, 'src');
    const dest = join(dir, 'dest');
    mkdirSync(join(src, 'a'), { recursive: true });
    writeFileSync(join(src, 'a', 'one.txt'), 'one');
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\n');
    chmodSync(join(src, 'run.sh'), 0o755);
    const first = syncFiles(src, dest, ['a/one.txt', 'run.sh']);
    expect(first.written).toBe(2);
    expect(statSync(join(dest, 'run.sh')).mode & 0o777).toBe(0o755);
    const again = syncFiles(src, dest, ['a/one.txt', 'run.sh'], ['a/one.txt', 'run.sh']);
    expect(again).toEqual({ hash: first.hash, written: 0, removed: 0 });
    writeFileSync(join(src, 'a', 'one.txt'), 'ONE');
    const changed = syncFiles(src, dest, ['a/one.txt'], ['a/one.txt', 'run.sh']);
    expect(changed.written).toBe(1);
    expect(changed.removed).toBe(1);
    expect(changed.hash).not.toBe(first.hash);
    expect(readFileSync(join(dest, 'a', 'one.txt'), 'utf8')).toBe('ONE');
    expect(existsSync(join(dest, 'run.sh'))).toBe(false);
  });

  it('tells an arm64 ELF from a host one', () => {
    const elf = (machine: number) => {
      const b = Buffer.alloc(64);
      b.write('\x7fELF', 0, 'latin1');
      b.writeUInt16LE(machine, 18);
      const f = join(dir, `elf-${machine}`);
      writeFileSync(f, b);
      return f;
    };
    expect(isArm64Elf(elf(183))).toBe(true);
    expect(isArm64Elf(elf(62))).toBe(false); // x86-64
    expect(isArm64Elf(process.execPath)).toBe(process.arch === 'arm64');
  });

  it('writes bin/node, which sets FERRY_NODE to itself and runs the emulator with -L, and bin/ferry on it', () => {
    const tree = join(dir, 'wrap');
    // A stand-in emulator that prints how it was called.
    const fake = join(dir, 'fake-qemu');
    writeFileSync(fake, '#!/bin/sh\necho "FERRY_NODE=$FERRY_NODE"; echo "PATH1=${PATH%%:*}"; echo "ARGS=$*"\n');
    chmodSync(fake, 0o755);
    const { node, ferry } = writeWrappers(tree, { qemu: fake, sysroot: '/usr/aarch64-linux-gnu', node: '/x/node/bin/node', tree: '/x/ferry' });
    const out = spawnSync(node, ['-e', '1'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } }).stdout;
    expect(out).toContain(`FERRY_NODE=${node}`);
    expect(out).toContain(`PATH1=${join(tree, 'bin')}`);
    expect(out).toContain('ARGS=-L /usr/aarch64-linux-gnu -cpu cortex-a72 /x/node/bin/node -e 1');
    const viaFerry = spawnSync(ferry, ['status'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } }).stdout;
    expect(viaFerry).toContain('/x/node/bin/node --experimental-vm-modules --disable-warning=ExperimentalWarning /x/ferry/dist/agent/cli/main.js status');
  });

  it("reads vitest's JSON report: durations, counts, and every test that did not pass, by name", () => {
    const report = join(dir, 'report.json');
    writeFileSync(report, JSON.stringify({
      testResults: [
        { name: join(dir, 'test/a.test.ts'), startTime: 1000, endTime: 3500, status: 'failed', assertionResults: [
          { fullName: 'a works', title: 'works', status: 'passed' },
          { fullName: 'a fails', title: 'fails', status: 'failed', failureMessages: ['AssertionError: expected 1 to be 2\n at ...'] },
          { fullName: 'a skipped', title: 'skipped', status: 'skipped' },
        ] },
        { name: join(dir, 'test/b.test.ts'), startTime: 0, endTime: 10, status: 'failed', message: 'Cannot find module x\nstack', assertionResults: [] },
      ],
    }));
    const r = readReport(report, dir);
    expect(r.get('test/a.test.ts')).toMatchObject({ seconds: 2.5, passed: 1, failed: 1, skipped: 1 });
    expect(r.get('test/a.test.ts').notPassed.map((t: { title: string }) => t.title)).toEqual(['a fails', 'a skipped']);
    expect(r.get('test/b.test.ts')).toMatchObject({ failed: 1, notPassed: [{ title: '(the file itself)', message: 'Cannot find module x' }] });
  });
});
