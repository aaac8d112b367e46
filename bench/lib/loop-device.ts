import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';

/** A scratch ext4 filesystem on a loop device, to see what really reaches a block device. */
export interface LoopFs {
  mountPoint: string;
  device: string;
  /** Sectors (512 B) written and write requests completed so far, from /sys/block/loopN/stat. */
  writeStats(): { sectors: number; requests: number };
  /** Flushes the filesystem so everything written so far is counted. */
  flush(): void;
  dispose(): void;
}

/** Makes one; throws with the reason when the machine cannot (no root, no loop devices). */
export function makeLoopFs(workDir: string, sizeMiB = 1024): LoopFs {
  const image = join(workDir, 'scratch.img');
  const mountPoint = join(workDir, 'mnt');
  mkdirSync(mountPoint, { recursive: true });
  execFileSync('truncate', ['-s', `${sizeMiB}M`, image]);
  const device = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
  try {
    // No lazy init: the background inode-table zeroing would be counted as our writes.
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', device], { stdio: 'pipe' });
    execFileSync('mount', ['-o', 'noatime', device, mountPoint], { stdio: 'pipe' });
  } catch (e) {
    execFileSync('losetup', ['-d', device]);
    throw e;
  }
  const statPath = `/sys/block/${basename(device)}/stat`;
  return {
    mountPoint,
    device,
    writeStats() {
      const f = readFileSync(statPath, 'utf8').trim().split(/\s+/).map(Number);
      return { requests: f[4]!, sectors: f[6]! };
    },
    flush() {
      execFileSync('sync', ['-f', mountPoint]);
    },
    dispose() {
      try { execFileSync('umount', [mountPoint], { stdio: 'pipe' }); } catch { /* already gone */ }
      try { execFileSync('losetup', ['-d', device], { stdio: 'pipe' }); } catch { /* already gone */ }
      rmSync(image, { force: true });
    },
  };
}
