import { FerryError, type ErrorCode } from '../../core/errors.js';
import type { MoveProgress, MoveReport } from '../bridge/move-report.js';
import type { MoveWatch } from '../bridge/migrations.js';
import type { Candidate } from '../fleet/index.js';
import { agent, need, noMore, type Command } from './command.js';
import { controlRequest } from './control-client.js';

/** Longest wait for one `migrate-watch` answer (the agent holds each at most 5 s), ms. */
const WATCH_TIMEOUT_MS = 20_000;

const kib = (n: number) => (n < 10 * 1024 ? `${n} B` : n < 10 * 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);

/** One line of live progress at a terminal: phase, bytes sent of total, round, dirty rate, expected downtime. */
export function progressLine(p: MoveProgress): string {
  const total = Math.max(p.bytesMissing, p.bytesSent);
  return `${p.phase.padEnd(8)} sent ${kib(p.bytesSent)} of ${kib(total)}  round ${p.round}  dirty ${kib(p.dirtyRateBps)}/s  link ${kib(p.bandwidthBps)}/s  expected downtime ${p.expectedDowntimeMs} ms`;
}

/** The end of a move, for people. */
export function summary(r: MoveReport): Record<string, unknown> {
  return {
    move: r.id,
    instance: r.instance,
    outcome: r.outcome,
    from: r.from,
    to: r.to,
    path: r.path,
    ...(r.outcome === 'planned'
      ? { bytesToSend: r.bytesMissing, heapBytes: r.heapBytes, expectedDowntimeMs: r.expectedDowntimeMs, downtimeLimitMs: r.downtimeLimitMs }
      : { totalMs: r.totalMs, downtimeMs: r.downtimeMs, downtimeLimitMs: r.downtimeLimitMs, bytesSent: r.bytesSent, heapBytes: r.heapBytes, rounds: r.rounds, linesSent: r.linesSent, linesReused: r.linesReused, leasesHandedOver: r.leasesHandedOver, codeSent: r.codeSent }),
    leasePlan: r.leasePlan.map((p) => ({ type: p.type, action: p.action, provider: p.provider })),
    ...(r.message ? { note: r.message } : {}),
  };
}

export const MIGRATE_COMMANDS: Record<string, Command> = {
  migrate: {
    usage: 'migrate <instance> (<peer> | --best) [--downtime-limit <ms>] [--step-timeout <ms>] [--dry-run] | migrate --cancel <instance>',
    summary: 'hand a running instance to a paired peer, live (heap, mailbox, timers, leases); --best picks the peer that needs the fewest bytes (ferry peers --for <instance>); --dry-run plans only',
    flags: ['downtime-limit', 'step-timeout', 'dry-run', 'cancel', 'best'],
    async run(ctx, w, f, _cfg, d) {
      const cancel = f.str('cancel');
      if (cancel !== undefined) {
        noMore(w, 0, this.usage);
        return agent(d, 'migrate-cancel', { instance: cancel });
      }
      const instance = need(w, 0, 'instance', this.usage);
      const best = f.bool('best');
      if (best && w[1] !== undefined) throw new FerryError('CLI_USAGE', `give a <peer> or --best, not both; usage: ferry ${this.usage}`, { field: 'peer' });
      const peer = best ? undefined : need(w, 1, 'peer', this.usage);
      noMore(w, best ? 1 : 2, this.usage);
      const limit = f.int('downtime-limit', 10, 60_000);
      // How long one step (a request to the peer) may take before the move aborts: short on a LAN.
      const step = f.int('step-timeout', 100, 600_000);
      const options = { ...(limit !== undefined ? { downtimeLimitMs: limit } : {}), ...(step !== undefined ? { stepTimeoutMs: step } : {}), ...(f.bool('dry-run') ? { dryRun: true } : {}) };
      const json = ctx.parsed.flags.has('json');
      let started: { id: string } | MoveReport;
      let chosen: Record<string, unknown> | undefined;
      if (best) {
        const b = (await controlRequest(d, 'migrate-best', { instance, options }, 120_000)) as { chosen: Candidate; fitting: number; started: { id: string } | MoveReport };
        started = b.started;
        chosen = { peer: b.chosen.peer, bytesNeeded: b.chosen.bytesNeeded, linesHeld: b.chosen.linesHeld, summary: b.chosen.summary, candidatesFitting: b.fitting };
        if (json) process.stdout.write(`${JSON.stringify({ chosen })}\n`);
        else if (process.stderr.isTTY) process.stderr.write(`best peer: ${b.chosen.peer} (needs ${kib(b.chosen.bytesNeeded)}; ${b.fitting} of the paired peers fit)\n`);
      } else started = (await controlRequest(d, 'migrate', { instance, peer, options }, 120_000)) as { id: string } | MoveReport;
      if ('outcome' in started) return { result: json ? started : { ...(chosen ? { chosen } : {}), ...summary(started) } };
      const live = !json && process.stderr.isTTY;
      let after = 0;
      let report: MoveReport | undefined;
      while (!report) {
        const w2 = (await controlRequest(d, 'migrate-watch', { id: started.id, after }, WATCH_TIMEOUT_MS)) as MoveWatch;
        for (const e of w2.events) {
          after = e.seq;
          if (json) process.stdout.write(`${JSON.stringify({ progress: e })}\n`);
          else if (live) process.stderr.write(`\r\x1b[2K${progressLine(e)}`);
        }
        report = w2.done;
      }
      if (live) process.stderr.write('\n');
      if (report.outcome === 'aborted') {
        if (json) process.stdout.write(`${JSON.stringify({ report })}\n`);
        else ctx.say(Object.entries(summary(report)).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n'));
        const code = (report.code ?? 'MIGRATE_ABORTED') as ErrorCode;
        throw new FerryError(code, `${report.message ?? 'the move was aborted'}; ${instance} serves on here`, { field: code === 'MIGRATE_NO_CONVERGENCE' || code === 'MIGRATE_DOWNTIME_EXCEEDED' ? 'downtimeLimitMs' : 'move' });
      }
      return { result: json ? { report } : { ...(chosen ? { chosen: chosen.peer } : {}), ...summary(report) } };
    },
  },
  migrations: {
    usage: 'migrations',
    summary: 'moves under way and recent ones, with their downtime, bytes and outcome',
    flags: [],
    async run(ctx, w, _f, _cfg, d) {
      noMore(w, 0, this.usage);
      const l = (await controlRequest(d, 'migrations')) as { active: Array<MoveProgress & { id: string; instance: string; to: string }>; recent: MoveReport[] };
      if (ctx.parsed.flags.has('json')) return { result: l };
      return {
        result: {
          active: l.active.map((a) => ({ move: a.id, instance: a.instance, to: a.to, phase: a.phase, round: a.round, bytesSent: a.bytesSent, expectedDowntimeMs: a.expectedDowntimeMs })),
          recent: l.recent.map((r) => ({ startedAt: r.startedAt, instance: r.instance, to: r.to, outcome: r.code ?? r.outcome, downtimeMs: r.downtimeMs, limitMs: r.downtimeLimitMs, bytesSent: r.bytesSent, rounds: r.rounds, totalMs: r.totalMs })),
        },
      };
    },
  },
};

