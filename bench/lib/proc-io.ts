import { readdirSync, readFileSync } from 'node:fs';

/** Bytes this process caused to be sent to storage (`write_bytes` in /proc/self/io). */
export function processWriteBytes(): number {
  const text = readFileSync('/proc/self/io', 'utf8');
  const m = /^write_bytes:\s+(\d+)/m.exec(text);
  if (!m) throw new Error('/proc/self/io has no write_bytes line');
  return Number(m[1]);
}

/** `pid` and every process descended from it (/proc/<pid>/task/<tid>/children). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    for (const tid of readdirSync(`/proc/${out[i]}/task`)) {
      const kids = readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
      if (kids) out.push(...kids.split(/\s+/).map(Number));
    }
  }
  return out;
}
