import { FerryError } from '../../core/errors.js';
import { decodeMeta, type HeapMeta } from './heap-meta.js';
import { LineState, LineType } from './line-table.js';
import { ROOT_OID, type ObjectSpace } from './object-space.js';
import type { ResolvedHeapOptions } from './options.js';
import type { Pager } from './pager.js';

/**
 * Reopening a committed version: read the metadata, mark the stored lines Persistent, and
 * rebuild what is not stored — live bytes per line, free object ids, free lines — in one pass
 * over the object table (table lines page through the budget like any other).
 */
export function reopenSpace(o: ResolvedHeapOptions, pager: Pager, space: ObjectSpace, version: number): HeapMeta {
    const meta = decodeMeta(o.store.readState(o.app, { version }), o.app);
    if (meta.lineSize !== o.lineSize) throw new FerryError('HEAP_CORRUPT', `the heap metadata of app ${o.app} says ${meta.lineSize}-byte lines, the store ${o.lineSize}`, { field: 'meta.lineSize', app: o.app });
    const t = pager.table;
    for (const l of o.store.listLines(o.app, { version })) {
      if (l.line > o.maxLines) throw new FerryError('HEAP_CORRUPT', `line ${l.line} of app ${o.app} is beyond the virtual heap`, { field: 'line', app: o.app });
      t.ensure(l.line);
      t.state[l.line] = LineState.Persistent;
      t.stored[l.line] = 1;
    }
    space.alloc.hwm = meta.hwm;
    space.nextOid = meta.nextOid;
    space.table.pages = meta.tablePages;
    for (const p of meta.tablePages) {
      t.ensure(p);
      t.type[p] = LineType.Table;
      t.live[p] = o.lineSize;
    }
    // Rebuild what is not stored: live bytes per line, free object ids, free lines.
    const used = new Uint8Array(meta.nextOid);
    space.table.forEach((oid, p) => {
      if (oid >= meta.nextOid) throw new FerryError('HEAP_CORRUPT', `object #${oid} of app ${o.app} is beyond nextOid`, { field: 'meta.nextOid', app: o.app });
      used[oid] = 1;
      let a = p.addr;
      let left = p.cap;
      while (left > 0) {
        const line = Math.floor(a / o.lineSize);
        const n = Math.min(left, o.lineSize - (a % o.lineSize));
        t.ensure(line);
        t.live[line]! += n;
        a += n;
        left -= n;
      }
    });
    if (!used[ROOT_OID]) throw new FerryError('HEAP_CORRUPT', `the heap of app ${o.app} has no root object`, { field: 'root', app: o.app });
    for (let oid = meta.nextOid - 1; oid > ROOT_OID; oid--) if (!used[oid]) space.freeOids.push(oid);
    const free: number[] = [];
    for (let line = 1; line < meta.hwm; line++) {
      t.ensure(line);
      if (t.live[line]! === 0) {
        free.push(line);
        if (t.stored[line]!) pager.pendingDelete.add(line);
      }
    }
    space.alloc.setFree(free);
  return meta;
}
