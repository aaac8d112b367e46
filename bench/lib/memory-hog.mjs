// Allocates and touches memory in 4 MiB steps up to argv[2] bytes, printing its RSS after each
// step, then waits to be killed (bench/devices.ts: does a device's memory cap hold?).
const target = Number(process.argv[2]);
const STEP = 4 * 1024 * 1024;
const held = [];
for (let total = 0; total < target; total += STEP) {
  const b = Buffer.allocUnsafe(STEP);
  b.fill(held.length & 0xff); // touched: resident, not just reserved
  held.push(b);
  process.stdout.write(`${process.memoryUsage.rss()}\n`);
}
process.stdout.write('done\n');
setInterval(() => held.length, 1000);
