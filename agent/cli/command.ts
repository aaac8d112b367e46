import { FerryError } from '../../core/errors.js';
import type { Flags, ParsedArgs } from './args.js';
import type { FerryConfig } from './config.js';
import { controlRequest } from './control-client.js';

/** What a command produced: a result to print, or an exit code (start). */
export type CommandResult = { result: unknown } | { exitCode: number };

export interface CommandContext {
  parsed: ParsedArgs;
  /** Writes a human line to stderr (start's banner, pairing's code). */
  say(text: string): void;
}

export interface Command {
  usage: string;
  summary: string;
  flags: string[];
  run(ctx: CommandContext, words: string[], f: Flags, config: FerryConfig, dataDir: string): Promise<CommandResult>;
}

/** Sends one control request and wraps its result. */
export const agent = (dataDir: string, cmd: string, args: Record<string, unknown> = {}, timeoutMs?: number) =>
  controlRequest(dataDir, cmd, args, timeoutMs).then((result) => ({ result }));

export function need(words: string[], i: number, what: string, usage: string): string {
  const w = words[i];
  if (w === undefined || w === '') throw new FerryError('CLI_USAGE', `missing <${what}>; usage: ferry ${usage}`, { field: what });
  return w;
}

export function noMore(words: string[], n: number, usage: string): void {
  if (words.length > n) throw new FerryError('CLI_USAGE', `unexpected ${JSON.stringify(words[n])}; usage: ferry ${usage}`, { field: 'arguments' });
}
