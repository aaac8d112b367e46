import { createHash } from 'node:crypto';
import { FerryError } from '../../core/errors.js';
import type { AppInstance } from './app-instance.js';

/** Which code an instance runs: the first 64 bits of the SHA-256 of its module's JavaScript, as hex. */
export function codeHash(source: string): string {
  return createHash('sha256').update(source).digest('hex').slice(0, 16);
}

/** The code an instance ran before and the code it opens with now. */
export interface CodeChange {
  fromVersion: string | undefined;
  toVersion: string;
  fromCode: string;
  toCode: string;
}

/**
 * Runs `onUpgrade(ctx, { from, to })` on an instance just opened with new code on the heap its
 * old code left, and commits it with the change of code, so the new code's first call sees the
 * heap shaped by the hook. If the hook fails, the instance is closed without a checkpoint: its
 * heap stays at the version the old code committed, and APP_UPGRADE_FAILED says why.
 */
export function runUpgradeHook(instance: AppInstance, change: CodeChange): void {
  const outcome = instance.hook('onUpgrade', { from: change.fromVersion ?? null, to: change.toVersion });
  if (outcome.ok) {
    try {
      instance.commit();
      return;
    } catch (e) {
      instance.close();
      throw upgradeFailed(instance.instance, change, `its commit failed: ${(e as Error).message}`, e);
    }
  }
  instance.close();
  throw upgradeFailed(instance.instance, change, `onUpgrade failed (${outcome.code}: ${outcome.message})`);
}

export function upgradeFailed(instance: string, change: CodeChange, why: string, cause?: unknown): FerryError {
  return new FerryError(
    'APP_UPGRADE_FAILED',
    `instance ${instance} cannot move from version ${change.fromVersion ?? '?'} to ${change.toVersion}: ${why}; its heap is unchanged`,
    { field: 'onUpgrade', app: instance },
    cause !== undefined ? { cause } : undefined,
  );
}
