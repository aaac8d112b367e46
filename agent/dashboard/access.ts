import { createHmac, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.js';

/** The access token's file in the data directory (mode 0600: only the agent's user reads it). */
export const TOKEN_FILE = 'dashboard.token';

/** What a token may be: 32..128 URL-safe characters (a made one is 43: 32 random bytes in base64url). */
export const TOKEN_PATTERN = /^[A-Za-z0-9_-]{32,128}$/;

/** The header an action carries its CSRF token in (a cross-site form cannot set it; a cross-site fetch that does is preflighted, and OPTIONS is never allowed). */
export const CSRF_HEADER = 'x-ferry-csrf';

/**
 * The data directory's token, made at the first start: 32 bytes from the OS's CSPRNG, written
 * whole or not at all (a temporary file, synced, linked into place, never over an existing one,
 * the directory synced). A file that is there but unreadable or not a token is
 * DASHBOARD_TOKEN_CORRUPT: it is never replaced silently (a page open elsewhere would lose its
 * session without a word). The token itself never reaches a log or an error message.
 */
export function loadOrMakeToken(dataDir: string): string {
  const file = join(dataDir, TOKEN_FILE);
  const read = (): string | undefined => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new FerryError('DASHBOARD_TOKEN_CORRUPT', `${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { field: 'dashboard.token' });
    }
    const token = text.trim();
    if (!TOKEN_PATTERN.test(token)) throw new FerryError('DASHBOARD_TOKEN_CORRUPT', `${file} does not hold a token (32..128 of A-Z a-z 0-9 _ -); remove it and a new one is made at the next start`, { field: 'dashboard.token' });
    chmodSync(file, 0o600); // a copy restored with looser rights is tightened again
    return token;
  };
  const had = read();
  if (had !== undefined) return had;
  const token = randomBytes(32).toString('base64url');
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${token}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    unlinkSync(tmp);
  }
  const dir = openSync(dataDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return read()!; // the one in place (another start's, had it won the race)
}

const digest = (s: string) => createHash('sha256').update(s).digest();
/** Equal strings, in time that does not depend on where they differ (nor on their lengths' secret). */
function same(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/**
 * Who may use the dashboard: whoever shows the token once (`POST /api/login`) gets a session
 * cookie, HttpOnly and SameSite=Strict, whose value is derived from the token (HMAC-SHA256), so
 * it outlives a restart and dies with the token; every action also carries the page's CSRF token
 * (another HMAC of the token) in a header, and comes from the page's own origin.
 */
export class DashboardAccess {
  private readonly session: string;
  /** The CSRF token a page reads from `/api/session` and sends with every action. */
  readonly csrf: string;
  constructor(private readonly token: string) {
    this.session = createHmac('sha256', token).update('ferry dashboard session v1').digest('base64url');
    this.csrf = createHmac('sha256', token).update('ferry dashboard csrf v1').digest('base64url');
  }

  /**
   * The cookie's name: one per port the browser sees (the Host header's: through an SSH tunnel,
   * the tunnel's), since a browser keeps cookies per host, not per port, and two agents on one
   * machine must not overwrite each other's session.
   */
  cookieName(req: IncomingMessage): string {
    const port = /:(\d{1,5})$/.exec(req.headers.host ?? '')?.[1] ?? '80';
    return `ferry_session_${port}`;
  }

  tokenMatches(candidate: unknown): boolean {
    return typeof candidate === 'string' && same(candidate, this.token);
  }

  /** The Set-Cookie value of a session (`clear`: one that ends it). */
  cookie(req: IncomingMessage, clear = false): string {
    return `${this.cookieName(req)}=${clear ? '' : this.session}; HttpOnly; SameSite=Strict; Path=/${clear ? '; Max-Age=0' : ''}`;
  }

  /** Whether the request carries this dashboard's session cookie. */
  hasSession(req: IncomingMessage): boolean {
    const name = this.cookieName(req);
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) return same(part.slice(eq + 1).trim(), this.session);
    }
    return false;
  }

  /**
   * Why a state-changing request may not come from this page, or undefined when it may: its
   * `Origin` (every browser sends one with a POST) must be the page's own, `Sec-Fetch-Site`
   * (where sent) `same-origin`, and `withCsrf` the CSRF header must match.
   */
  refusedOrigin(req: IncomingMessage, withCsrf: boolean): string | undefined {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host ?? ''}`) return `the request came from another site (Origin ${origin.slice(0, 100)})`;
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') return `the request came from another site (Sec-Fetch-Site ${String(site).slice(0, 20)})`;
    if (!withCsrf) return undefined;
    const header = req.headers[CSRF_HEADER];
    if (typeof header !== 'string' || !same(header, this.csrf)) return `the request lacks the page's CSRF token (header ${CSRF_HEADER}); reload the page`;
    return undefined;
  }
}
