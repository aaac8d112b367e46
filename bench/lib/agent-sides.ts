/**
 * Agent processes for the fleet benchmarks (bench/fleet-choice.ts, bench/fleet-bundles.ts): the
 * built `ferry` (app modules need its Node flags), each on a fresh data directory, paired through
 * the control channel with both owners saying yes to the code their device shows.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, type AgentProcess } from '../../test/helpers/agent-process.js';

export interface Side {
  id: string;
  agent: AgentProcess;
}

/** Starts an agent `id` on `profile` under `root`; `config` becomes its ferry.config.json. */
export async function startSide(url: string, root: string, id: string, profile: string, config?: Record<string, unknown>): Promise<Side> {
  const dataDir = mkdtempSync(join(root, `${id}-`));
  const extra: string[] = [];
  if (config) {
    const file = join(dataDir, 'ferry.config.json');
    writeFileSync(file, JSON.stringify(config));
    extra.push('--config', file);
  }
  const agent = startAgentProcess(dataDir, ['--device-id', id, '--profile', profile, '--broker', url, '--log-level', 'warn', ...extra]);
  await agent.ready;
  return { id, agent };
}

/** Pairs `a` with `b`: a asks, b accepts once the request is there, both confirm the code. */
export async function pairSides(a: Side, b: Side): Promise<void> {
  const asking = a.agent.control('pair', { peer: b.id }) as Promise<{ code: string }>;
  for (let i = 0; ; i++) {
    const p = (await b.agent.control('peers', { check: false })) as { pending: Array<{ peer: string }> };
    if (p.pending.some((x) => x.peer === a.id)) break;
    if (i > 500) throw new Error('the pairing request never arrived');
    await new Promise((r) => setTimeout(r, 10));
  }
  const cb = (await b.agent.control('pair', { peer: a.id, accept: true })) as { code: string };
  const ca = await asking;
  await Promise.all([a.agent.control('pair-confirm', { peer: b.id, yes: true, code: ca.code }), b.agent.control('pair-confirm', { peer: a.id, yes: true, code: cb.code })]);
}

/** Stops the agents, the broker and removes their directories (a benchmark's `finally`). */
export async function stopSides(sides: readonly Side[], broker: { stop(): Promise<void> }, root: string): Promise<void> {
  await Promise.all(sides.map((s) => s.agent.kill('SIGTERM').catch(() => undefined)));
  await broker.stop();
  rmSync(root, { recursive: true, force: true });
}

/** Runs a benchmark part alone (`tsx bench/<file>.ts [--quick]`) when that file is the one started. */
export async function runAlone(url: string, name: string, measure: (o: { quick: boolean }) => Promise<unknown>): Promise<void> {
  if (url !== `file://${process.argv[1]}`) return;
  console.log(JSON.stringify({ [name]: await measure({ quick: process.argv.includes('--quick') }) }, null, 2));
}
