/**
 * Emulated devices against their profiles: `npm run bench:devices -- [--json] [--quick]`.
 *
 * For each built-in profile, on the device harness (test/harness/):
 * - cpu: the host's 7-Zip rating (`7z b -mmt1 -md22`, measured in this run), the share the
 *   profile's rating asks of it, the quota calibrated for it, and the fixed workload's rate in
 *   the device's group ÷ unthrottled × the host's rating = the achieved rating, ÷ the profile's
 *   (target 1 ± 0.1). Full runs also run 7-Zip's benchmark itself in the group for the devices
 *   with a share ≥ 0.2 (the others would take minutes): its rating ÷ the profile's.
 * - memory: where the profile's RAM bounds the agent (≥ 256 MiB), a process in the group
 *   tries to take 1.25 × the cap: the group's peak ÷ the cap (target 0.9 .. 1.0) and the kernel's
 *   kill; the others say why there is no cap.
 * - link: bandwidth timed at a receiver behind the link emulator, and the one-way delay it adds
 *   (the median echo round trip less that of the same path with no link, halved), each ÷ the profile's (target 1 ± 0.1).
 * `withinTolerance` lists every figure outside its target. Quick: the host's rating and the
 * calibrated quotas kept for the boot when there are, shorter windows, the memory cap of the
 * smallest capped device only.
 * Prints one JSON object as its last line.
 */
import { getProfile, profileNames } from '../hw-profiles/index.js';
import { hostCpu } from '../test/harness/index.js';
import { parseBenchArgs, report, round } from './lib/args.js';
import { measureCpu, measureLink, measureMemory, type CpuFigure, type LinkFigure, type MemoryFigure } from './lib/device-figures.js';

const args = parseBenchArgs();
const started = Date.now();
const host = await hostCpu({ fresh: !args.quick });
const profiles = profileNames().map(getProfile);
const out: Record<string, { cpu: CpuFigure; memory: MemoryFigure | { skipped: string }; link: LinkFigure }> = {};
const misses: string[] = [];
const within = (what: string, v: number | undefined, lo: number, hi: number) => {
  if (v === undefined || !(v >= lo && v <= hi)) misses.push(`${what} ${v} outside ${lo}..${hi}`);
};
const smallestCapped = profiles.filter((p) => (p.ramBytes ?? 0) >= 256 * 1024 * 1024).sort((a, b) => a.ramBytes! - b.ramBytes!)[0]?.name;

for (const p of profiles) {
  const cpu = await measureCpu(p, host, { windowMs: args.quick ? 400 : 2000, freeWindowMs: args.quick ? 300 : 1000, sevenZip: !args.quick, fresh: !args.quick });
  within(`${p.name}.cpu.ratio`, cpu.ratio, 0.9, 1.1);
  if (cpu.sevenZipRatio !== undefined) within(`${p.name}.cpu.sevenZipRatio`, cpu.sevenZipRatio, 0.9, 1.1);
  const memory = args.quick && p.name !== smallestCapped ? { skipped: 'quick run: only the smallest capped device' } : await measureMemory(p);
  if ('ratio' in memory) within(`${p.name}.memory.ratio`, memory.ratio, 0.9, 1.0);
  const link = await measureLink(p, { seconds: args.quick ? 0.3 : 2, samples: args.quick ? 24 : 64, latencyBudgetMs: args.quick ? 1000 : 20_000 });
  within(`${p.name}.link.bandwidthRatio`, link.bandwidthRatio, 0.9, 1.1);
  within(`${p.name}.link.latencyRatio`, link.latencyRatio, 0.9, 1.1);
  out[p.name] = { cpu, memory, link };
}

const rates = Object.values(out).map((f) => f.cpu.freeRate);
const result = {
  bench: 'devices',
  quick: args.quick,
  hostRatingMips: host.rating,
  hostModel: host.model,
  /** The fastest unthrottled rate of the run ÷ the slowest: far from 1, the shared host's speed moved meanwhile. */
  hostDrift: round(Math.max(...rates) / Math.min(...rates)),
  profiles: out,
  withinTolerance: misses.length === 0,
  outside: misses,
  seconds: round((Date.now() - started) / 1000, 1),
};
report(args, result, [
  `host: ${host.model}, 7-Zip -mmt1 -md22 decompression rating ${host.rating}`,
  ...Object.entries(out).map(([n, f]) => {
    const m = 'ratio' in f.memory ? `cap ${f.memory.capBytes} peak ÷ cap ${f.memory.ratio}${f.memory.oomKilled ? ' (killed at the cap)' : ''}` : 'capBytes' in f.memory ? 'no cap' : 'memory not measured';
    return `${n}: cpu ${f.cpu.achievedMips}/${f.cpu.targetMips} MIPS = ${f.cpu.ratio}${f.cpu.sevenZipRatio !== undefined ? ` (7-Zip in the group ${f.cpu.sevenZipRatio})` : ''}; ${m}; link ${f.link.bandwidthRatio} of ${f.link.bandwidthBps} bit/s, latency ${f.link.measuredLatencyMs}/${f.link.latencyMs} ms = ${f.link.latencyRatio}`;
  }),
  misses.length ? `outside tolerance: ${misses.join('; ')}` : 'every figure within tolerance',
]);
