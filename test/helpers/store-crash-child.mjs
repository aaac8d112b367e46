// Child process of the store crash test: commits checkpoints in a loop until killed.
// After each commit it writes `ACK <version>` synchronously to stdout, so every version the
// parent saw acknowledged was committed before the ACK left the process.
// It is started ahead of its turn (WarmChild in killed-child.ts): once loaded it prints `WARM`
// and touches nothing until a line arrives on stdin (stdin closed first: it exits).
// Usage: node store-crash-child.mjs <dir> <durability> <segmentBytes>
import { writeSync } from 'node:fs';
import { openStore } from '../../dist/store/index.js';
import { checkpointPlan, lineContent, stateFor, CRASH_APP } from './store-crash-model.mjs';

const [dir, durability, segmentBytes] = process.argv.slice(2);
writeSync(1, 'WARM\n');
await new Promise((go) => {
  process.stdin.once('data', go);
  process.stdin.once('end', () => process.exit(0));
});
const store = openStore({ dir, durability, segmentBytes: Number(segmentBytes), keepVersions: 3, spaceFactor: 1.5, syncEveryCommits: 4 });
store.createApp(CRASH_APP.id, { lineSize: CRASH_APP.lineSize, maxLines: CRASH_APP.maxLines });
writeSync(1, `READY ${store.headVersion(CRASH_APP.id)}\n`);
for (;;) {
  const version = store.headVersion(CRASH_APP.id) + 1;
  const plan = checkpointPlan(version);
  const tx = store.begin(CRASH_APP.id);
  for (const line of plan.writes) tx.write(line, lineContent(version, line));
  for (const line of plan.deletes) tx.delete(line);
  tx.setState(stateFor(version));
  const result = tx.commit();
  if (result.version !== version) throw new Error(`committed ${result.version}, expected ${version}`);
  writeSync(1, `ACK ${version}\n`);
}
