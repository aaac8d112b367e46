/**
 * What `npm pack` gives: the built command with its type declarations and the sample apps,
 * nothing of the tests, benches, sources or source maps, and enough to run `ferry` from the
 * unpacked tarball (with the dependencies installed beside it, as `npm install` would put them).
 * `--ignore-scripts` skips `prepack` (`npm run build`) here: the test run has built dist/ already,
 * and rebuilding it under the other suites' running agents would rewrite files they are loading.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../agent/cli/control-client.js';
import { AGENT_NODE_FLAGS } from '../../agent/runtime/sandbox.js';
import { startAgentProcess } from '../helpers/agent-process.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const repo = process.cwd();
const dir = mkdtempSync(join(tmpdir(), 'ferry-pack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function npmPack(): { filename: string; files: string[] } {
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: repo, encoding: 'utf8' });
  const [r] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
  return { filename: r!.filename, files: r!.files.map((f) => f.path) };
}

describe('npm pack', () => {
  const packed = npmPack();

  it('holds the built command, its type declarations and the sample apps, and nothing that does not run', () => {
    const f = packed.files;
    for (const need of ['package.json', 'README.md', 'dist/agent/cli/main.js', 'dist/agent/cli/main.d.ts', 'dist/agent/bridge/bridge.js', 'dist/agent/bridge/bridge.d.ts', 'apps/counter.mjs']) expect(f).toContain(need);
    expect(f.filter((p) => /^(test|bench|scripts)\//.test(p))).toEqual([]);
    expect(f.filter((p) => p.endsWith('.map'))).toEqual([]);
    expect(f.filter((p) => p.endsWith('.ts') && !p.endsWith('.d.ts'))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };
    expect(f).toContain(pkg.bin.ferry);
    // A pack from a fresh clone builds dist/ first.
    expect(pkg.scripts.prepack).toBe('npm run build');
  });

  it('unpacked, with its dependencies beside it, ferry runs: --version, start --samples, a call, shutdown', async () => {
    const unpacked = join(dir, 'unpacked');
    mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', join(dir, packed.filename), '-C', unpacked]);
    const root = join(unpacked, 'package');
    symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'), 'dir');
    const main = join(root, 'dist', 'agent', 'cli', 'main.js');
    const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    expect(execFileSync(nodeCommand(), [main, '--version'], { encoding: 'utf8' })).toBe(`ferry ${version.version}\n`);

    const data = join(dir, 'data');
    const agent = startAgentProcess(data, [], { argv: [nodeCommand(), ...AGENT_NODE_FLAGS, main, 'start', '--samples', '--port', '0', '--data', data] });
    const exited = new Promise<number | null>((r) => agent.proc.on('exit', (code) => r(code)));
    try {
      await agent.ready;
      // The sample apps came from the package's own apps/ folder.
      expect(existsSync(join(root, 'apps', 'counter.mjs'))).toBe(true);
      const out = await new Promise<string>((resolve, reject) =>
        execFile(nodeCommand(), [main, 'call', 'counter', 'increment', '--data', data], (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
      expect(out).toBe('count: 1\n');
      await controlRequest(data, 'shutdown');
      expect(await exited).toBe(0);
    } finally {
      await agent.kill();
    }
  });
});
