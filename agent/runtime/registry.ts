import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FerryError } from '../../core/errors.js';
import { NAME } from './app-definition.js';

/** An installed app: its module is kept in the data directory under `file`. */
export interface InstalledApp {
  name: string;
  version: string;
  /** Module file name inside `<data>/apps/`. */
  file: string;
  installedAt: number;
}

/**
 * `moved`: handed off to a peer (its heap stays here as a cached version for a return trip);
 * `incoming`: a handoff to this device is in progress and undecided (bridge DESIGN.md, "Two-sided commit").
 */
export type InstanceState = 'running' | 'suspended' | 'stopped' | 'moved' | 'incoming';

/** A handoff this instance is part of: the origin's durable decision (`moved`) or the destination's prepared state (`incoming`). */
export interface MoveMark {
  /** The move's id (both sides use it to find the decision after a crash). */
  id: string;
  /** The other device. */
  peer: string;
  /** The store version the move installed (`incoming`) or handed off (`moved`). */
  version: number;
  at: number;
  /** `incoming` only: what this record was before the move began (a return trip), restored if the move is undone. */
  prev?: InstanceRecord;
  /** `incoming` only: the app was installed by this move (its code came with it): uninstalled if the move is undone. */
  installedApp?: boolean;
}

export interface InstanceRecord {
  instance: string;
  app: string;
  /** What the instance should be after an agent restart: `running` ones are resumed. */
  state: InstanceState;
  since: number;
  /** The code the instance last ran (`codeHash` of its module) and that module's version: a change at the next opening runs `onUpgrade`. Absent in registries written before them. */
  code?: string;
  appVersion?: string;
  /** A module kept for this instance alone (received in a handoff, differing from the installed one), in `<data>/apps/`. */
  codeFile?: string;
  move?: MoveMark;
}

interface RegistryFile {
  format: 'ferry.registry/1';
  apps: Record<string, InstalledApp>;
  instances: Record<string, InstanceRecord>;
}

/**
 * The agent's list of installed apps and instances (`<data>/registry.json`).
 * The heaps are in the store; this file says which app module each instance runs
 * and whether it was running, so a restart resumes the right ones. Every change is
 * written to a temporary file, synced, renamed over the old one and the directory
 * synced: after a power loss the file is the old or the new version, whole.
 */
export class Registry {
  private data: RegistryFile;

  private constructor(
    readonly path: string,
    data: RegistryFile,
  ) {
    this.data = data;
  }

  static open(dir: string): Registry {
    const path = join(dir, 'registry.json');
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Registry(path, { format: 'ferry.registry/1', apps: {}, instances: {} });
      throw new FerryError('STORE_IO', `cannot read ${path}: ${(e as Error).message}`, { field: 'registry' }, { cause: e });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new FerryError('STORE_CORRUPT', `${path} is not valid JSON (${(e as Error).message}); it was written atomically, so something else changed it`, { field: 'registry' });
    }
    const f = parsed as Partial<RegistryFile> | null;
    if (!f || f.format !== 'ferry.registry/1' || typeof f.apps !== 'object' || typeof f.instances !== 'object' || f.apps === null || f.instances === null) {
      throw new FerryError('STORE_CORRUPT', `${path} is not a Ferry registry (format ferry.registry/1)`, { field: 'registry.format' });
    }
    checkRecords(path, f as RegistryFile);
    return new Registry(path, f as RegistryFile);
  }

  apps(): InstalledApp[] {
    return Object.values(this.data.apps);
  }

  app(name: string): InstalledApp | undefined {
    return Object.prototype.hasOwnProperty.call(this.data.apps, name) ? this.data.apps[name] : undefined;
  }

  instances(): InstanceRecord[] {
    return Object.values(this.data.instances);
  }

  instance(id: string): InstanceRecord | undefined {
    return Object.prototype.hasOwnProperty.call(this.data.instances, id) ? this.data.instances[id] : undefined;
  }

  /** Applies `change` to a copy and writes it; the in-memory copy changes only if the write succeeded. */
  update(change: (d: RegistryFile) => void): void {
    const next = structuredClone(this.data);
    change(next);
    writeAtomically(this.path, `${JSON.stringify(next, null, 2)}\n`);
    this.data = next;
  }
}

const STATES: readonly string[] = ['running', 'suspended', 'stopped', 'moved', 'incoming'];
/** A per-instance module file: `<instance>@<code hash>.mjs`. */
export const CODE_FILE = /^[a-z][a-z0-9-]{0,63}@[0-9a-f]{16}\.mjs$/;

/** Every record's fields, so nothing later trips over a changed file (a `file` must not name a path elsewhere). */
function checkRecords(path: string, f: RegistryFile): void {
  const bad = (field: string, what: string) => new FerryError('STORE_CORRUPT', `${path}: ${field} must be ${what}`, { field: `registry.${field}` });
  for (const [k, a] of Object.entries(f.apps)) {
    if (a === null || typeof a !== 'object' || a.name !== k || !NAME.test(k)) throw bad(`apps.${k}.name`, 'the app name it is filed under');
    if (a.file !== `${k}.mjs`) throw bad(`apps.${k}.file`, `"${k}.mjs"`);
    if (typeof a.version !== 'string' || typeof a.installedAt !== 'number') throw bad(`apps.${k}`, 'a record with version and installedAt');
  }
  for (const [k, i] of Object.entries(f.instances)) {
    if (i === null || typeof i !== 'object' || i.instance !== k || !NAME.test(k)) throw bad(`instances.${k}.instance`, 'the instance id it is filed under');
    if (typeof i.app !== 'string' || !NAME.test(i.app)) throw bad(`instances.${k}.app`, 'an app name');
    if (!STATES.includes(i.state)) throw bad(`instances.${k}.state`, STATES.join(', '));
    if (typeof i.since !== 'number') throw bad(`instances.${k}.since`, 'a time in ms');
    if (i.code !== undefined && (typeof i.code !== 'string' || !/^[0-9a-f]{16}$/.test(i.code))) throw bad(`instances.${k}.code`, '16 hex digits');
    if (i.appVersion !== undefined && typeof i.appVersion !== 'string') throw bad(`instances.${k}.appVersion`, 'a string');
    if (i.codeFile !== undefined && (typeof i.codeFile !== 'string' || !CODE_FILE.test(i.codeFile))) throw bad(`instances.${k}.codeFile`, '<instance>@<16 hex digits>.mjs');
    if ((i.state === 'moved' || i.state === 'incoming') !== (i.move !== undefined)) throw bad(`instances.${k}.move`, `present exactly when the state is moved or incoming`);
    if (i.move !== undefined) {
      const m = i.move;
      if (m === null || typeof m !== 'object' || typeof m.id !== 'string' || typeof m.peer !== 'string' || !Number.isInteger(m.version) || typeof m.at !== 'number') throw bad(`instances.${k}.move`, 'a record with id, peer, version and at');
    }
  }
}

/**
 * Writes `text` to `path` so a power loss leaves the old or the new file, never a mix.
 * `mode` (e.g. 0o600 for a secret): the temporary file is created afresh with it, so the new
 * content is never readable by others, not even before the rename. A stale temporary file left
 * by a crash is removed first: someone may hold it open, and a truncated file keeps its readers.
 */
export function writeAtomically(path: string, text: string, mode?: number): void {
  const tmp = `${path}.tmp`;
  if (mode !== undefined) rmSync(tmp, { force: true });
  const fd = mode === undefined ? openSync(tmp, 'w') : openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  syncDirectory(dirname(path));
}

/** fsyncs a directory, so a rename or link in it survives a power loss. */
export function syncDirectory(dir: string): void {
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
