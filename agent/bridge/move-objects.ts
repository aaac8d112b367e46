import { createHash } from 'node:crypto';
import type { HwProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import { openHeap } from '../heap/heap.js';
import { exportObjects, type ExportedObject, type ObjectImage } from '../heap/migration.js';
import { HASH_BYTES } from './move-wire.js';

/**
 * The object path's pieces (another line or word size at the destination): an instance's heap as
 * objects at a version, and which objects changed since what was sent (DESIGN.md, "Object level").
 */

/** The object export of `instance`'s heap at `version`, read-only (the running heap is not touched). */
export function exportAt(l: { store: Store; profile: HwProfile }, instance: string, version: number): { objects: ExportedObject[]; image: ObjectImage } {
  const heap = openHeap({ store: l.store, app: instance, profile: l.profile, version, readOnly: true });
  try {
    const gen = exportObjects(heap);
    const objects: ExportedObject[] = [];
    for (;;) {
      const n = gen.next();
      if (n.done) return { objects, image: n.value };
      objects.push(n.value);
    }
  } finally {
    heap.close();
  }
}

/** Objects whose record hash differs from what was sent, and sent objects no longer there. */
export function objectDelta(sent: Map<number, string>, objects: ExportedObject[]): { changed: ExportedObject[]; removed: number[] } {
  const live = new Set(objects.map(([oid]) => oid));
  return { changed: objects.filter(([oid, rec]) => sent.get(oid) !== recordHash(rec)), removed: [...sent.keys()].filter((oid) => !live.has(oid)) };
}

/** A content hash of bytes (the store's: 16 bytes of SHA-256), for object records. */
export function recordHash(b: Uint8Array): string {
  return createHash('sha256').update(b).digest().subarray(0, HASH_BYTES).toString('hex');
}
