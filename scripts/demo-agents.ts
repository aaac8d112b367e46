/**
 * The demo's moving parts (scripts/demo-handoff.ts): building dist/ when a source is newer than
 * it, and real agents, each a `ferry start` process of the built command on its own data directory.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { controlRequest } from '../agent/cli/control-client.js';
import { AGENT_NODE_FLAGS } from '../agent/runtime/sandbox.js';

export const ROOT = join(import.meta.dirname, '..');
export const FERRY_MAIN = join(ROOT, 'dist', 'agent', 'cli', 'main.js');
/** What `npm run build` compiles (tsconfig.build.json's include). */
const SOURCES = ['core', 'hw-profiles', 'store', 'agent', 'transports'];

/** True when dist/ is missing or older than a source file or a tsconfig. */
export function distIsStale(): boolean {
  if (!existsSync(FERRY_MAIN)) return true;
  const built = statSync(FERRY_MAIN).mtimeMs;
  const files = ['tsconfig.json', 'tsconfig.build.json'].map((f) => join(ROOT, f));
  for (const dir of SOURCES) {
    for (const f of readdirSync(join(ROOT, dir), { recursive: true }) as string[]) if (f.endsWith('.ts')) files.push(join(ROOT, dir, f));
  }
  return files.some((f) => statSync(f).mtimeMs > built);
}

/** `npm run build`, without needing npm on the PATH (as test/global-setup.ts does it). */
export function build(): void {
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'mark-executable.mjs')], { stdio: 'inherit' });
}

/** One agent process; its output is kept (the last lines) to explain a failure. */
export class DemoAgent {
  private readonly proc: ChildProcess;
  private readonly tail: string[] = [];
  private readonly exited: Promise<void>;

  constructor(
    readonly id: string,
    readonly profile: string,
    readonly dataDir: string,
    args: string[],
  ) {
    this.proc = spawn(process.execPath, [...AGENT_NODE_FLAGS, FERRY_MAIN, 'start', '--data', dataDir, '--device-id', id, '--profile', profile, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: dataDir,
    });
    for (const s of [this.proc.stdout!, this.proc.stderr!]) {
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        this.tail.push(...d.split('\n').filter((l) => l !== ''));
        if (this.tail.length > 20) this.tail.splice(0, this.tail.length - 20);
      });
    }
    this.exited = new Promise((resolve) => this.proc.once('exit', () => resolve()));
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Waits until the control socket answers; its status. */
  async ready(timeoutMs = 60_000): Promise<{ broker: string }> {
    const deadline = Date.now() + timeoutMs;
    while (this.running && Date.now() < deadline) {
      try {
        return (await controlRequest(this.dataDir, 'status', {}, 2000)) as { broker: string };
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error(`the ${this.profile} agent did not start:\n${this.output()}`);
  }

  control<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    return controlRequest(this.dataDir, cmd, args, timeoutMs) as Promise<T>;
  }

  output(): string {
    return this.tail.map((l) => `    ${l}`).join('\n');
  }

  /** SIGTERM (the agent checkpoints and stops), SIGKILL if it has not gone within 5 s. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.proc.kill('SIGTERM');
    const late = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(late);
  }
}
