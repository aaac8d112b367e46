import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { FerryError } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';

/** The addresses the endpoint may listen on: loopback only. */
export const LOOPBACK_HOSTS = ['127.0.0.1', '::1', 'localhost'] as const;

/** Options of the HTTP endpoint. Validated on entry; errors (BAD_OPTION) name the field. */
export interface HttpEndpointOptions {
  /** TCP port. 0 = any free port (read it back from `HttpEndpoint.port`, or the `http.listening` log line). Limits 0..65,535. Required. */
  port: number;
  /**
   * Address to listen on: `127.0.0.1`, `::1` or `localhost` (loopback only: the endpoint has
   * no authentication, so it is reachable only from the device, or through an SSH tunnel or a
   * local reverse proxy the owner sets up). Default `127.0.0.1`.
   */
  host?: (typeof LOOPBACK_HOSTS)[number];
  /** Connections open at once; more are closed at once. Default 16. Limits 1..1,000. */
  maxConnections?: number;
  /** Time a client has to send a request's headers, ms; then 408 and the connection is closed. Default 10,000. Limits 1,000..300,000. */
  requestTimeoutMs?: number;
}

export interface ResolvedHttpEndpointOptions {
  port: number;
  host: (typeof LOOPBACK_HOSTS)[number];
  maxConnections: number;
  requestTimeoutMs: number;
}

/** Checks the options; `prefix` names the fields in errors (`http.host`). */
export function readHttpEndpointOptions(options: HttpEndpointOptions, prefix = 'options'): ResolvedHttpEndpointOptions {
  const r = new OptionReader(options as unknown as Record<string, unknown>, prefix);
  r.rejectUnknown(['port', 'host', 'maxConnections', 'requestTimeoutMs']);
  const host = r.raw('host') ?? '127.0.0.1';
  if (!(LOOPBACK_HOSTS as readonly unknown[]).includes(host)) r.fail('host', `a loopback address (${LOOPBACK_HOSTS.join(', ')}): the endpoint has no authentication`, host);
  return {
    port: r.number('port', { min: 0, max: 65_535 }),
    host: host as ResolvedHttpEndpointOptions['host'],
    maxConnections: r.number('maxConnections', { min: 1, max: 1000 }, 16),
    requestTimeoutMs: r.number('requestTimeoutMs', { min: 1000, max: 300_000 }, 10_000),
  };
}

/** One answer of a route. */
export interface HttpAnswer {
  status: number;
  contentType: string;
  body: string;
}

/** The endpoint's paths; each answers a GET (HEAD: the same headers, no body). */
export type HttpRoutes = Readonly<Record<string, () => HttpAnswer>>;

/**
 * A part mounted beside the fixed routes (the dashboard): asked for every path that is not one
 * of them, after the Host check; answers `false` to leave the path unknown (404), `true` once it
 * has taken the request (it then answers it, and its own failures, itself).
 */
export type HttpMount = (req: IncomingMessage, res: ServerResponse, path: string) => boolean;

type LogSink = (level: 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown>) => void;

/** Host header names a loopback listener answers to (a browser tricked by DNS rebinding sends another). */
const LOOPBACK_NAMES = /^(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])(:\d{1,5})?$/i;

/**
 * A small HTTP/1.1 server on a loopback address for a device's operator and its monitoring:
 * fixed GET routes, text answers built at each request, never a request body read. A request it
 * cannot parse gets 400 and the connection is closed; an unknown path 404; a known path asked
 * with a method other than GET or HEAD, 405 with `Allow`; a Host header that is not a loopback
 * name, 403; a route that throws, 500 (logged). Nothing a client sends stops the agent.
 */
export class HttpEndpoint {
  private constructor(
    private readonly server: Server,
    private readonly sockets: Set<Socket>,
    /** The address listened on. */
    readonly host: string,
    /** The port listened on (the one the OS chose for port 0). */
    readonly port: number,
  ) {}

  /** `http://127.0.0.1:<port>` (`http://[::1]:<port>` on IPv6). */
  get url(): string {
    return `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  static async start(options: HttpEndpointOptions, routes: HttpRoutes, log: LogSink = () => undefined, prefix = 'options', mount?: HttpMount): Promise<HttpEndpoint> {
    const o = readHttpEndpointOptions(options, prefix);
    const server = createServer({ maxHeaderSize: 8192, requestTimeout: o.requestTimeoutMs, headersTimeout: o.requestTimeoutMs }, (req, res) => answer(req, res, routes, log, mount));
    server.maxConnections = o.maxConnections;
    const sockets = new Set<Socket>();
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    server.keepAliveTimeout = 5000;
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      // A malformed request line, oversized headers, a timeout: answer if the socket still can, then close.
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    await new Promise<void>((resolve, reject) => {
      const failed = (e: NodeJS.ErrnoException) => {
        const why = e.code === 'EADDRINUSE' ? `port ${o.port} on ${o.host} is in use` : e.code === 'EACCES' ? `port ${o.port} on ${o.host} needs privileges this process lacks` : `listening on ${o.host}:${o.port} failed: ${e.message}`;
        reject(new FerryError('BAD_OPTION', `${prefix}.port: ${why}`, { field: `${prefix}.port` }));
      };
      server.once('error', failed);
      server.listen(o.port, o.host, () => {
        server.off('error', failed);
        resolve();
      });
    });
    server.on('error', (e) => log('error', 'http.error', { error: String(e) }));
    const addr = server.address();
    return new HttpEndpoint(server, sockets, typeof addr === 'object' && addr ? addr.address : o.host, typeof addr === 'object' && addr ? addr.port : o.port);
  }

  /** Stops listening and closes every connection (an idle keep-alive one must not hold the shutdown). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

function answer(req: IncomingMessage, res: ServerResponse, routes: HttpRoutes, log: LogSink, mount: HttpMount | undefined): void {
  const send = (a: HttpAnswer, headers: Record<string, string> = {}) => {
    res.writeHead(a.status, { 'Content-Type': a.contentType, 'Content-Length': Buffer.byteLength(a.body), 'Cache-Control': 'no-store', ...headers });
    res.end(req.method === 'HEAD' ? undefined : a.body);
  };
  const text = (status: number, body: string): HttpAnswer => ({ status, contentType: 'text/plain; charset=utf-8', body: `${body}\n` });
  try {
    const host = req.headers.host;
    if (host !== undefined && !LOOPBACK_NAMES.test(host)) return send(text(403, 'this endpoint answers only to a loopback Host (localhost, 127.0.0.1, [::1])'));
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const route = Object.prototype.hasOwnProperty.call(routes, path) ? routes[path] : undefined;
    if (!route && mount?.(req, res, path)) return;
    if (!route) return send(text(404, `no such path; try ${Object.keys(routes).join(', ')}`));
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(text(405, `${path} takes GET or HEAD`), { Allow: 'GET, HEAD' });
    send(route());
  } catch (e) {
    log('error', 'http.failed', { path: req.url, error: String(e) });
    if (!res.headersSent) send(text(500, 'the agent could not answer this request; see its log (http.failed)'));
    else res.destroy();
  }
}
