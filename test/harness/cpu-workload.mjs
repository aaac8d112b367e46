// The harness's fixed CPU workload (DESIGN.md, "CPU share"): integer work in small fixed
// chunks for a wall-clock window, printed as one JSON line. Chunks are ~50 µs on a current
// x86 core, far below a CFS period, so where a window starts or ends in a period hardly matters.
// Usage: node cpu-workload.mjs <windowMs> [--wait]
const windowMs = Number(process.argv[2] ?? 1000);
const CHUNK = 20_000;

function chunk(seed) {
  let h = seed | 0;
  for (let i = 0; i < CHUNK; i++) {
    h ^= i;
    h = Math.imul(h, 0x01000193);
    h ^= h >>> 15;
  }
  return h;
}

// Warm the JIT before the window: its compile time is not the workload.
let sink = 0;
for (let i = 0; i < 200; i++) sink ^= chunk(i);

// With --wait, say "ready" and wait for a line on stdin (the harness moves this process into
// a device's group meanwhile: Node's start-up is not the workload either).
if (process.argv.includes('--wait')) {
  process.stdout.write('ready\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  process.stdin.pause();
}

const start = performance.now();
const cpu0 = process.cpuUsage();
let chunks = 0;
while (performance.now() - start < windowMs) {
  sink ^= chunk(chunks);
  chunks++;
}
const wallMs = performance.now() - start;
const used = process.cpuUsage(cpu0);
process.stdout.write(`${JSON.stringify({ chunks, wallMs, cpuMs: (used.user + used.system) / 1000, sink: sink & 1 })}\n`);
