import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { controlRequest } from '../../agent/cli/control-client.js';
import { AGENT_NODE_FLAGS } from '../../agent/runtime/sandbox.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

/** The built command (test/global-setup.ts compiles dist/ before the run). */
export const FERRY_MAIN = fileURLToPath(new URL('../../dist/agent/cli/main.js', import.meta.url));

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `ferry` command as a user would (no extra Node flags); `uid`/`gid` run it as another user (the runner must be root). */
export function runFerry(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(nodeCommand(), [FERRY_MAIN, ...args], { timeout: 30_000, ...options }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

export interface AgentProcess {
  readonly proc: ChildProcess;
  readonly dataDir: string;
  /** Parsed JSON log lines so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** Resolves with the agent's status once its control socket answers; rejects if the process exits first. */
  readonly ready: Promise<Record<string, unknown>>;
  /** Sends a control request (the same channel the ferry command uses). */
  control(cmd: string, args?: Record<string, unknown>): Promise<unknown>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** A command line to run instead of `node <agent flags> main.js start --data <dir> <args>` (a unit's ExecStart), how a supervisor would. */
export interface AgentCommand {
  /** The program and its arguments, as systemd's ExecStart= gives them. */
  argv: string[];
  /** A process group of its own (the stand-in for a unit's cgroup). */
  detached?: boolean;
  /** The whole environment (a supervisor's, not the test runner's). */
  env?: NodeJS.ProcessEnv;
}

/** Starts `ferry start` as its own process (a real agent), with the flags it needs, or the command line given. */
export function startAgentProcess(dataDir: string, args: string[], command?: AgentCommand): AgentProcess {
  const [file, ...argv] = command?.argv ?? [nodeCommand(), ...AGENT_NODE_FLAGS, FERRY_MAIN, 'start', '--data', dataDir, ...args];
  const proc = spawn(file!, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: command?.detached ?? false, ...(command?.env !== undefined ? { env: command.env } : {}) });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  let buf = '';
  let onReady: (l: Record<string, unknown>) => void = () => undefined;
  let onExit: (e: Error) => void = () => undefined;
  const ready = new Promise<Record<string, unknown>>((res, rej) => {
    onReady = res;
    onExit = rej;
  });
  ready.catch(() => undefined);
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        logs.push(j);
      } catch {
        // not a log line
      }
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((res) =>
    proc.on('exit', (code, signal) => {
      onExit(new Error(`agent exited (code ${code}, signal ${signal}) before it was ready: ${stderr}`));
      res();
    }),
  );
  // Ready when the control socket answers (the `agent.ready` line is not logged below --log-level info).
  const poll = async () => {
    while (proc.exitCode === null && proc.signalCode === null) {
      try {
        onReady((await controlRequest(dataDir, 'status', {}, 2000)) as Record<string, unknown>);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  };
  void poll();
  return {
    proc,
    dataDir,
    logs,
    ready,
    control: (cmd, a = {}) => controlRequest(dataDir, cmd, a),
    async kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}
