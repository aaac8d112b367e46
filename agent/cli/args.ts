import { FerryError } from '../../core/errors.js';

/** A parsed command line: the command words, positionals and `--flag [value]` pairs. */
export interface ParsedArgs {
  positionals: string[];
  flags: Map<string, string | true>;
}

/** Flags that take no value. */
const BOOLEAN_FLAGS = new Set(['json', 'help', 'samples', 'no-check', 'dry-run', 'follow', 'dashboard', 'force', 'best', 'refresh']);

/** Short forms every command line takes, as the long ones. */
const SHORT: Record<string, string> = { '-h': '--help', '-V': '--version' };

/** Splits argv; `--name value`, `--name=value` and boolean `--json`. A flag missing its value is CLI_USAGE. */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = SHORT[argv[i]!] ?? argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (eq > 0) flags.set(name, a.slice(eq + 1));
      else if (BOOLEAN_FLAGS.has(name)) flags.set(name, true);
      // `ferry --version` before any command; after one (`resume x --version 3`) it takes a value.
      else if (name === 'version' && positionals.length === 0) flags.set(name, true);
      else {
        const v = argv[i + 1];
        if (v === undefined || (v.startsWith('--') && v.length > 2)) throw new FerryError('CLI_USAGE', `--${name} needs a value`, { field: `--${name}` });
        flags.set(name, v);
        i++;
      }
    } else positionals.push(a);
  }
  return { positionals, flags };
}

/** Reads the flags a command allows; any other is CLI_USAGE naming it. */
export class Flags {
  constructor(
    private readonly parsed: ParsedArgs,
    private readonly command: string,
  ) {}

  allow(names: readonly string[]): void {
    for (const k of this.parsed.flags.keys()) {
      if (!names.includes(k) && k !== 'json' && k !== 'data' && k !== 'config' && k !== 'help') {
        throw new FerryError('CLI_USAGE', `ferry ${this.command} takes no --${k} (it takes ${[...names, 'data', 'config', 'json'].map((n) => `--${n}`).join(', ')})`, { field: `--${k}` });
      }
    }
  }

  str(name: string): string | undefined {
    const v = this.parsed.flags.get(name);
    if (v === true) throw new FerryError('CLI_USAGE', `--${name} needs a value`, { field: `--${name}` });
    return v;
  }

  int(name: string, min: number, max: number): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new FerryError('CLI_USAGE', `--${name} must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`, { field: `--${name}` });
    return Number(v);
  }

  bool(name: string): boolean {
    return this.parsed.flags.has(name);
  }
}
