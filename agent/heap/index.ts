export { openHeap, Heap, type CheckpointResult, type HeapStats, type Savepoint } from './heap.js';
export { resolveHeapOptions, type HeapOptions, type HeapClock } from './options.js';
export { HeapMap, HeapSet } from './collections.js';
export { acceptRealm, kindOf } from './values.js';
export type { CompactMode, MajorResult } from './collector.js';
export { installLines, importObjects, type LineImage, type InstallLine, type ExportedObject, type ObjectImage } from './migration.js';
export { reasonOf, withReason } from './heap-meta.js';
export { openSystemArea, SystemArea, type SystemAreaOptions } from './system-area.js';
