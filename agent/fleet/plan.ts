import { FerryError } from '../../core/errors.js';
import { NAME } from '../runtime/app-definition.js';
import { DEVICE_ID_PATTERN } from '../../transports/options.js';

/**
 * A plan file (`ferry plan run <file>`): scripted moves of several instances, in order. The
 * schema (format `ferry.plan/1`) is documented in agent/fleet/DESIGN.md, "Plans"; every field is
 * checked here and a bad one is PLAN_INVALID naming it (`steps[2].to`).
 */
export interface Plan {
  format: 'ferry.plan/1';
  /** The whole plan's time, ms: a step that would start after it is skipped, a running move gets what is left. Default 600,000; 1,000..86,400,000. */
  totalTimeLimitMs: number;
  /** After a step fails: `continue` with the next (default) or `stop` (the rest are skipped). */
  onFailure: 'continue' | 'stop';
  steps: PlanStep[];
}

export interface PlanStep {
  instance: string;
  /** A paired peer's device id, or `best` (the top candidate at the time the step runs). */
  to: string;
  /** The move's downtime limit, ms. Default 300; 10..60,000. */
  downtimeLimitMs?: number;
  /** The move's pre-copy time limit, ms (bounded by what is left of the plan's). Default 120,000; 1,000..3,600,000. */
  maxTotalMs?: number;
  /** Each request's time limit, ms. Default 30,000; 100..600,000. */
  stepTimeoutMs?: number;
  /** Further attempts after an aborted move (with `best`, the next candidate if the first refused to fit). Default 1; 0..10. */
  retries: number;
  /** Keep the instance's last version here after it moved (a cheap return and a restore point). Default true. */
  keepBackup: boolean;
}

export const PLAN_FORMAT = 'ferry.plan/1';
const MAX_STEPS = 256;
const PLAN_KEYS = ['$schema', 'format', 'totalTimeLimitMs', 'onFailure', 'steps'];
const STEP_KEYS = ['instance', 'to', 'downtimeLimitMs', 'maxTotalMs', 'stepTimeoutMs', 'retries', 'keepBackup'];

function bad(field: string, expected: string, got: unknown): never {
  const shown = JSON.stringify(got);
  throw new FerryError('PLAN_INVALID', `${field} must be ${expected}, got ${shown === undefined ? 'nothing' : shown.slice(0, 80)}`, { field });
}

function map(v: unknown, field: string, keys: readonly string[]): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(field, 'an object', v);
  for (const k of Object.keys(v)) if (!keys.includes(k)) bad(`${field === '' ? '' : `${field}.`}${k}`, `one of the known fields (${keys.join(', ')})`, k);
  return v as Record<string, unknown>;
}

function int(o: Record<string, unknown>, key: string, field: string, min: number, max: number, fallback?: number): number | undefined {
  const v = Object.hasOwn(o, key) ? o[key] : undefined;
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(field, `an integer in ${min}..${max}`, v);
  return v;
}

/** Checks a plan (parsed JSON); PLAN_INVALID naming the first bad field. */
export function readPlan(value: unknown): Plan {
  const p = map(value, 'plan', PLAN_KEYS);
  if (p.format !== PLAN_FORMAT) bad('format', `"${PLAN_FORMAT}"`, p.format);
  const onFailure = p.onFailure ?? 'continue';
  if (onFailure !== 'continue' && onFailure !== 'stop') bad('onFailure', '"continue" or "stop"', onFailure);
  if (!Array.isArray(p.steps) || p.steps.length === 0 || p.steps.length > MAX_STEPS) bad('steps', `an array of 1..${MAX_STEPS} steps`, p.steps);
  const seen = new Set<string>();
  const steps = (p.steps as unknown[]).map((raw, i): PlanStep => {
    const f = `steps[${i}]`;
    const s = map(raw, f, STEP_KEYS);
    if (typeof s.instance !== 'string' || !NAME.test(s.instance)) bad(`${f}.instance`, 'an instance id (1..64 of a-z 0-9 -, starting with a letter)', s.instance);
    if (seen.has(s.instance)) bad(`${f}.instance`, 'an instance no earlier step moves', s.instance);
    seen.add(s.instance);
    if (typeof s.to !== 'string' || (s.to !== 'best' && !DEVICE_ID_PATTERN.test(s.to))) bad(`${f}.to`, 'a paired peer\'s device id or "best"', s.to);
    if (s.keepBackup !== undefined && typeof s.keepBackup !== 'boolean') bad(`${f}.keepBackup`, 'true or false', s.keepBackup);
    const downtimeLimitMs = int(s, 'downtimeLimitMs', `${f}.downtimeLimitMs`, 10, 60_000);
    const maxTotalMs = int(s, 'maxTotalMs', `${f}.maxTotalMs`, 1000, 3_600_000);
    const stepTimeoutMs = int(s, 'stepTimeoutMs', `${f}.stepTimeoutMs`, 100, 600_000);
    return {
      instance: s.instance,
      to: s.to,
      ...(downtimeLimitMs !== undefined ? { downtimeLimitMs } : {}),
      ...(maxTotalMs !== undefined ? { maxTotalMs } : {}),
      ...(stepTimeoutMs !== undefined ? { stepTimeoutMs } : {}),
      retries: int(s, 'retries', `${f}.retries`, 0, 10, 1)!,
      keepBackup: (s.keepBackup as boolean | undefined) ?? true,
    };
  });
  return { format: PLAN_FORMAT, totalTimeLimitMs: int(p, 'totalTimeLimitMs', 'totalTimeLimitMs', 1000, 86_400_000, 600_000)!, onFailure, steps };
}
