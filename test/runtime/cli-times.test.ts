/**
 * Times in the ferry command's output are one thing everywhere (agent/runtime/DESIGN.md, "The
 * control channel"): a point in time is an ISO 8601 UTC string (`*At`, `ts`, `lastSeen`,
 * `brokerDownSince`), a duration a number of ms in a field named `*Ms`. This walks the JSON output
 * of every listing command of a real agent (with an app holding a lease and a pairing attempt
 * pending, so every kind of time is there) and refuses epoch milliseconds anywhere.
 */
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../agent/cli/control-client.js';
import { FERRY_MAIN, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { Temp } from '../heap/graph.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const temp = new Temp();

function ferry(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(nodeCommand(), [FERRY_MAIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A key that names a point in time. */
const TIME_KEY = /(At|Since)$|^(ts|lastSeen)$/;
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
/** A number that reads as ms since the epoch between 2001 and 2103. */
const epochMsLike = (v: unknown) => typeof v === 'number' && v >= 1e12 && v < 4.2e12;
/**
 * Numbers that are not times though they may be that large: sizes, durations, and a service
 * description's `epoch`, an ordering counter (PROTOCOL.md §S.2; a provider with no epoch file
 * seeds it from its clock, but it is compared, never read as a date).
 */
const NOT_A_TIME = /(Bytes|Ms)$|^epoch$/;

/** Every problem with the times in `v`, and the time keys seen (`apps.installedAt`, ...). */
function walk(v: unknown, path: string, problems: string[], seen: Set<string>): void {
  if (Array.isArray(v)) {
    v.forEach((x) => walk(x, `${path}[]`, problems, seen));
    return;
  }
  if (v === null || typeof v !== 'object') return;
  for (const [k, x] of Object.entries(v)) {
    const p = `${path}.${k}`;
    if (TIME_KEY.test(k)) {
      seen.add(p);
      if (!(x === null || (typeof x === 'string' && ISO_UTC.test(x)))) problems.push(`${p} = ${JSON.stringify(x)} is not an ISO 8601 UTC time`);
    } else if (/Ms$/.test(k) && typeof x !== 'number') problems.push(`${p} = ${JSON.stringify(x)}: a *Ms field is a number of ms`);
    else if (epochMsLike(x) && !NOT_A_TIME.test(k)) problems.push(`${p} = ${String(x)} looks like epoch ms`);
    walk(x, p, problems, seen);
  }
}

describe('times in the ferry command output', () => {
  let agent: AgentProcess;
  let data: string;
  const d = () => ['--data', data];
  beforeAll(async () => {
    data = temp.dir('times');
    agent = startAgentProcess(data, ['--port', '0', '--samples']);
    await agent.ready;
    // A pairing attempt with a device that is not there: it waits (pending) until cancelled.
    void controlRequest(data, 'pair', { peer: 'ghost-device' }, 60_000).catch(() => undefined);
    const end = Date.now() + 10_000;
    while (((await agent.control('peers', { check: false })) as { pending: unknown[] }).pending.length === 0) {
      if (Date.now() > end) throw new Error('the pairing attempt never showed as pending');
      await new Promise((r) => setTimeout(r, 25));
    }
    await agent.control('call', { instance: 'counter', handler: 'increment', message: null });
  });
  afterAll(async () => {
    await agent.control('pair-cancel', { peer: 'ghost-device' }).catch(() => undefined);
    await agent.kill('SIGTERM');
    temp.cleanup();
  });

  it('the JSON of every listing command has ISO 8601 UTC times and no epoch milliseconds', async () => {
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const cmd of [['status'], ['profiles'], ['apps'], ['checkpoints'], ['services'], ['leases'], ['peers', '--no-check']]) {
      const r = await ferry([...cmd, '--json', ...d()]);
      expect(r.code, `${cmd.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
      walk(JSON.parse(r.stdout), cmd[0]!, problems, seen);
    }
    // `logs --json` is JSON Lines, one object per line.
    const logs = await ferry(['logs', '--json', ...d()]);
    for (const line of logs.stdout.trim().split('\n')) walk(JSON.parse(line), 'logs', problems, seen);
    expect(problems).toEqual([]);
    // Each kind of time was there to be checked.
    for (const key of ['apps.apps[].installedAt', 'checkpoints[].createdAt', 'leases[].expiresAt', 'peers.pending[].startedAt', 'peers.pending[].expiresAt', 'logs.ts']) expect(seen).toContain(key);
  });

  it('the human output shows the same ISO times, and no epoch milliseconds', async () => {
    for (const cmd of [['status'], ['apps'], ['checkpoints'], ['services'], ['leases'], ['peers', '--no-check'], ['logs']]) {
      const r = await ferry([...cmd, ...d()]);
      expect(r.code).toBe(0);
      // 2020..2033 in ms since the epoch: 13 digits starting 1[5-9].
      expect(r.stdout, cmd.join(' ')).not.toMatch(/(?<![\d.])1[5-9]\d{11}(?![\d.])/);
    }
    expect((await ferry(['apps', ...d()])).stdout).toMatch(/^ {2}counter +1\.0\.0 +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/m);
    expect((await ferry(['leases', ...d()])).stdout).toMatch(/^sensor-log +sensor .+ \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/m);
  });
});
