/**
 * What a user does with the packed tarball (README, "Running on a Raspberry Pi"): `npm install -g`
 * it, here into a temporary prefix, then run the installed `ferry`: --version, start --samples, a
 * call, shutdown. Nothing is linked from this checkout; npm resolves and installs the dependencies
 * itself, running their install scripts.
 *
 * better-sqlite3's install script (`prebuild-install || node-gyp rebuild`) downloads a prebuilt
 * binary from GitHub, or builds one from source when it cannot: about 2 to 2.5 minutes on 2 cores.
 * In place of GitHub, the test hands prebuild-install a local prebuild made of the binary `npm ci`
 * put in this checkout's node_modules (same package version, same Node ABI), through its
 * documented `npm_config_<package>_local_prebuilds` folder; npm takes the registry tarballs from
 * its cache when it has them (`--prefer-offline`). The install then takes about 10 s. If npm
 * resolves another better-sqlite3 version than this checkout's (a newer release within the
 * range), the local prebuild does not match, prebuild-install falls back to its download, and the
 * script to the build from source: still a real install, only slower, hence the long timeout.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startAgentProcess } from '../helpers/agent-process.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const repo = process.cwd();
const dir = mkdtempSync(join(tmpdir(), 'ferry-install-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Up to a build of better-sqlite3 from source on a slow machine, plus the run. */
const INSTALL_TIMEOUT_MS = 300_000;

/**
 * The environment of a user's shell: this Node on the PATH (the installed `ferry` starts with
 * `#!/usr/bin/env node`), and none of the `npm_*` variables `npm test` sets for its scripts (they
 * name this checkout as the project and /usr as the prefix), except where npm's cache and
 * configuration are.
 */
function userEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig', 'npm_config_globalconfig', 'npm_config_cafile']);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) || keep.has(k.toLowerCase())) env[k] = v;
  env.PATH = [dirname(nodeCommand()), process.env.PATH ?? ''].join(delimiter);
  return { ...env, ...extra };
}

/**
 * A prebuild-install archive (`build/Release/better_sqlite3.node`, named as prebuild-install looks
 * for it) of the binary in this checkout's node_modules, in `folder`; false if there is none.
 */
function localPrebuild(folder: string): boolean {
  const pkgDir = join(repo, 'node_modules', 'better-sqlite3');
  if (!existsSync(join(pkgDir, 'build', 'Release', 'better_sqlite3.node'))) return false;
  const { version } = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  // prebuild-install's name: {name}-v{version}-{runtime}-v{abi}-{platform}{libc}-{arch}.tar.gz (libc empty for glibc).
  const libc = process.platform === 'linux' && !(process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime ? 'musl' : '';
  mkdirSync(folder, { recursive: true });
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}${libc}-${process.arch}.tar.gz`;
  execFileSync('tar', ['-czf', join(folder, name), '-C', pkgDir, 'build/Release/better_sqlite3.node']);
  return true;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeout = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

describe('npm install -g of the packed tarball', () => {
  it(
    'installs into a fresh prefix, and the installed ferry runs: --version, start --samples, a call, shutdown',
    async () => {
      // --ignore-scripts: the test run has built dist/ already (see package.test.ts).
      const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: repo, encoding: 'utf8' })) as Array<{ filename: string }>;
      const tarball = join(dir, packed[0]!.filename);
      const prefix = join(dir, 'prefix');
      const prebuilds = join(dir, 'prebuilds');
      const env = userEnv(localPrebuild(prebuilds) ? { npm_config_better_sqlite3_local_prebuilds: prebuilds } : {});

      const t0 = Date.now();
      const install = await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], env, INSTALL_TIMEOUT_MS - 60_000);
      const installMs = Date.now() - t0;
      expect(install.code, `npm install -g failed after ${installMs} ms:\n${install.stdout}\n${install.stderr}`).toBe(0);
      // npm links the command into <prefix>/bin (on Windows, <prefix> itself).
      const ferry = join(prefix, 'bin', 'ferry');
      expect(existsSync(ferry)).toBe(true);
      // Installed, not linked to this checkout: its modules are its own.
      const installed = join(prefix, 'lib', 'node_modules', 'ferry');
      expect(existsSync(join(installed, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'))).toBe(true);

      const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string };
      expect((await run(ferry, ['--version'], env)).stdout).toBe(`ferry ${version}\n`);

      const data = join(dir, 'data');
      // The installed command, run through its #! line: one process.
      const agent = startAgentProcess(data, [], { argv: [ferry, 'start', '--samples', '--port', '0', '--data', data], env });
      const exited = new Promise<number | null>((r) => agent.proc.on('exit', (code) => r(code)));
      try {
        expect((await agent.ready).pid).toBe(agent.proc.pid);
        const call = await run(ferry, ['call', 'counter', 'increment', '--data', data], env);
        expect(call).toMatchObject({ code: 0, stdout: 'count: 1\n' });
        expect(await run(ferry, ['shutdown', '--data', data], env)).toMatchObject({ code: 0, stdout: 'stopping: true\n' });
        expect(await exited).toBe(0);
      } finally {
        await agent.kill();
      }
    },
    INSTALL_TIMEOUT_MS,
  );
});
