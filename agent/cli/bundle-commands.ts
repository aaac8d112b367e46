import { resolve } from 'node:path';
import { FerryError } from '../../core/errors.js';
import { agent, need, noMore, type Command } from './command.js';

const USAGE = 'bundle export <instance> <file> --for <peer> | bundle import <file> | bundle cancel <instance> [--force] [--wait <ms>]';

/** An export seals and signs the whole heap: a large one takes a while on a small device, ms. */
const BUNDLE_TIMEOUT_MS = 600_000;

/**
 * `ferry bundle`: offline handoff through a file (agent/bridge/DESIGN.md, "Offline bundles").
 * File paths are resolved against this command's working directory, not the agent's.
 */
export const BUNDLE_COMMANDS: Record<string, Command> = {
  bundle: {
    usage: USAGE,
    summary: 'hand an instance to a paired peer through a sealed, signed file (export --for <peer>, import, cancel while unimported)',
    flags: ['for', 'force', 'wait'],
    async run(_ctx, w, f, _cfg, d) {
      const sub = w[0];
      if (sub === 'export') {
        const instance = need(w, 1, 'instance', USAGE);
        const file = need(w, 2, 'file', USAGE);
        noMore(w, 3, USAGE);
        const peer = f.str('for');
        if (peer === undefined || peer === '') throw new FerryError('CLI_USAGE', `bundle export needs --for <peer> (the paired device that may import it); usage: ferry ${USAGE}`, { field: '--for' });
        return agent(d, 'bundle-export', { instance, file: resolve(file), peer }, BUNDLE_TIMEOUT_MS);
      }
      if (sub === 'import') {
        const file = need(w, 1, 'file', USAGE);
        noMore(w, 2, USAGE);
        return agent(d, 'bundle-import', { file: resolve(file) }, BUNDLE_TIMEOUT_MS);
      }
      if (sub === 'cancel') {
        const instance = need(w, 1, 'instance', USAGE);
        noMore(w, 2, USAGE);
        // How long to wait for the peer's answer before calling it unreachable.
        const wait = f.int('wait', 100, 120_000);
        return agent(d, 'bundle-cancel', { instance, force: f.bool('force'), ...(wait !== undefined ? { waitMs: wait } : {}) }, (wait ?? 5000) + 30_000);
      }
      throw new FerryError('CLI_USAGE', `${sub === undefined ? 'missing subcommand' : `unknown subcommand ${JSON.stringify(sub)}`}; usage: ferry ${USAGE}`, { field: 'subcommand' });
    },
  },
};
