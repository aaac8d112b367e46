#!/usr/bin/env -S node --experimental-vm-modules --disable-warning=ExperimentalWarning
import { isFerryError } from '../../core/errors.js';
import { errorAnswerBody } from '../../transports/pending-requests.js';
import { parseArgs } from './args.js';
import { runCommand } from './commands.js';
import { formatHuman } from './format.js';

/**
 * The `ferry` command. Output: a human form, or with `--json` one JSON value on
 * stdout. Errors: one line (`ferry: message [CODE]`), or with `--json`
 * `{"error":{"code","message","field"}}` on stdout; exit status 1. Never a stack trace.
 */
/** The terminal's width to fit tables to, or undefined (a pipe, a file, or a terminal that reports no size: 0). */
function terminalWidth(): number | undefined {
  const c = process.stdout.isTTY ? process.stdout.columns : 0;
  return c > 0 ? c : undefined;
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  try {
    const parsed = parseArgs(argv);
    const out = await runCommand(parsed, (t) => process.stderr.write(`${t}\n`));
    if ('exitCode' in out) return out.exitCode;
    process.stdout.write(`${json ? JSON.stringify(out.result ?? null) : formatHuman(out.result, terminalWidth())}\n`);
    // A command whose result says it partly failed (a plan's failed steps) set the status already.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (json) {
      process.stdout.write(`${JSON.stringify({ error: errorAnswerBody(e) })}\n`);
    } else {
      process.stderr.write(`ferry: ${isFerryError(e) ? `${e.message} [${e.code}]` : String((e as Error)?.message ?? e)}\n`);
    }
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  () => {
    process.exitCode = 1;
  },
);
