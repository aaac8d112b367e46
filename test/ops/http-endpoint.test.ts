/**
 * The ops endpoint's parts on their own: the Prometheus text writer (read back by an independent
 * strict parser), the options (typed errors naming the field, loopback only), and the HTTP server
 * on a real socket: 404, 405, HEAD, a foreign Host, a route that throws, and requests that are not
 * HTTP at all, after which it still answers.
 */
import { connect } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { readAgentOptions, type AgentOptions } from '../../agent/runtime/agent-options.js';
import { HttpEndpoint, readHttpEndpointOptions, type HttpEndpointOptions } from '../../agent/ops/http-endpoint.js';
import { OpsMetrics, COMMIT_SECONDS_BOUNDS } from '../../agent/ops/metrics.js';
import type { OpsSurface } from '../../agent/ops/agent-surface.js';
import { healthOf } from '../../agent/ops/health.js';
import { PrometheusText } from '../../agent/ops/prometheus-text.js';
import { caught, caughtAsync } from '../helpers/ferry-error.js';
import { parseExposition, valueOf } from './prometheus-parse.js';

/** Sends raw bytes and returns everything the server wrote back before it closed (or `waitMs` passed). */
function raw(port: number, bytes: string, waitMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const t = setTimeout(() => {
      s.destroy();
      resolve(got);
    }, waitMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(t);
      resolve(got);
    });
    s.write(bytes);
  });
}

describe('PrometheusText', () => {
  it('writes HELP and TYPE once per family, escapes label values and help, and histograms with cumulative buckets and +Inf', () => {
    const t = new PrometheusText()
      .counter('x_total', 'a help with \\ and\na line feed', [{ labels: { instance: 'a"b\\c\nd' }, value: 3 }])
      .gauge('g', 'gauge', [{ value: Infinity }, { labels: { k: 'v' }, value: -0.5 }])
      .histogram('h_seconds', 'hist', [{ labels: { instance: 'i' }, bounds: [0.1, 1], counts: [2, 3, 1], sum: 4.5 }]);
    const text = t.text();
    expect(text).toContain('# HELP x_total a help with \\\\ and\\na line feed\n# TYPE x_total counter\n');
    expect(text).toContain('x_total{instance="a\\"b\\\\c\\nd"} 3\n');
    expect(text).toContain('g +Inf\n');
    expect(text).toContain('h_seconds_bucket{instance="i",le="0.1"} 2\nh_seconds_bucket{instance="i",le="1"} 5\nh_seconds_bucket{instance="i",le="+Inf"} 6\nh_seconds_sum{instance="i"} 4.5\nh_seconds_count{instance="i"} 6\n');
    const p = parseExposition(text);
    expect(p.help.get('x_total')).toBe('a help with \\ and\na line feed');
    expect(valueOf(p, 'x_total', { instance: 'a"b\\c\nd' })).toBe(3);
    expect(valueOf(p, 'h_seconds_count', { instance: 'i' })).toBe(6);
  });

  it('refuses bad names, a family written twice, an le label and unordered bounds (BAD_OPTION)', () => {
    expect(caught(() => new PrometheusText().gauge('1bad', 'h', [])).code).toBe('BAD_OPTION');
    expect(caught(() => new PrometheusText().gauge('g', 'h', []).gauge('g', 'h', [])).code).toBe('BAD_OPTION');
    expect(caught(() => new PrometheusText().gauge('g', 'h', [{ labels: { 'bad-label': 'x' }, value: 1 }])).details.field).toBe('labels');
    expect(caught(() => new PrometheusText().histogram('h', 'h', [{ labels: { le: '1' }, bounds: [1], counts: [0, 0], sum: 0 }])).details.field).toBe('labels');
    expect(caught(() => new PrometheusText().histogram('h', 'h', [{ bounds: [1, 1], counts: [0, 0, 0], sum: 0 }])).details.field).toBe('bounds');
  });

  it('OpsMetrics: counts by instance and outcome, puts each commit time in its bucket, and renders a valid exposition', () => {
    const m = new OpsMetrics();
    m.called('a', 'ok');
    m.called('a', 'ok');
    m.called('a', 'error');
    m.called('b', 'repeat');
    m.dropped('b');
    m.committed('a', 2, 0.0005); // on a bound: in that bucket (le is inclusive)
    m.committed('a', 1, 0.003);
    m.committed('a', 1, 60); // above every bound
    const surface: OpsSurface = {
      broker: () => ({ connected: true, reconnects: 2 }),
      instances: () => [{ instance: 'a', app: 'x', state: 'running', heap: { faults: 7, residentBytes: 8192, budgetBytes: 65536, virtualBytes: 16384 } }, { instance: 'b', app: 'x', state: 'suspended' }],
      store: () => ({ bytesWritten: 4096, commits: 3 }),
      leases: () => undefined,
      process: () => ({ rssBytes: 1e7, uptimeSeconds: 12.5, startTimeSeconds: 1_700_000_000 }),
    };
    const p = parseExposition(m.render(surface));
    expect(valueOf(p, 'ferry_mailbox_requests_total', { instance: 'a', outcome: 'ok' })).toBe(2);
    expect(valueOf(p, 'ferry_mailbox_requests_total', { instance: 'a', outcome: 'error' })).toBe(1);
    expect(valueOf(p, 'ferry_mailbox_requests_total', { instance: 'b', outcome: 'repeat' })).toBe(1);
    expect(valueOf(p, 'ferry_mailbox_dropped_total', { instance: 'b' })).toBe(1);
    expect(valueOf(p, 'ferry_mailbox_commit_seconds_bucket', { instance: 'a', le: String(COMMIT_SECONDS_BOUNDS[0]) })).toBe(1);
    expect(valueOf(p, 'ferry_mailbox_commit_seconds_bucket', { instance: 'a', le: '0.005' })).toBe(2);
    expect(valueOf(p, 'ferry_mailbox_commit_seconds_bucket', { instance: 'a', le: '5' })).toBe(2);
    expect(valueOf(p, 'ferry_mailbox_commit_seconds_count', { instance: 'a' })).toBe(3);
    expect(valueOf(p, 'ferry_mailbox_commit_seconds_sum', { instance: 'a' })).toBeCloseTo(60.0035, 6);
    expect(valueOf(p, 'ferry_heap_faults_total', { instance: 'a' })).toBe(7);
    expect(p.samples.some((s) => s.name === 'ferry_heap_faults_total' && s.labels.instance === 'b')).toBe(false);
    expect(valueOf(p, 'ferry_instances', { state: 'suspended' })).toBe(1);
    expect(valueOf(p, 'ferry_broker_reconnects_total')).toBe(2);
    // Before the services are up there is no renewal manager: the family is there, with no sample.
    expect(p.types.get('ferry_lease_renewals_total')).toBe('counter');
    expect(p.samples.some((s) => s.name === 'ferry_lease_renewals_total')).toBe(false);
  });

  it('healthOf: a suspended or stopped instance is healthy, a failed one or a lost broker is not', () => {
    const surface = (connected: boolean, state: 'running' | 'suspended' | 'stopped' | 'failed'): OpsSurface => ({
      broker: () => ({ connected, reconnects: 0, ...(connected ? {} : { downSince: '2030-01-01T00:00:00.000Z' }) }),
      instances: () => [{ instance: 'c', app: 'counter', state, ...(state === 'failed' ? { error: 'APP_BAD_MODULE: boom' } : {}) }],
      store: () => ({ bytesWritten: 0, commits: 0 }),
      leases: () => undefined,
      process: () => ({ rssBytes: 0, uptimeSeconds: 0, startTimeSeconds: 0 }),
    });
    for (const s of ['running', 'suspended', 'stopped'] as const) expect(healthOf(surface(true, s)).code).toBe(200);
    const failed = healthOf(surface(true, 'failed'));
    expect(failed.code).toBe(503);
    expect(failed.report.problems).toEqual(['instance c failed: APP_BAD_MODULE: boom']);
    const down = healthOf(surface(false, 'running'));
    expect(down.code).toBe(503);
    expect(down.report.problems).toEqual(['broker disconnected since 2030-01-01T00:00:00.000Z']);
  });
});

describe('HttpEndpoint options', () => {
  it('refuses a non-loopback host, a bad port, a bad limit and an unknown field, naming the field (BAD_OPTION)', () => {
    const bad = (o: unknown, prefix?: string) => caught(() => readHttpEndpointOptions(o as HttpEndpointOptions, prefix));
    for (const host of ['0.0.0.0', '192.168.1.20', '::', 'example.com', '']) {
      const e = bad({ port: 0, host });
      expect(e.code).toBe('BAD_OPTION');
      expect(e.details.field).toBe('options.host');
      expect(e.message).toContain('loopback');
    }
    expect(bad({ port: 0, host: '0.0.0.0' }, 'http').details.field).toBe('http.host');
    for (const port of [-1, 65_536, 1.5, '80', undefined]) expect(bad({ port }).details.field).toBe('options.port');
    expect(bad({ port: 0, maxConnections: 0 }).details.field).toBe('options.maxConnections');
    expect(bad({ port: 0, requestTimeoutMs: 10 }).details.field).toBe('options.requestTimeoutMs');
    expect(bad({ port: 0, hots: '127.0.0.1' }).details.field).toBe('options.hots');
    expect(bad(null).details.field).toBe('options');
    expect(readHttpEndpointOptions({ port: 0 })).toEqual({ port: 0, host: '127.0.0.1', maxConnections: 16, requestTimeoutMs: 10_000 });
  });

  it("the agent's observer option must be a RunnerObserver (BAD_OPTION naming it)", () => {
    for (const observer of [null, {}, { called() {}, dropped() {} }, 'x']) {
      expect(caught(() => readAgentOptions({ dataDir: 'x', observer } as unknown as AgentOptions)).details.field).toBe('options.observer');
    }
    expect(readAgentOptions({ dataDir: 'x', observer: new OpsMetrics() }).observer).toBeInstanceOf(OpsMetrics);
    expect(readAgentOptions({ dataDir: 'x' }).observer).toBeUndefined();
  });
});

describe('HttpEndpoint on a real socket', () => {
  let ep: HttpEndpoint;
  let calls = 0;
  const routes = {
    '/hello': () => ({ status: 200, contentType: 'text/plain', body: `hello ${++calls}\n` }),
    '/boom': () => {
      throw new Error('route failed');
    },
  };
  const logged: string[] = [];
  afterAll(() => ep?.close());

  it('answers GET and HEAD, 404 for an unknown path, 405 for another method, 403 for a foreign Host, 500 when a route throws', async () => {
    ep = await HttpEndpoint.start({ port: 0 }, routes, (_l, event) => logged.push(event));
    expect(ep.port).toBeGreaterThan(0);
    expect(ep.url).toBe(`http://127.0.0.1:${ep.port}`);
    const get = await fetch(`${ep.url}/hello?x=1`);
    expect(get.status).toBe(200);
    expect(get.headers.get('cache-control')).toBe('no-store');
    expect(await get.text()).toBe('hello 1\n');
    const head = await fetch(`${ep.url}/hello`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String('hello 2\n'.length));
    expect(await head.text()).toBe('');
    expect((await fetch(`${ep.url}/nope`)).status).toBe(404);
    expect((await fetch(`${ep.url}/`)).status).toBe(404);
    const post = await fetch(`${ep.url}/hello`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await fetch(`${ep.url}/hello`, { method: 'DELETE' })).status).toBe(405);
    // A page in a browser reaching the port through DNS rebinding sends its own host name.
    expect(await raw(ep.port, 'GET /hello HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 403 /);
    expect(await raw(ep.port, 'GET /hello HTTP/1.1\r\nHost: localhost:9\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
    const boom = await fetch(`${ep.url}/boom`);
    expect(boom.status).toBe(500);
    expect(logged).toContain('http.failed');
  });

  it('answers 400 to what is not HTTP (a malformed request line, a bad header, binary) and goes on serving', async () => {
    for (const junk of ['GARBAGE\r\n\r\n', 'GET /hello HTTP/9.9 extra\r\n\r\n', 'GET /hello HTTP/1.1\r\nBad Header\r\n\r\n', '\u0000\u0001\u0002\xff\r\n\r\n']) {
      expect(await raw(ep.port, junk)).toMatch(/^HTTP\/1\.1 400 /);
    }
    expect(await raw(ep.port, `GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431 /);
    // A client that connects and goes away, or sends half a request and closes.
    await raw(ep.port, '', 200);
    await raw(ep.port, 'GET /hel', 200);
    expect((await fetch(`${ep.url}/hello`)).status).toBe(200);
  });

  it('refuses a port already in use with BAD_OPTION naming it', async () => {
    const e = await caughtAsync(() => HttpEndpoint.start({ port: ep.port }, routes, undefined, 'http'));
    expect(e.code).toBe('BAD_OPTION');
    expect(e.details.field).toBe('http.port');
    expect(e.message).toContain('in use');
  });
});
