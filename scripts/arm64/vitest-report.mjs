// Reads vitest's JSON reports of the same files run natively and on the emulated ARM64 Node, and
// prints the slowdown: per file (its duration emulated ÷ native), per folder, and the wall
// times of both runs; then every test that did not pass under emulation, by name, so nothing
// skipped or failed there goes unseen.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

/** File (relative to `root`) → { seconds, passed, failed, skipped, notPassed: [{ title, status, message }] }. */
export function readReport(file, root) {
  const r = JSON.parse(readFileSync(file, 'utf8'));
  const files = new Map();
  for (const t of r.testResults) {
    const tests = t.assertionResults ?? [];
    const notPassed = tests.filter((a) => a.status !== 'passed').map((a) => ({ title: a.fullName ?? a.title, status: a.status, message: (a.failureMessages ?? []).join(' ').split('\n')[0].slice(0, 300) }));
    if (t.status === 'failed' && tests.length === 0) notPassed.push({ title: '(the file itself)', status: 'failed', message: String(t.message ?? '').split('\n')[0].slice(0, 300) });
    files.set(relative(root, t.name), {
      seconds: (t.endTime - t.startTime) / 1000,
      passed: tests.filter((a) => a.status === 'passed').length,
      failed: tests.filter((a) => a.status === 'failed').length + (t.status === 'failed' && tests.length === 0 ? 1 : 0),
      skipped: tests.filter((a) => a.status !== 'passed' && a.status !== 'failed').length,
      notPassed,
    });
  }
  return files;
}

const pad = (s, n) => String(s).padEnd(n);
const num = (x, n = 7) => (Number.isFinite(x) ? x.toFixed(1) : '-').padStart(n);
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(1)}x` : '-').padStart(7);

/** The slowdown table and the list of tests that did not pass emulated; returns the totals. */
export function printSlowdown({ emulated, native, emulatedWall, nativeWall, say }) {
  const names = [...emulated.keys()].sort();
  say(`${pad('file', 44)} ${'native s'.padStart(8)} ${'arm64 s'.padStart(8)} ${'slower'.padStart(7)}`);
  const folders = new Map();
  for (const f of names) {
    const e = emulated.get(f).seconds;
    const n = native?.get(f)?.seconds ?? NaN;
    say(`${pad(f, 44)} ${num(n, 8)} ${num(e, 8)} ${ratio(e, n)}`);
    const folder = f.split('/').slice(0, 2).join('/');
    const t = folders.get(folder) ?? { e: 0, n: 0 };
    t.e += e;
    t.n += n;
    folders.set(folder, t);
  }
  for (const [folder, t] of folders) say(`${pad(`${folder} (sum of its files)`, 44)} ${num(t.n, 8)} ${num(t.e, 8)} ${ratio(t.e, t.n)}`);
  say(`${pad('wall time of the run (2 files at once)', 44)} ${num(nativeWall, 8)} ${num(emulatedWall, 8)} ${ratio(emulatedWall, nativeWall)}`);
  const totals = { passed: 0, failed: 0, skipped: 0 };
  const bad = [];
  for (const f of names) {
    const r = emulated.get(f);
    totals.passed += r.passed;
    totals.failed += r.failed;
    totals.skipped += r.skipped;
    for (const t of r.notPassed) bad.push(`  ${t.status}: ${f} > ${t.title}${t.message ? ` — ${t.message}` : ''}`);
  }
  if (bad.length > 0) {
    say('not passed under emulation:');
    for (const line of bad) say(line);
  }
  return totals;
}
