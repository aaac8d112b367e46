import { FerryError, isFerryError } from '../../core/errors.js';
import type { MigrateOptions } from '../bridge/move-options.js';
import type { MoveReport } from '../bridge/move-report.js';
import type { Candidate } from './candidates.js';
import type { Plan, PlanStep } from './plan.js';

/** What the runner needs: the choice, the moves, the backups. Lent by the fleet (index.ts). */
export interface PlanLinks {
  /** The top candidate for `instance`, not among `exclude`; FLEET_NO_CANDIDATE when none fits. */
  best(instance: string, placed: ReadonlyMap<string, number>, exclude: readonly string[]): Promise<{ best: Candidate; fitting: number }>;
  /** Starts a move (a dry run answers with its plan); refusals before it starts are thrown. */
  start(instance: string, peer: string, options: MigrateOptions): Promise<{ id: string } | MoveReport>;
  /** Waits for a started move's report. */
  finished(id: string): Promise<MoveReport>;
  /** Drops the heap left here by a moved instance; false if there was none. */
  dropBackup(instance: string): boolean;
  now?: () => number;
}

/** What became of one step. */
export interface StepResult {
  instance: string;
  to?: string;
  /** `moved`; `planned` (dry run); `failed`: every attempt aborted or was refused, the instance serves on here; `skipped`: not tried. */
  outcome: 'moved' | 'planned' | 'failed' | 'skipped';
  attempts: number;
  why?: string;
  code?: string;
  /** A failed step says what it left: the move was aborted before its decision, so the instance serves on here. */
  rolledBack?: string;
  backup?: 'kept' | 'dropped';
  downtimeMs?: number;
  totalMs?: number;
  bytesSent?: number;
  /** A dry run's figures. */
  bytesToSend?: number;
  expectedDowntimeMs?: number;
  /** With `best`: the chosen peer's expected bytes, and how many candidates fit. */
  chosen?: { bytesNeeded: number; fitting: number };
  move?: string;
}

export interface PlanReport {
  dryRun: boolean;
  totalMs: number;
  totalTimeLimitMs: number;
  moved: number;
  failed: number;
  skipped: number;
  steps: StepResult[];
}

/** The least pre-copy time a move is started with; with less left of the plan the step is skipped, ms. */
const MIN_MOVE_MS = 1000;

/**
 * Runs a plan's steps in order (agent/fleet/DESIGN.md, "Plans"): each a live move, retried as the
 * step says; a failed step changes nothing but itself (a move aborted before its decision leaves
 * the instance running here) and the report says so.
 */
export async function runPlan(plan: Plan, dryRun: boolean, l: PlanLinks): Promise<PlanReport> {
  const now = l.now ?? Date.now;
  const t0 = now();
  const placed = new Map<string, number>();
  const steps: StepResult[] = [];
  let stop: string | undefined;
  for (const step of plan.steps) {
    const left = plan.totalTimeLimitMs - (now() - t0);
    if (stop !== undefined || left < MIN_MOVE_MS) {
      steps.push({ instance: step.instance, outcome: 'skipped', attempts: 0, why: stop ?? `out of time: ${Math.max(0, Math.round(left))} ms of the plan's ${plan.totalTimeLimitMs} left` });
      continue;
    }
    const r = await runStep(step, dryRun, left, placed, l);
    steps.push(r);
    if (r.outcome === 'failed' && plan.onFailure === 'stop') stop = `not tried: step ${steps.length} (${step.instance}) failed and the plan says onFailure: stop`;
  }
  return {
    dryRun,
    totalMs: Math.round(now() - t0),
    totalTimeLimitMs: plan.totalTimeLimitMs,
    moved: steps.filter((s) => s.outcome === 'moved').length,
    failed: steps.filter((s) => s.outcome === 'failed').length,
    skipped: steps.filter((s) => s.outcome === 'skipped').length,
    steps,
  };
}

async function runStep(step: PlanStep, dryRun: boolean, leftMs: number, placed: Map<string, number>, l: PlanLinks): Promise<StepResult> {
  const options: MigrateOptions = {
    ...(step.downtimeLimitMs !== undefined ? { downtimeLimitMs: step.downtimeLimitMs } : {}),
    ...(step.stepTimeoutMs !== undefined ? { stepTimeoutMs: step.stepTimeoutMs } : {}),
    maxTotalMs: Math.max(MIN_MOVE_MS, Math.min(step.maxTotalMs ?? 120_000, Math.floor(leftMs))),
    ...(dryRun ? { dryRun: true } : {}),
  };
  const refused: string[] = [];
  let last: { why: string; code: string; to?: string } = { why: '', code: 'MIGRATE_ABORTED' };
  let attempts = 0;
  for (let attempt = 0; attempt <= step.retries; attempt++) {
    attempts++;
    let to = step.to;
    let chosen: StepResult['chosen'];
    try {
      if (step.to === 'best') {
        const c = await l.best(step.instance, placed, refused);
        to = c.best.peer;
        chosen = { bytesNeeded: c.best.bytesNeeded, fitting: c.fitting };
      }
      const started = await l.start(step.instance, to, options);
      const report = 'outcome' in started ? started : await l.finished(started.id);
      if (report.outcome === 'planned') {
        return { instance: step.instance, to, outcome: 'planned', attempts, bytesToSend: report.bytesMissing, expectedDowntimeMs: report.expectedDowntimeMs, ...(chosen ? { chosen } : {}) };
      }
      if (report.outcome === 'moved') {
        placed.set(to, (placed.get(to) ?? 0) + 1);
        const backup = step.keepBackup ? 'kept' : l.dropBackup(step.instance) ? 'dropped' : 'kept';
        return { instance: step.instance, to, outcome: 'moved', attempts, backup, downtimeMs: report.downtimeMs, totalMs: report.totalMs, bytesSent: report.bytesSent, move: report.id, ...(chosen ? { chosen } : {}) };
      }
      last = { why: report.message ?? 'the move was aborted', code: report.code ?? 'MIGRATE_ABORTED', to };
    } catch (e) {
      if (!isFerryError(e)) throw e;
      last = { why: e.message, code: e.code, to };
      // A peer that refused to fit is not asked again within this step; with nobody left, stop trying.
      if (e.code === 'MIGRATE_NO_FIT') refused.push(to);
      if (e.code === 'FLEET_NO_CANDIDATE' || (e.code !== 'MIGRATE_NO_FIT' && e.code !== 'MIGRATE_ABORTED' && e.code !== 'MIGRATE_NO_CONVERGENCE' && e.code !== 'MIGRATE_DOWNTIME_EXCEEDED' && e.code !== 'BUS_TIMEOUT')) break;
      if (step.to !== 'best' && e.code === 'MIGRATE_NO_FIT') break;
    }
  }
  return {
    instance: step.instance,
    ...(last.to !== undefined ? { to: last.to } : {}),
    outcome: 'failed',
    attempts,
    why: last.why,
    code: last.code,
    rolledBack: dryRun ? 'nothing moved (dry run)' : `no move was decided: ${step.instance} serves on here, the destination discarded what it received`,
  };
}

/** A plan that moves every running instance off this device (`ferry evacuate`). */
export function evacuationPlan(instances: ReadonlyArray<{ instance: string; heapBytes: number }>, to: string | undefined, timeLimitMs: number, downtimeLimitMs?: number): Plan {
  if (instances.length === 0) throw new FerryError('FLEET_NO_CANDIDATE', 'no instance runs here: nothing to evacuate', { field: 'instances' });
  // Smallest first: within the time limit, the most instances get away (shortest job first).
  const order = [...instances].sort((a, b) => a.heapBytes - b.heapBytes || (a.instance < b.instance ? -1 : 1));
  return {
    format: 'ferry.plan/1',
    totalTimeLimitMs: timeLimitMs,
    onFailure: 'continue',
    steps: order.map((i) => ({ instance: i.instance, to: to ?? 'best', retries: 1, keepBackup: true, ...(downtimeLimitMs !== undefined ? { downtimeLimitMs } : {}) })),
  };
}
