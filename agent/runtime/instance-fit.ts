import { FerryError } from '../../core/errors.js';
import type { HwProfile } from '../../hw-profiles/index.js';
import type { Services } from '../services/index.js';
import type { ServiceRequirement } from './app-definition.js';
import type { Registry } from './registry.js';
import type { Running } from './running.js';

/**
 * Whether this device has room for one more instance and can run an app (agent/fleet/DESIGN.md,
 * "Capacity"): a `ferry run`, an arriving move and an imported bundle are each checked here.
 */
export interface FitHost {
  running: Map<string, Running>;
  registry: Registry;
  profile: HwProfile;
  /** The most instances running at once (agent option maxInstances). */
  maxInstances: number;
  services(): Services | undefined;
}

/** What an instance needs of the device it would run on. */
export interface FitRequest {
  app: string;
  /** The instance itself does not count against the room (a return trip, a restart). */
  instance?: string;
  minHeapBytes: number;
  requiredWordBits?: 32 | 64 | undefined;
  services: ServiceRequirement[];
}

/** Instances that take a place here: running, or arriving (a move or an import under way). */
export function placesTaken(h: FitHost, except?: string): number {
  const arriving = h.registry.instances().filter((i) => i.state === 'incoming' && !h.running.has(i.instance) && i.instance !== except).length;
  return [...h.running.keys()].filter((i) => i !== except).length + arriving;
}

/** AGENT_FULL when `instance` would be one more than maxInstances runs here. */
export function checkRoom(h: FitHost, instance: string): void {
  const taken = placesTaken(h, instance);
  if (taken >= h.maxInstances) {
    throw new FerryError('AGENT_FULL', `this device runs ${taken} instances, its most (maxInstances ${h.maxInstances}); stop or move one, or raise maxInstances`, { field: 'maxInstances' });
  }
}

/** MIGRATE_NO_FIT naming what does not fit: word size, room, heap budget, a required service; else the optional services missing. */
export function checkFit(h: FitHost, req: FitRequest): { missing: string[] } {
  const p = h.profile;
  if (req.requiredWordBits !== undefined && req.requiredWordBits !== p.wordBits) {
    throw new FerryError('MIGRATE_NO_FIT', `app ${req.app} requires a ${req.requiredWordBits}-bit device; profile ${p.name} is ${p.wordBits}-bit`, { field: 'requirements.wordBits' });
  }
  const taken = placesTaken(h, req.instance);
  if (taken >= h.maxInstances) {
    throw new FerryError('MIGRATE_NO_FIT', `device full: it runs ${taken} instances, its most (maxInstances ${h.maxInstances})`, { field: 'maxInstances' });
  }
  if (req.minHeapBytes > p.heapBudgetBytes) {
    throw new FerryError('MIGRATE_NO_FIT', `app ${req.app} needs ${req.minHeapBytes} bytes of heap; profile ${p.name} gives each app ${p.heapBudgetBytes}`, { field: 'requirements.minHeapBytes' });
  }
  const d = h.services()?.discovery;
  const missing = req.services.filter((s) => (d ? d.lookup({ type: s.type, attrs: s.attributes }).length === 0 : true));
  const needed = missing.filter((s) => !s.optional);
  if (needed.length > 0) {
    throw new FerryError('MIGRATE_NO_FIT', `app ${req.app} requires service ${needed.map((s) => s.type).join(', ')}, which device ${p.name} cannot find`, { field: 'requirements.services' });
  }
  return { missing: missing.map((s) => s.type) };
}
