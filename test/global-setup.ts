import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * Compiles the project to dist/ once per test run: crash tests spawn hundreds of child
 * processes, and plain JavaScript starts in a tenth of the time TypeScript through a loader does.
 */
export default function setup(): void {
  const root = join(import.meta.dirname, '..');
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
  // As `npm run build` does: the command runs through its #! line.
  execFileSync(process.execPath, [join(root, 'scripts/mark-executable.mjs')], { stdio: 'inherit' });
}
