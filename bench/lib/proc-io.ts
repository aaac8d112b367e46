import { readFileSync } from 'node:fs';

/** Bytes this process caused to be sent to storage (`write_bytes` in /proc/self/io). */
export function processWriteBytes(): number {
  const text = readFileSync('/proc/self/io', 'utf8');
  const m = /^write_bytes:\s+(\d+)/m.exec(text);
  if (!m) throw new Error('/proc/self/io has no write_bytes line');
  return Number(m[1]);
}
