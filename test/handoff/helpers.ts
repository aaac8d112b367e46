/**
 * Handoff tests: `ferry migrate --json` (JSON lines: progress events, then the report or an
 * error) read back as values, and the device helpers of the bridge's tests.
 */
import { expect } from 'vitest';
import type { MoveProgress, MoveReport } from '../../agent/bridge/move-report.js';
import type { Device } from '../bridge/helpers.js';

export interface Migrated {
  code: number;
  events: MoveProgress[];
  report: MoveReport | undefined;
  error: { code: string; message: string; field?: string } | undefined;
  stderr: string;
}

/** Runs `ferry migrate <instance> <peer> --json [args]` on `from` and parses every line it printed. */
export async function migrate(from: Device, instance: string, peer: string, args: string[] = []): Promise<Migrated> {
  const r = await from.cli(['migrate', instance, peer, ...args, '--json']);
  const out: Migrated = { code: r.code, events: [], report: undefined, error: undefined, stderr: r.stderr };
  for (const line of r.stdout.split('\n').filter((l) => l.trim() !== '')) {
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new Error(`ferry migrate printed a line that is not JSON: ${line}\n${r.stdout}${r.stderr}`);
    }
    if (v.progress) out.events.push(v.progress as MoveProgress);
    else if (v.report) out.report = v.report as MoveReport;
    else if (v.error) out.error = v.error as Migrated['error'];
    else if (v.outcome) out.report = v as unknown as MoveReport; // a dry run answers with its plan
  }
  return out;
}

/** A move that must succeed: its report, checked to say so. */
export async function moved(from: Device, instance: string, peer: string, args: string[] = []): Promise<MoveReport> {
  const m = await migrate(from, instance, peer, args);
  expect(m.code, `${JSON.stringify(m.error)} ${m.stderr}`).toBe(0);
  expect(m.report?.outcome).toBe('moved');
  return m.report!;
}
