import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.js';
import { TOKEN_FILE, TOKEN_PATTERN } from '../dashboard/access.js';
import { noMore, type Command } from './command.js';
import { controlRequest } from './control-client.js';

/** The HTTP endpoint's port when the dashboard is asked for without one (`--dashboard` alone). */
export const DASHBOARD_DEFAULT_PORT = 8080;

/**
 * `ferry dashboard`: the address to open, with the access token in its fragment (a fragment is
 * never sent to a server, so it reaches no access log; the page trades it for a session cookie and
 * drops it from the address bar). Only a user who can read the data directory gets it.
 */
export const DASHBOARD_COMMAND: Command = {
  usage: 'dashboard',
  summary: 'the address of the dashboard, with its access token (start the agent with --dashboard)',
  flags: [],
  async run(_ctx, w, _f, _cfg, d) {
    noMore(w, 0, this.usage);
    const s = (await controlRequest(d, 'status')) as { dashboardUrl?: string };
    if (s.dashboardUrl === undefined) throw new FerryError('CLI_USAGE', 'this agent serves no dashboard: start it with --dashboard (and --http-port <n>, default 8080), or set "dashboard": true in ferry.config.json', { field: '--dashboard' });
    let token: string;
    try {
      token = readFileSync(join(d, TOKEN_FILE), 'utf8').trim();
    } catch (e) {
      throw new FerryError('DASHBOARD_TOKEN_CORRUPT', `${join(d, TOKEN_FILE)} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'}): run this as the agent's user`, { field: 'dashboard.token' });
    }
    if (!TOKEN_PATTERN.test(token)) throw new FerryError('DASHBOARD_TOKEN_CORRUPT', `${join(d, TOKEN_FILE)} does not hold a token`, { field: 'dashboard.token' });
    const port = new URL(s.dashboardUrl).port;
    return {
      result: {
        url: `${s.dashboardUrl}#token=${token}`,
        tokenFile: join(d, TOKEN_FILE),
        tunnel: `on a headless board: ssh -N -L ${port}:127.0.0.1:${port} <user>@<board>, then open the address on your computer`,
      },
    };
  },
};
