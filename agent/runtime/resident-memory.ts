import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';

/** Reads a file of /proc (injected by tests). */
export type ProcReader = (path: string) => Buffer;

export interface ResidentMemorySources {
  /** Node's own figure (libuv reads it from /proc/self/stat). */
  rss?: () => number;
  read?: ProcReader;
  /** Machine word of /proc/self/auxv: 8 bytes on 64-bit Node builds, 4 on 32-bit ones. */
  wordBytes?: 4 | 8;
  littleEndian?: boolean;
}

const AT_PAGESZ = 6n;
const DEFAULT_PAGE = 4096;

/** The kernel's page size from the auxiliary vector (4 KiB on most boards, 16 KiB on a Pi 5's kernel). */
function pageSize(read: ProcReader, wordBytes: 4 | 8, littleEndian: boolean): number {
  const auxv = read('/proc/self/auxv');
  for (let i = 0; i + 2 * wordBytes <= auxv.length; i += 2 * wordBytes) {
    const word = (at: number) => (wordBytes === 8 ? (littleEndian ? auxv.readBigUInt64LE(at) : auxv.readBigUInt64BE(at)) : BigInt(littleEndian ? auxv.readUInt32LE(at) : auxv.readUInt32BE(at)));
    const type = word(i);
    if (type === 0n) break;
    if (type === AT_PAGESZ) return Number(word(i + wordBytes));
  }
  return DEFAULT_PAGE;
}

/**
 * The process's resident set, bytes (`ferry status`'s rssBytes, the ops endpoint's
 * process_resident_memory_bytes). Node's figure when it has one; 0 means it could not read it,
 * which is what qemu-user gives (it answers /proc/self/stat itself, with rss 0). Then the
 * resident pages of /proc/self/statm (passed through to the kernel) times the page size. Under
 * qemu-user that is the emulator process's resident set: the real memory the emulated agent
 * uses, the emulator's own and its translated code included, so more than the same agent on a
 * real arm64 board. 0 if neither can be read (not Linux).
 */
export function residentBytes(src: ResidentMemorySources = {}): number {
  const rss = (src.rss ?? (() => process.memoryUsage.rss()))();
  if (rss > 0) return rss;
  const read = src.read ?? ((p: string) => readFileSync(p));
  try {
    const pages = Number(read('/proc/self/statm').toString('latin1').trim().split(/\s+/)[1]);
    if (!Number.isSafeInteger(pages) || pages <= 0) return 0;
    const word = src.wordBytes ?? (/64/.test(process.arch) ? 8 : 4);
    return pages * pageSize(read, word, src.littleEndian ?? endianness() === 'LE');
  } catch {
    return 0;
  }
}
