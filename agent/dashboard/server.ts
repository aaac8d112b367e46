import type { IncomingMessage, ServerResponse } from 'node:http';
import { FerryError, type ErrorCode } from '../../core/errors.js';
import type { HttpMount } from '../ops/http-endpoint.js';
import type { ControlDispatch } from '../runtime/control-server.js';
import type { DashboardAccess } from './access.js';
import type { LiveStreams } from './live.js';
import type { ResolvedDashboardOptions } from './options.js';

/** Control commands a page may read with (answers only). */
export const PAGE_READS = ['status', 'apps', 'checkpoints', 'services', 'leases', 'identity', 'peers', 'peers-for', 'migrations', 'migrate-watch', 'logs'] as const;
/** Control commands a page may act with: the `ferry` command's own, run by the same dispatcher. Not install, call, remove or shutdown. */
export const PAGE_ACTIONS = ['run', 'suspend', 'resume', 'stop', 'upgrade', 'restore', 'checkpoint-rm', 'pair', 'pair-confirm', 'pair-cancel', 'unpair', 'migrate', 'migrate-cancel'] as const;

/** One static file of the page. */
export interface Asset {
  type: string;
  body: Buffer;
}

type LogSink = (level: 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown>) => void;

/** Everything the dashboard's HTTP side uses. */
export interface DashboardContext {
  access: DashboardAccess;
  live: LiveStreams;
  dispatch: ControlDispatch;
  /**
   * The page's own reads beside the control commands: `device` (version, profile and budgets,
   * store and flash wear), `grants` (who holds this device's services).
   */
  local: Readonly<Record<string, () => unknown>>;
  /** By path (`/index.html` also answers `/`). */
  assets: ReadonlyMap<string, Asset>;
  options: ResolvedDashboardOptions;
  log: LogSink;
}

/** Headers on every answer: no caching of device data, no sniffing, no framing (clickjacking), no referrer. */
const COMMON_HEADERS = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', 'X-Frame-Options': 'DENY', 'Referrer-Policy': 'no-referrer' };
/** The page runs only its own script and style, and talks only to this agent. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

const READS = new Set<string>(PAGE_READS);
const ACTIONS = new Set<string>(PAGE_ACTIONS);

/**
 * The dashboard mounted on the agent's HTTP endpoint: its page (`/`, `/app.js`, `/app.css`),
 * and its API under `/api/` (DESIGN.md, "Routes"). Anything else is left to the endpoint (404).
 */
export function dashboardMount(ctx: DashboardContext): HttpMount {
  return (req, res, path) => {
    const asset = ctx.assets.get(path === '/' ? '/index.html' : path);
    if (asset) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { ...COMMON_HEADERS, Allow: 'GET, HEAD', 'Content-Length': 0 });
        res.end();
        return true;
      }
      res.writeHead(200, { ...COMMON_HEADERS, 'Content-Type': asset.type, 'Content-Length': asset.body.length, 'Content-Security-Policy': CSP });
      res.end(req.method === 'HEAD' ? undefined : asset.body);
      return true;
    }
    if (!path.startsWith('/api/')) return false;
    api(ctx, req, res, path).catch((e: unknown) => {
      ctx.log('error', 'dashboard.failed', { path, error: String(e) });
      if (!res.headersSent) refuse(res, 500, new FerryError('REMOTE_ERROR', 'the agent could not answer this request; see its log (dashboard.failed)'));
      else res.destroy();
    });
    return true;
  };
}

async function api(ctx: DashboardContext, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const method = req.method ?? 'GET';
  const only = (m: 'GET' | 'POST'): boolean => {
    if (method === m) return true;
    res.writeHead(405, { ...COMMON_HEADERS, Allow: m, 'Content-Length': 0 });
    res.end();
    return false;
  };
  const noSession = () => refuse(res, 401, new FerryError('DASHBOARD_AUTH', 'no dashboard session: open the address `ferry dashboard` prints (it carries the access token), or paste the token', { field: 'token' }));
  const originRefused = (withCsrf: boolean): boolean => {
    const why = ctx.access.refusedOrigin(req, withCsrf);
    if (why !== undefined) refuse(res, 403, new FerryError('DASHBOARD_CSRF', `${why}; nothing changed`, { field: withCsrf ? 'csrf' : 'origin' }));
    return why !== undefined;
  };

  if (path === '/api/login') {
    if (!only('POST') || originRefused(false)) return;
    const body = await readJson(ctx, req, res);
    if (body === undefined) return;
    if (!ctx.access.tokenMatches(body.token)) {
      ctx.log('warn', 'dashboard.login-refused', {});
      return refuse(res, 401, new FerryError('DASHBOARD_AUTH', 'that is not this device\'s access token (the one in its data directory\'s dashboard.token)', { field: 'token' }));
    }
    return reply(res, 200, { ok: true }, { 'Set-Cookie': ctx.access.cookie(req) });
  }
  if (path === '/api/logout') {
    if (!only('POST') || originRefused(false)) return;
    return reply(res, 200, { ok: true }, { 'Set-Cookie': ctx.access.cookie(req, true) });
  }
  if (path === '/api/session') {
    if (!only('GET')) return;
    if (!ctx.access.hasSession(req)) return noSession();
    return reply(res, 200, { ok: true, result: { csrf: ctx.access.csrf, sampleMs: ctx.options.sampleMs } });
  }
  if (path === '/api/events') {
    if (!only('GET')) return;
    if (!ctx.access.hasSession(req)) return noSession();
    if (!ctx.live.add(res)) refuse(res, 503, new FerryError('DASHBOARD_BUSY', `${ctx.options.maxStreams} pages watch live already (dashboard.maxStreams); close one`, { field: 'dashboard.maxStreams' }));
    return;
  }
  const cmd = /^\/api\/cmd\/([a-z-]{1,32})$/.exec(path)?.[1];
  if (cmd === undefined) return refuse(res, 404, new FerryError('AGENT_BAD_REQUEST', `no such dashboard path ${path.slice(0, 100)}`, { field: 'path' }));
  if (!only('POST')) return;
  if (!ctx.access.hasSession(req)) return noSession();
  if (originRefused(true)) return;
  const local = Object.prototype.hasOwnProperty.call(ctx.local, cmd) ? ctx.local[cmd] : undefined;
  if (!local && !READS.has(cmd) && !ACTIONS.has(cmd)) {
    return refuse(res, 404, new FerryError('AGENT_BAD_REQUEST', `the dashboard has no command ${cmd}; it has ${[...Object.keys(ctx.local), ...PAGE_READS, ...PAGE_ACTIONS].join(', ')}`, { field: 'cmd' }));
  }
  const args = await readJson(ctx, req, res);
  if (args === undefined) return;
  if (local) return reply(res, 200, { ok: true, result: local() });
  const outcome = await ctx.dispatch(cmd, args);
  // An action and its outcome, never its arguments (as the control channel logs them).
  if (ACTIONS.has(cmd)) ctx.log('info', 'dashboard.action', { cmd, ok: outcome.ok, ...(outcome.ok ? {} : { code: outcome.error.code }) });
  reply(res, 200, outcome);
}

/** The request's JSON object body, or undefined once refused (415 not JSON, 413 too large, 400 malformed). */
async function readJson(ctx: DashboardContext, req: IncomingMessage, res: ServerResponse): Promise<Record<string, unknown> | undefined> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    refuse(res, 415, new FerryError('AGENT_BAD_REQUEST', `the body must be JSON (Content-Type application/json), got ${JSON.stringify(type.slice(0, 60))}`, { field: 'Content-Type' }));
    return undefined;
  }
  const max = ctx.options.maxBodyBytes;
  const tooLarge = () => {
    refuse(res, 413, new FerryError('AGENT_BAD_REQUEST', `the body is larger than ${max} bytes (dashboard.maxBodyBytes)`, { field: 'body' }), { Connection: 'close' });
    req.resume();
    return undefined;
  };
  if (Number(req.headers['content-length'] ?? 0) > max) return tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max) return tooLarge();
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let v: unknown;
  try {
    v = text.trim() === '' ? {} : JSON.parse(text);
  } catch (e) {
    refuse(res, 400, new FerryError('AGENT_BAD_REQUEST', `the body is not JSON: ${(e as Error).message}`, { field: 'body' }));
    return undefined;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    refuse(res, 400, new FerryError('AGENT_BAD_REQUEST', 'the body must be a JSON object of arguments', { field: 'body' }));
    return undefined;
  }
  return v as Record<string, unknown>;
}

function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...COMMON_HEADERS, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function refuse(res: ServerResponse, status: number, e: FerryError, headers: Record<string, string> = {}): void {
  const code: ErrorCode = e.code;
  reply(res, status, { ok: false, error: { code, message: e.message, ...(e.details.field !== undefined ? { field: e.details.field } : {}) } }, headers);
}
