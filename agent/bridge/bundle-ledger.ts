import { readFileSync } from 'node:fs';
import { FerryError } from '../../core/errors.js';
import { writeAtomically } from '../runtime/registry.js';
import { BUNDLE_ID } from './bundle-format.js';

/**
 * The durable record of bundles (`<data>/bridge/bundles.json`, written atomically on every change
 * before the call that changed it returns): bundles this device exported (so a crash during an
 * export is finished or undone at restart, and a cancel knows the file), and bundles it imported
 * or had revoked by their origin (so a second import, or an import after a cancel, is refused).
 * Entries are never pruned: a forgotten id could be imported twice (~150 bytes each).
 * A damaged file is an error (STORE_CORRUPT), never an empty ledger: that would allow a second import.
 */

export interface OutgoingBundle {
  instance: string;
  peer: string;
  /** The bundle file's absolute path. */
  file: string;
  /** `exporting`: the file may be incomplete (a temp file); `exported`: complete; `cancelled`: taken back. */
  state: 'exporting' | 'exported' | 'cancelled';
  at: number;
}

export interface IncomingBundle {
  origin: string;
  instance: string;
  /** `imported`: never again; `revoked`: its origin cancelled it first, never import it. */
  state: 'imported' | 'revoked';
  at: number;
  /** `imported`: the store version the heap was installed as, and its code (to finish after a crash). */
  version?: number;
  code?: { hash: string; appVersion: string; file?: string };
}

interface LedgerFile {
  format: 'ferry.bundles/1';
  outgoing: Record<string, OutgoingBundle>;
  incoming: Record<string, IncomingBundle>;
}

export class BundleLedger {
  private constructor(
    readonly path: string,
    private data: LedgerFile,
  ) {}

  static open(path: string): BundleLedger {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new BundleLedger(path, { format: 'ferry.bundles/1', outgoing: {}, incoming: {} });
      throw new FerryError('STORE_IO', `cannot read ${path}: ${(e as Error).message}`, { field: 'bundles' }, { cause: e });
    }
    const bad = (field: string) => new FerryError('STORE_CORRUPT', `${path} is damaged (${field}); it is written atomically, so something else changed it. Bundle commands are off until it is restored`, { field: `bundles.${field}` });
    let f: LedgerFile;
    try {
      f = JSON.parse(text) as LedgerFile;
    } catch {
      throw bad('json');
    }
    if (f === null || typeof f !== 'object' || f.format !== 'ferry.bundles/1' || typeof f.outgoing !== 'object' || typeof f.incoming !== 'object' || !f.outgoing || !f.incoming) throw bad('format');
    for (const [id, o] of Object.entries(f.outgoing)) {
      if (!BUNDLE_ID.test(id) || typeof o?.instance !== 'string' || typeof o.peer !== 'string' || typeof o.file !== 'string' || !['exporting', 'exported', 'cancelled'].includes(o.state)) throw bad(`outgoing.${id}`);
    }
    for (const [id, i] of Object.entries(f.incoming)) {
      if (!BUNDLE_ID.test(id) || typeof i?.origin !== 'string' || typeof i.instance !== 'string' || !['imported', 'revoked'].includes(i.state)) throw bad(`incoming.${id}`);
    }
    return new BundleLedger(path, f);
  }

  outgoing(id: string): OutgoingBundle | undefined {
    return Object.prototype.hasOwnProperty.call(this.data.outgoing, id) ? this.data.outgoing[id] : undefined;
  }

  outgoingAll(): Array<[string, OutgoingBundle]> {
    return Object.entries(this.data.outgoing);
  }

  incoming(id: string): IncomingBundle | undefined {
    return Object.prototype.hasOwnProperty.call(this.data.incoming, id) ? this.data.incoming[id] : undefined;
  }

  /** Applies `change` to a copy and writes it; memory changes only after the write succeeded. */
  update(change: (d: LedgerFile) => void): void {
    const next = structuredClone(this.data);
    change(next);
    writeAtomically(this.path, `${JSON.stringify(next)}\n`, 0o600);
    this.data = next;
  }
}
