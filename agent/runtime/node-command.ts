import { accessSync, constants, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { FerryError } from '../../core/errors.js';

/**
 * The environment variable naming the command that runs this Node, when `process.execPath` cannot
 * be run again: under qemu-user without binfmt_misc (an emulated ARM64 agent on an x86-64 host,
 * scripts/arm64-tree.mjs), execPath is the arm64 binary, which the kernel refuses to exec; the
 * emulator's wrapper sets this to itself.
 */
export const NODE_COMMAND_ENV = 'FERRY_NODE';

/**
 * The executable to start this Node again with (the agent's re-exec, a service unit's ExecStart,
 * the tests' child processes): `FERRY_NODE` when set, else `process.execPath`. A `FERRY_NODE`
 * that is not the absolute path of an executable file is refused (NODE_COMMAND_INVALID) rather
 * than left to fail later as a child that never starts.
 */
export function nodeCommand(env: NodeJS.ProcessEnv = process.env, execPath: string = process.execPath): string {
  const named = env[NODE_COMMAND_ENV];
  if (named === undefined || named === '') return execPath;
  const bad = (why: string) => new FerryError('NODE_COMMAND_INVALID', `${NODE_COMMAND_ENV}=${named} ${why}; it must be the absolute path of a command that runs this Node (or unset, to use ${execPath})`, { field: NODE_COMMAND_ENV });
  if (!isAbsolute(named)) throw bad('is not an absolute path');
  try {
    if (!statSync(named).isFile()) throw bad('is not a file');
    accessSync(named, constants.X_OK);
  } catch (e) {
    if (e instanceof FerryError) throw e;
    throw bad(`cannot be run (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  return named;
}
