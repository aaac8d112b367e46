import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { FerryError } from '../../core/errors.js';
import { EVACUATE_DEFAULT_MS } from '../fleet/control.js';
import { readPlan, type Candidate, type PlanReport } from '../fleet/index.js';
import { agent, need, noMore, type Command } from './command.js';
import { controlRequest } from './control-client.js';

/** The control request of a plan waits this much beyond the plan's own time limit, ms. */
const PLAN_MARGIN_MS = 60_000;

const size = (n: number) => (n < 10 * 1024 ? `${n} B` : n < 10 * 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);

/** `ferry peers --for` for people: one line a candidate, best first. */
export function candidateLines(r: { instance: string; heapBytes: number; candidates: Candidate[] }): string {
  const head = `${r.instance}: heap ${size(r.heapBytes)}; candidates, best first:`;
  const rows = r.candidates.map((c) => (c.fits ? `  ${c.rank}. ${c.peer} (${c.profile})  needs ${size(c.bytesNeeded)}  ~${c.transferMs} ms  ${c.freePlaces} free  summary ${c.summary}  — ${c.why}` : `  -  ${c.peer} (${c.profile})  does not fit: ${c.why}  summary ${c.summary}`));
  return [head, ...(rows.length ? rows : ['  (no paired peers: ferry pair <peer>)'])].join('\n');
}

/** A plan's or an evacuation's report for people. */
export function planLines(r: PlanReport): string {
  const rows = r.steps.map((s) => {
    const where = s.to ? ` → ${s.to}` : '';
    if (s.outcome === 'moved') return `  moved    ${s.instance}${where}  downtime ${s.downtimeMs} ms, ${size(s.bytesSent ?? 0)} sent, backup ${s.backup}`;
    if (s.outcome === 'planned') return `  planned  ${s.instance}${where}  ${size(s.bytesToSend ?? 0)} to send, expected downtime ${s.expectedDowntimeMs} ms`;
    if (s.outcome === 'failed') return `  FAILED   ${s.instance}${where}  ${s.code}: ${s.why} — ${s.rolledBack}`;
    return `  skipped  ${s.instance}  ${s.why}`;
  });
  return [`${r.dryRun ? 'dry run: ' : ''}${r.moved} moved, ${r.failed} failed, ${r.skipped} skipped in ${r.totalMs} ms (limit ${r.totalTimeLimitMs} ms)`, ...rows].join('\n');
}

/** Exit status of a plan: 0 when every step moved (or was planned), 1 otherwise (the report says which). */
function planResult(r: PlanReport, json: boolean): { result: unknown } {
  if (r.failed > 0 || r.skipped > 0) {
    process.exitCode = 1;
  }
  return { result: json ? r : planLines(r) };
}

export const FLEET_COMMANDS: Record<string, Command> = {
  evacuate: {
    usage: 'evacuate [--to <peer>] [--dry-run] [--time-limit <ms>] [--downtime-limit <ms>]',
    summary: 'move every running instance off this device (before a reboot or an update), each to its best peer, smallest first, within the time limit; a report of what moved and what could not',
    flags: ['to', 'dry-run', 'time-limit', 'downtime-limit'],
    async run(ctx, w, f, _cfg, d) {
      noMore(w, 0, this.usage);
      const timeLimitMs = f.int('time-limit', 1000, 86_400_000) ?? EVACUATE_DEFAULT_MS;
      const limit = f.int('downtime-limit', 10, 60_000);
      const to = f.str('to');
      const r = (await controlRequest(d, 'evacuate', { ...(to !== undefined ? { to } : {}), dryRun: f.bool('dry-run'), timeLimitMs, ...(limit !== undefined ? { downtimeLimitMs: limit } : {}) }, timeLimitMs + PLAN_MARGIN_MS)) as PlanReport;
      return planResult(r, ctx.parsed.flags.has('json'));
    },
  },
  plan: {
    usage: 'plan run <file> [--dry-run] | plan check <file>',
    summary: 'run a plan file (ferry.plan/1: steps of moves, each to a peer or "best", with limits, retries and backups); check validates it only',
    flags: ['dry-run'],
    async run(ctx, w, f, _cfg, d) {
      const verb = need(w, 0, 'run|check', this.usage);
      if (verb !== 'run' && verb !== 'check') throw new FerryError('CLI_USAGE', `unknown plan action ${JSON.stringify(verb)}; usage: ferry ${this.usage}`, { field: 'action' });
      const file = resolve(need(w, 1, 'file', this.usage));
      noMore(w, 2, this.usage);
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new FerryError('PLAN_INVALID', `cannot read the plan file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { field: 'file' });
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new FerryError('PLAN_INVALID', `the plan file ${file} is not JSON: ${(e as Error).message}`, { field: 'file' });
      }
      const plan = readPlan(value); // the agent checks it again; a bad file is refused here without one
      if (verb === 'check') return { result: { valid: true, steps: plan.steps.length, totalTimeLimitMs: plan.totalTimeLimitMs } };
      const r = (await controlRequest(d, 'plan-run', { plan: value, dryRun: f.bool('dry-run') }, plan.totalTimeLimitMs + PLAN_MARGIN_MS)) as PlanReport;
      return planResult(r, ctx.parsed.flags.has('json'));
    },
  },
};

/** `ferry peers --for <instance>`: the candidates for one instance, else the paired peers. */
export async function peersFor(instance: string, refresh: boolean, json: boolean, d: string): Promise<{ result: unknown }> {
  const r = (await agent(d, 'peers-for', { instance, refresh })).result as { instance: string; heapBytes: number; candidates: Candidate[] };
  return { result: json ? r : candidateLines(r) };
}
