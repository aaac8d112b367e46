import { FerryError } from '../../core/errors.js';
import { checkDefinition, type AppDefinition } from './app-definition.js';
import { loadSandbox, type Sandbox } from './sandbox.js';

/** Largest app module accepted, bytes: a module is code, its data lives in the heap. */
export const MAX_MODULE_BYTES = 4 * 1024 * 1024;

export interface LoadedApp {
  definition: AppDefinition;
  sandbox: Sandbox;
}

/**
 * Loads an app module's source into a sandbox of its own and checks its
 * description. `instance` names the sandbox (one per running instance: instances
 * never share globals). Throws APP_BAD_MODULE or APP_BAD_DEFINITION.
 */
export async function loadApp(source: string, options: { filename: string; instance: string; timeoutMs: number }): Promise<LoadedApp> {
  if (typeof source !== 'string') throw new FerryError('APP_BAD_MODULE', `app module ${options.filename} is not text`, { field: 'module' });
  if (Buffer.byteLength(source) > MAX_MODULE_BYTES) {
    throw new FerryError('APP_BAD_MODULE', `app module ${options.filename} is ${Buffer.byteLength(source)} bytes; the limit is ${MAX_MODULE_BYTES}`, { field: 'module' });
  }
  const sandbox = await loadSandbox(source, { app: options.instance, filename: options.filename, timeoutMs: options.timeoutMs });
  // The description is the app's object: its getters run under the load time limit.
  let definition: AppDefinition;
  try {
    definition = sandbox.timed(() => checkDefinition(sandbox.exported), options.timeoutMs);
  } catch (e) {
    if (e instanceof FerryError && e.code !== 'APP_TIMEOUT') throw e;
    throw new FerryError('APP_BAD_DEFINITION', `app module ${options.filename}: reading its description ${e instanceof FerryError ? 'ran past the time limit' : `failed: ${String(e)}`}`, { field: 'app' });
  }
  return { definition, sandbox };
}
