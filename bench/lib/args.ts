/** Shared benchmark flags: `--json` (one JSON object as the last line), `--quick` (under 30 s). */
export interface BenchArgs {
  json: boolean;
  quick: boolean;
  rest: string[];
}

export function parseBenchArgs(argv = process.argv.slice(2)): BenchArgs {
  return { json: argv.includes('--json'), quick: argv.includes('--quick'), rest: argv.filter((a) => !a.startsWith('--')) };
}

/** Prints the result: a readable summary unless --json, and always the JSON object as the last line. */
export function report(args: BenchArgs, result: Record<string, unknown>, summary: string[]): void {
  if (!args.json) for (const line of summary) console.log(line);
  console.log(JSON.stringify(result));
}

/** Small deterministic PRNG (mulberry32) so runs are comparable. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
