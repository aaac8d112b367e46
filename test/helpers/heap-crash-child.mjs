// Child process of the heap crash test: mutates a heap, collects now and then and checkpoints
// in a loop until killed. Before each checkpoint it writes `PRE <version> <digest>` (the graph
// it is about to commit) and after it `ACK <version> <digest>`, synchronously, so the parent
// knows the content of every version the child may have committed. `LOADED` and `READY` time its kills.
// Usage: node heap-crash-child.mjs <dir>
import { writeSync } from 'node:fs';
import { openHeap } from '../../dist/agent/heap/index.js';
import { getProfile } from '../../dist/hw-profiles/index.js';
import { openStore } from '../../dist/store/index.js';
import { HEAP_CRASH_APP, HEAP_CRASH_OPTIONS, digest, mutate } from './heap-crash-model.mjs';

const [dir] = process.argv.slice(2);
// Loaded, nothing opened yet: an early kill is timed from here (killed-child.ts), so it lands in
// the open and recovery below however long Node took to start.
writeSync(1, 'LOADED\n');
const profile = getProfile('j2me-phone');
const store = openStore({ dir, profile });
const heap = openHeap({ store, app: HEAP_CRASH_APP, profile, ...HEAP_CRASH_OPTIONS });
writeSync(1, `READY ${heap.version}\n`);
for (;;) {
  const version = heap.version + 1;
  const gc = mutate(heap.root, version);
  if (gc) heap.collect({ compact: gc });
  const d = digest(heap.toPlain(heap.root));
  writeSync(1, `PRE ${version} ${d}\n`);
  const result = heap.checkpoint();
  if (result.version !== version) throw new Error(`committed ${result.version}, expected ${version}`);
  writeSync(1, `ACK ${version} ${d}\n`);
}
