import { readFileSync, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { FerryError } from '../../core/errors.js';
import { loadApp, MAX_MODULE_BYTES, type LoadedApp } from './app-loader.js';

/** An app module read from disk, TypeScript compiled, checked in a sandbox of its own. */
export interface CheckedModule extends LoadedApp {
  /** The JavaScript kept and run (compiled if the file was TypeScript). */
  source: string;
  filename: string;
}

/**
 * Reads an app module for `ferry install`. `.mjs`/`.js` are taken as they are;
 * `.ts`/`.mts` are compiled with the `typescript` package (a development
 * dependency: without it, a TypeScript app is refused with a clear error and the
 * advice to install it or ship JavaScript). The module is then loaded and its
 * description checked, so a bad one is refused before anything is stored.
 */
export async function checkModuleFile(path: string, timeoutMs: number): Promise<CheckedModule> {
  if (typeof path !== 'string' || path.length === 0) throw new FerryError('APP_BAD_MODULE', 'path must name an app module file', { field: 'path' });
  const filename = basename(path);
  const ext = extname(path);
  if (!['.mjs', '.js', '.ts', '.mts'].includes(ext)) {
    throw new FerryError('APP_BAD_MODULE', `app module ${path} must be .mjs, .js, .ts or .mts, got ${JSON.stringify(ext)}`, { field: 'path' });
  }
  let text: string;
  try {
    if (statSync(path).size > MAX_MODULE_BYTES) throw new FerryError('APP_BAD_MODULE', `app module ${path} is larger than ${MAX_MODULE_BYTES} bytes`, { field: 'path' });
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof FerryError) throw e;
    throw new FerryError('APP_BAD_MODULE', `app module ${path} cannot be read: ${(e as Error).message}`, { field: 'path' }, { cause: e });
  }
  const source = ext === '.ts' || ext === '.mts' ? await compileTypeScript(text, path) : text;
  const loaded = await loadApp(source, { filename, instance: 'install-check', timeoutMs });
  return { ...loaded, source, filename };
}

async function compileTypeScript(text: string, path: string): Promise<string> {
  let ts: typeof import('typescript');
  try {
    ts = (await import('typescript')).default;
  } catch {
    throw new FerryError('APP_BAD_MODULE', `app module ${path} is TypeScript, and the typescript package is not installed here (npm install typescript), or install the compiled .mjs instead`, { field: 'path' });
  }
  const out = ts.transpileModule(text, {
    fileName: basename(path),
    reportDiagnostics: true,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false, removeComments: false },
  });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length > 0) {
    const first = errors[0]!;
    const where = first.file && first.start !== undefined ? first.file.getLineAndCharacterOfPosition(first.start) : undefined;
    throw new FerryError('APP_BAD_MODULE', `app module ${path}${where ? `:${where.line + 1}:${where.character + 1}` : ''} does not compile: ${ts.flattenDiagnosticMessageText(first.messageText, ' ')}`, { field: 'path' });
  }
  return out.outputText;
}
