export { openHeap, Heap, type CheckpointResult, type HeapStats, type Savepoint } from './heap.js';
export { resolveHeapOptions, type HeapOptions, type HeapClock } from './options.js';
export { HeapMap, HeapSet } from './proxies.js';
export type { CompactMode, MajorResult } from './collector.js';
