import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';

/**
 * The segment file's I/O, the one place the store touches its flash. Synchronous on purpose:
 * SQLite (better-sqlite3) is synchronous too, and a commit must not interleave with another.
 * Tests wrap it to inject failures on the write and sync paths.
 */
export interface BlockIo {
  open(path: string): number;
  pwrite(fd: number, data: Uint8Array, position: number): void;
  pread(fd: number, into: Uint8Array, position: number): number;
  fdatasync(fd: number): void;
  truncate(fd: number, size: number): void;
  size(fd: number): number;
  close(fd: number): void;
}

export const fsBlockIo: BlockIo = {
  open(path) {
    closeSync(openSync(path, 'a')); // create when missing, never truncate
    return openSync(path, 'r+');
  },
  pwrite(fd, data, position) {
    let done = 0;
    while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
  },
  pread(fd, into, position) {
    let done = 0;
    while (done < into.length) {
      const n = readSync(fd, into, done, into.length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  },
  fdatasync: (fd) => fdatasyncSync(fd),
  truncate: (fd, size) => ftruncateSync(fd, size),
  size: (fd) => fstatSync(fd).size,
  close: (fd) => closeSync(fd),
};
