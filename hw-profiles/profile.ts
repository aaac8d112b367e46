import { FerryError } from '../core/errors.js';
import { OptionReader } from '../core/options.js';

/** Local resources a device can lease to apps as system services. */
export const LOCAL_SERVICE_KINDS = ['display', 'gpio', 'camera', 'speaker', 'gps', 'sensor', 'storage', 'ir'] as const;
export type LocalServiceKind = (typeof LOCAL_SERVICE_KINDS)[number];

export const DEVICE_CLASSES = ['sbc', 'phone', 'kvm-phone', 'pda', 'custom'] as const;
export type DeviceClass = (typeof DEVICE_CLASSES)[number];

/** The link a device reaches its peers and broker over. */
export interface LinkProfile {
  /** Sustained bandwidth, bits per second. Limits 1,000 .. 100,000,000,000. */
  bandwidthBps: number;
  /** One-way latency, milliseconds. Limits 0 .. 10,000. */
  latencyMs: number;
  /** Latency jitter (uniform ±), milliseconds. Limits 0 .. 10,000. */
  jitterMs: number;
  /** Fraction of link drops (disconnections per message sent), 0 .. 1. */
  lossRate: number;
}

/**
 * A device's processor, as far as emulating it on another machine needs (test/harness/DESIGN.md).
 * Ferry itself never reads these: they tell the device harness how fast a core of this device is.
 */
export interface CpuProfile {
  /** Cores. 1 .. 1,024. */
  cores: number;
  /**
   * One core's speed: 7-Zip's decompression rating at a 4 MiB dictionary on one thread
   * (`7z b -mmt1 -md22`, the `22:` line's last column), in 7-Zip's "MIPS". 1 .. 1,000,000.
   * Decompression because its rating hardly moves with the dictionary or from run to run.
   */
  singleCoreMips: number;
}

/**
 * One device class. Every limit Ferry applies comes from here, so the same code
 * runs as a 128 KiB phone or an 8 GiB Pi.
 */
export interface HwProfile {
  /** Profile name, `[a-z0-9-]+`, 1..40 chars. */
  name: string;
  /** Device class; informational, used for peer choice. */
  deviceClass: DeviceClass;
  /** CPU word size in bits: 32 or 64. Decides the heap's object-index translation on migration. */
  wordBits: 32 | 64;
  /** In-memory heap budget per app: resident cache lines never exceed it. Bytes, 16 KiB .. 64 GiB. */
  heapBudgetBytes: number;
  /** Virtual heap size per app: the most an app's heap may hold. Bytes, ≥ heapBudgetBytes, ≤ 1 TiB. */
  virtualHeapBytes: number;
  /** Cache-line size: the unit of paging and of store I/O. Bytes, power of two, 256 .. 65,536. */
  cacheLineBytes: number;
  /** Flash write block: the store gathers dirty lines into writes of this size. Bytes, power of two, ≥ cacheLineBytes, ≤ 16 MiB. */
  flashWriteBlockBytes: number;
  /** Flash erase block. Bytes, power of two, ≥ flashWriteBlockBytes, ≤ 256 MiB. */
  flashEraseBlockBytes: number;
  /** Rated program/erase cycles per erase block. 100 .. 10,000,000. */
  flashEnduranceCycles: number;
  /** The device's link to the broker and its peers. */
  link: LinkProfile;
  /** Local resources the device offers as leasable system services. */
  services: LocalServiceKind[];
  /** The processor (optional in custom profiles; the device harness needs it). */
  cpu?: CpuProfile;
  /** The device's whole RAM, bytes, 64 KiB .. 16 TiB (optional in custom profiles). */
  ramBytes?: number;
  /** Where the figures come from (datasheets, specs). Free text. */
  sources?: string[];
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

const PROFILE_FIELDS = [
  'name', 'deviceClass', 'wordBits', 'heapBudgetBytes', 'virtualHeapBytes', 'cacheLineBytes',
  'flashWriteBlockBytes', 'flashEraseBlockBytes', 'flashEnduranceCycles', 'link', 'services', 'cpu', 'ramBytes', 'sources',
] as const;

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

/**
 * Validates a profile (built-in or parsed from JSON) and returns a frozen copy.
 * Throws `PROFILE_INVALID` naming the bad field.
 */
export function validateProfile(input: unknown, label = 'profile'): HwProfile {
  const r: OptionReader = new OptionReader(input as Record<string, unknown>, label, 'PROFILE_INVALID');
  r.rejectUnknown(PROFILE_FIELDS);
  const name = r.string('name', undefined, /^[a-z0-9][a-z0-9-]{0,39}$/);
  const deviceClass = r.oneOf('deviceClass', DEVICE_CLASSES);
  const wordBits = r.number('wordBits', { min: 32, max: 64 });
  if (wordBits !== 32 && wordBits !== 64) r.fail('wordBits', '32 or 64', wordBits);
  const heapBudgetBytes = r.number('heapBudgetBytes', { min: 16 * KiB, max: 64 * GiB });
  const virtualHeapBytes = r.number('virtualHeapBytes', { min: heapBudgetBytes, max: TiB });
  const cacheLineBytes = r.number('cacheLineBytes', { min: 256, max: 64 * KiB });
  if (!isPowerOfTwo(cacheLineBytes)) r.fail('cacheLineBytes', 'a power of two', cacheLineBytes);
  const flashWriteBlockBytes = r.number('flashWriteBlockBytes', { min: cacheLineBytes, max: 16 * MiB });
  if (!isPowerOfTwo(flashWriteBlockBytes)) r.fail('flashWriteBlockBytes', 'a power of two', flashWriteBlockBytes);
  const flashEraseBlockBytes = r.number('flashEraseBlockBytes', { min: flashWriteBlockBytes, max: 256 * MiB });
  if (!isPowerOfTwo(flashEraseBlockBytes)) r.fail('flashEraseBlockBytes', 'a power of two', flashEraseBlockBytes);
  const flashEnduranceCycles = r.number('flashEnduranceCycles', { min: 100, max: 10_000_000 });

  const linkReader = new OptionReader(r.raw('link') as Record<string, unknown>, `${label}.link`, 'PROFILE_INVALID');
  linkReader.rejectUnknown(['bandwidthBps', 'latencyMs', 'jitterMs', 'lossRate']);
  const link: LinkProfile = {
    bandwidthBps: linkReader.number('bandwidthBps', { min: 1000, max: 100e9 }),
    latencyMs: linkReader.number('latencyMs', { min: 0, max: 10_000, integer: false }),
    jitterMs: linkReader.number('jitterMs', { min: 0, max: 10_000, integer: false }),
    lossRate: linkReader.number('lossRate', { min: 0, max: 1, integer: false }),
  };

  const services = r.raw('services');
  if (!Array.isArray(services)) r.fail('services', 'an array of service kinds', services);
  services.forEach((s, i) => {
    if (!LOCAL_SERVICE_KINDS.includes(s as LocalServiceKind)) {
      r.fail(`services[${i}]`, `one of ${LOCAL_SERVICE_KINDS.join(', ')}`, s);
    }
  });
  let cpu: CpuProfile | undefined;
  if (r.raw('cpu') !== undefined) {
    const cpuReader = new OptionReader(r.raw('cpu') as Record<string, unknown>, `${label}.cpu`, 'PROFILE_INVALID');
    cpuReader.rejectUnknown(['cores', 'singleCoreMips']);
    cpu = Object.freeze({
      cores: cpuReader.number('cores', { min: 1, max: 1024 }),
      singleCoreMips: cpuReader.number('singleCoreMips', { min: 1, max: 1_000_000 }),
    });
  }
  const ramBytes = r.raw('ramBytes') === undefined ? undefined : r.number('ramBytes', { min: 64 * KiB, max: 16 * TiB });
  const sources = r.raw('sources');
  if (sources !== undefined && (!Array.isArray(sources) || sources.some((s) => typeof s !== 'string'))) {
    r.fail('sources', 'an array of strings', sources);
  }

  return Object.freeze({
    name, deviceClass, wordBits: wordBits as 32 | 64, heapBudgetBytes, virtualHeapBytes, cacheLineBytes,
    flashWriteBlockBytes, flashEraseBlockBytes, flashEnduranceCycles,
    link: Object.freeze(link),
    services: Object.freeze([...services]) as LocalServiceKind[],
    ...(cpu ? { cpu } : {}),
    ...(ramBytes !== undefined ? { ramBytes } : {}),
    ...(sources ? { sources: Object.freeze([...(sources as string[])]) as string[] } : {}),
  });
}

export function profileError(message: string, field: string): FerryError {
  return new FerryError('PROFILE_INVALID', message, { field });
}
