/**
 * The ops endpoint of a real agent process (`ferry start --http-port 0`) against a real Mosquitto:
 * the port is learnt from `ferry status` (and the `http.listening` log line), /metrics is scraped
 * with fetch and read by a strict parser, its counters move by exactly what the test did (control
 * calls, mailbox requests over MQTT, a repeat, a malformed message), and /healthz follows the
 * broker going down and up, an instance the operator suspended, and an instance that failed.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HealthReport } from '../../agent/ops/health.js';
import { PROMETHEUS_CONTENT_TYPE } from '../../agent/ops/prometheus-text.js';
import { appMailboxTopic, connectBus, ENVELOPE_VERSION, inboxTopic, type Envelope, type MqttBus } from '../../transports/index.js';
import { FERRY_MAIN, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startMosquitto, type MosquittoBroker } from '../helpers/brokers.js';
import { parseExposition, valueOf, type ParsedExposition } from './prometheus-parse.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const COUNTER = join(process.cwd(), 'apps', 'counter.mjs');
const dirs: string[] = [];
const tempDir = (tag: string) => {
  const d = mkdtempSync(join(tmpdir(), `ferry-ops-${tag}-`));
  dirs.push(d);
  return d;
};

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  const end = Date.now() + 30_000;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function scrape(url: string): Promise<ParsedExposition> {
  const r = await fetch(`${url}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toBe(PROMETHEUS_CONTENT_TYPE);
  return parseExposition(await r.text());
}

async function health(url: string): Promise<{ status: number; body: HealthReport }> {
  const r = await fetch(`${url}/healthz`);
  expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
  return { status: r.status, body: (await r.json()) as HealthReport };
}

function rawRequest(url: string, bytes: string): Promise<string> {
  const port = Number(new URL(url).port);
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('error', () => resolve(got));
    s.on('close', () => resolve(got));
    s.write(bytes);
  });
}

let broker: MosquittoBroker;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  broker = await startMosquitto();
});

afterAll(async () => {
  await agent?.kill();
  await broker?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('ferry start --http-port 0', () => {
  it('serves /metrics whose counters move by what was done, and /healthz that follows the broker and the instances', async () => {
    const dir = tempDir('agent');
    agent = startAgentProcess(dir, ['--broker', broker.url, '--http-port', '0']);
    const a = agent;
    const status = (await a.ready) as { httpUrl?: string };
    // The port the OS chose: in `ferry status` and in the log line.
    expect(status.httpUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const url = status.httpUrl!;
    const port = Number(new URL(url).port);
    expect(port).toBeGreaterThan(0);
    const listening = await until(async () => a.logs.find((l) => l.event === 'http.listening'), (l) => l !== undefined, 'http.listening');
    expect(listening).toMatchObject({ url, host: '127.0.0.1', port });

    await a.control('install', { path: COUNTER });
    await a.control('run', { app: 'counter' });
    expect(await health(url)).toMatchObject({ status: 200, body: { status: 'ok', problems: [], broker: { connected: true, reconnects: 0 }, instances: [{ instance: 'counter', app: 'counter', state: 'running', healthy: true }] } });

    const before = await scrape(url);
    const req = (outcome: string) => valueOf(before, 'ferry_mailbox_requests_total', { instance: 'counter', outcome });
    expect(valueOf(before, 'ferry_heap_resident_bytes', { instance: 'counter' })).toBeGreaterThan(0);
    expect(valueOf(before, 'ferry_heap_budget_bytes', { instance: 'counter' })).toBeGreaterThan(0);
    expect(valueOf(before, 'ferry_instances', { state: 'running' })).toBe(1);
    expect(valueOf(before, 'ferry_broker_connected')).toBe(1);
    expect(valueOf(before, 'process_resident_memory_bytes')).toBeGreaterThan(1e6);
    expect(valueOf(before, 'ferry_uptime_seconds')).toBeGreaterThan(0);
    for (const name of ['ferry_lease_renewals_total', 'ferry_lease_renewal_failures_total', 'ferry_store_bytes_written_total', 'ferry_heap_faults_total']) expect(before.types.get(name)).toBe('counter');

    // 5 control calls and one that fails (no such handler), each its own commit.
    for (let i = 0; i < 5; i++) await a.control('call', { instance: 'counter', handler: 'increment', message: null });
    await expect(a.control('call', { instance: 'counter', handler: 'nope', message: null })).rejects.toThrow(/nope/);

    // Over the mailbox: one request, the same id again (a repeat: nothing runs, no commit), and bytes that are no envelope.
    const client: MqttBus = await connectBus({ url: broker.url, deviceId: `ops-client-${process.pid}` });
    try {
      const answers: Envelope[] = [];
      await client.subscribe(inboxTopic(client.deviceId), (env) => void answers.push(env));
      const send = () => client.publishEnvelope(appMailboxTopic('counter'), { v: ENVELOPE_VERSION, type: 'app.call', id: 'ops-req-1', from: client.deviceId, replyTo: inboxTopic(client.deviceId), ts: Date.now(), body: { handler: 'increment', message: { by: 10 } } });
      await send();
      await until(async () => answers.length, (n) => n === 1, 'the answer');
      await send();
      await until(async () => answers.length, (n) => n === 2, 'the repeat answer');
      expect(answers.map((e) => [e.type, e.corr, e.body])).toEqual([
        ['app.call.ok', 'ops-req-1', { count: 15 }],
        ['app.call.ok', 'ops-req-1', { count: 15 }],
      ]);
      await client.publishRaw(appMailboxTopic('counter'), new Uint8Array([0xff, 0x00, 0x13]), { qos: 1 });
      await until(() => scrape(url), (m) => valueOf(m, 'ferry_mailbox_dropped_total', { instance: 'counter' }) === 1, 'the dropped message counted');
    } finally {
      await client.close();
    }

    const after = await scrape(url);
    const delta = (name: string, labels: Record<string, string> = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
    expect(valueOf(after, 'ferry_mailbox_requests_total', { instance: 'counter', outcome: 'ok' }) - req('ok')).toBe(6);
    expect(valueOf(after, 'ferry_mailbox_requests_total', { instance: 'counter', outcome: 'error' }) - req('error')).toBe(1);
    expect(valueOf(after, 'ferry_mailbox_requests_total', { instance: 'counter', outcome: 'repeat' }) - req('repeat')).toBe(1);
    // 7 commits: 5 increments, the failed call (its error is recorded under no id, but it is a call of the batch), the mailbox request.
    expect(delta('ferry_mailbox_commit_seconds_count', { instance: 'counter' })).toBe(7);
    expect(delta('ferry_mailbox_commit_seconds_sum', { instance: 'counter' })).toBeGreaterThan(0);
    expect(delta('ferry_mailbox_commit_seconds_bucket', { instance: 'counter', le: '+Inf' })).toBe(7);
    expect(delta('ferry_store_commits_total')).toBeGreaterThanOrEqual(7);
    expect(delta('ferry_store_bytes_written_total')).toBeGreaterThan(0);

    // Suspended by the operator: not a fault. Its heap figures go (no heap in memory), its counters stay.
    await a.control('suspend', { instance: 'counter' });
    const suspended = await health(url);
    expect(suspended).toMatchObject({ status: 200, body: { status: 'ok', instances: [{ instance: 'counter', state: 'suspended', healthy: true }] } });
    const m2 = await scrape(url);
    expect(valueOf(m2, 'ferry_instances', { state: 'suspended' })).toBe(1);
    expect(m2.samples.some((s) => s.name === 'ferry_heap_resident_bytes')).toBe(false);
    expect(valueOf(m2, 'ferry_mailbox_requests_total', { instance: 'counter', outcome: 'ok' })).toBe(valueOf(after, 'ferry_mailbox_requests_total', { instance: 'counter', outcome: 'ok' }));
    await a.control('resume', { instance: 'counter' });

    // The broker goes away: 503, saying why and since when; back: 200 and one reconnect.
    await broker.down();
    const down = await until(() => health(url), (h) => h.status === 503 && h.body.broker.downSince !== undefined, '/healthz 503');
    expect(down.body.status).toBe('unhealthy');
    expect(down.body.broker.connected).toBe(false);
    expect(typeof down.body.broker.downSince).toBe('string');
    expect(down.body.problems).toEqual([`broker disconnected since ${down.body.broker.downSince}`]);
    expect(valueOf(await scrape(url), 'ferry_broker_connected')).toBe(0);
    await broker.up();
    // 200 once the agent is connected and subscribed again (broker.back), not at the bare reconnect.
    const back = await until(() => health(url), (h) => h.status === 200, '/healthz 200 again');
    await until(async () => a.logs.some((l) => l.event === 'broker.back'), Boolean, 'the broker.back line');
    expect(back.body).toMatchObject({ status: 'ok', problems: [], broker: { connected: true, reconnects: 1 } });
    const m3 = await scrape(url);
    expect(valueOf(m3, 'ferry_broker_reconnects_total')).toBe(1);
    expect(valueOf(m3, 'ferry_broker_connected')).toBe(1);

    // What is not HTTP gets 400 and the agent goes on; other paths and methods are refused.
    expect(await rawRequest(url, 'BLAH /metrics HTTP/1.1 nonsense\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await rawRequest(url, '\u0016\u0003\u0001\u0000\u00a5\u0001\u0000\u0000\u00a1\u0003\u0003')).toMatch(/^HTTP\/1\.1 400 /); // a TLS ClientHello
    expect((await fetch(`${url}/debug`)).status).toBe(404);
    expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${url}/healthz`, { method: 'HEAD' })).status).toBe(200);
    expect(await a.control('status')).toMatchObject({ httpUrl: url });
    expect((await health(url)).status).toBe(200);

    // Shut down: the endpoint closes with the agent.
    await a.control('shutdown');
    await until(async () => a.proc.exitCode, (c) => c !== null, 'the agent to exit');
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });

  it('reports an instance that should run and cannot as 503 with its error (httpPort from the config file)', async () => {
    const dir = tempDir('failed');
    const cfg = join(dir, 'ferry.config.json');
    writeFileSync(cfg, JSON.stringify({ httpPort: 0, httpHost: '127.0.0.1' }));
    let a = startAgentProcess(dir, ['--broker', broker.url, '--config', cfg]);
    agent = a;
    await a.ready;
    await a.control('install', { path: COUNTER });
    await a.control('run', { app: 'counter' });
    await a.kill('SIGTERM');
    // The kept module is damaged while the agent is down: at the next start the instance cannot open.
    writeFileSync(join(dir, 'apps', 'counter.mjs'), 'export default {{{');
    a = startAgentProcess(dir, ['--broker', broker.url, '--config', cfg]);
    agent = a;
    const url = ((await a.ready) as { httpUrl: string }).httpUrl;
    const h = await health(url);
    expect(h.status).toBe(503);
    expect(h.body.status).toBe('unhealthy');
    expect(h.body.broker.connected).toBe(true);
    const inst = h.body.instances.find((i) => i.instance === 'counter')!;
    expect(inst).toMatchObject({ state: 'failed', healthy: false, error: expect.stringContaining('APP_BAD_MODULE') });
    expect(h.body.problems).toEqual([`instance counter failed: ${inst.error}`]);
    expect(valueOf(await scrape(url), 'ferry_instances', { state: 'failed' })).toBe(1);
    await a.kill('SIGTERM');
  });
});

describe('lease renewals', () => {
  it('counts the renewals of the lease sensor-log holds (a 10 s lease, renewed before it ends)', async () => {
    const dir = tempDir('leases');
    const a = startAgentProcess(dir, ['--port', '0', '--http-port', '0', '--samples']);
    agent = a;
    const url = ((await a.ready) as { httpUrl: string }).httpUrl;
    // The samples are installed and run once the agent answers.
    await until(() => a.control('leases') as Promise<Array<{ instance: string; type: string }>>, (l) => l.some((x) => x.instance === 'sensor-log' && x.type === 'sensor'), 'the sensor lease');
    const m = await until(() => scrape(url), (p) => valueOf(p, 'ferry_lease_renewals_total') >= 1, 'a lease renewal');
    expect(valueOf(m, 'ferry_lease_renewal_failures_total')).toBe(0);
    expect(valueOf(m, 'ferry_instances', { state: 'running' })).toBe(3);
    expect((await health(url)).status).toBe(200);
    await a.kill('SIGTERM');
  });
});

describe('ferry start with bad HTTP options', () => {
  const ferry = (args: string[]) =>
    new Promise<{ code: number; error: { code: string; field: string; message: string } }>((resolve) => {
      execFile(nodeCommand(), [FERRY_MAIN, 'start', '--port', '0', '--json', ...args], { timeout: 30_000 }, (err, stdout) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, error: (JSON.parse(stdout) as { error: { code: string; field: string; message: string } }).error });
      });
    });

  it('refuses a host that is not loopback (BAD_OPTION naming the flag) before it starts anything; a bad port or a host without a port is CLI_USAGE', async () => {
    const dir = tempDir('bad');
    const host = await ferry(['--data', dir, '--http-port', '0', '--http-host', '0.0.0.0']);
    expect(host.code).toBe(1);
    expect(host.error).toMatchObject({ code: 'BAD_OPTION', field: '--http-host' });
    expect(host.error.message).toContain('loopback');
    expect(existsSync(join(dir, 'store'))).toBe(false);
    expect((await ferry(['--data', dir, '--http-port', '70000'])).error).toMatchObject({ code: 'CLI_USAGE', field: '--http-port' });
    expect((await ferry(['--data', dir, '--http-host', '::1'])).error).toMatchObject({ code: 'CLI_USAGE', field: '--http-host' });
  });
});
