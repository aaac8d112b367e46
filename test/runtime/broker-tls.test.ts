/**
 * The agent over `mqtts://` with a client certificate, end to end: Mosquitto with a TLS
 * listener that requires a certificate signed by the test CA (`require_certificate true`,
 * `use_identity_as_username true`: the certificate's CN is the MQTT user, no password) and no
 * anonymous access, and a real agent process started with `--broker-ca/--broker-cert/--broker-key`
 * (or the config file's brokerCaFile/brokerCertFile/brokerKeyFile, relative to the file). The bus
 * and every mailbox session (separate MQTT connections) present the certificate; no key or file
 * content shows in any output. A wrong CA, a client certificate from an unrelated CA and none at
 * all are refused at once with BUS_TLS naming the option to check, not BUS_OFFLINE after the
 * connect timeout. The certificates come from test/helpers/certs.ts.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appMailboxTopic, connectBus, ENVELOPE_VERSION, inboxTopic, type Envelope } from '../../transports/index.js';
import { runFerry, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { freePort, startMosquitto, type MosquittoBroker } from '../helpers/brokers.js';
import { makeCerts, tlsListener, type TestCerts } from '../helpers/certs.js';

let certs: TestCerts;
let broker: MosquittoBroker;
let url: string;
const dir = mkdtempSync(join(tmpdir(), 'ferry-broker-tls-'));

beforeAll(async () => {
  certs = makeCerts();
  const port = await freePort();
  broker = await startMosquitto({ config: () => ['allow_anonymous false', ...tlsListener(certs, port, { requireClientCert: true })] });
  url = `mqtts://127.0.0.1:${port}`;
}, 30_000);

afterAll(async () => {
  await broker?.stop();
  certs?.remove();
  rmSync(dir, { recursive: true, force: true });
});

/** Lines of every key and certificate file of the set (base64 bodies): none may show in any output. */
function secrets(): string[] {
  const out: string[] = [];
  for (const f of ['ca.key', 'client.key', 'other-client.key', 'client.crt', 'other-client.crt', 'ca.crt', 'other-ca.crt']) {
    const lines = certs.read(f).split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'));
    out.push(...lines.slice(0, 3));
  }
  return out;
}

function expectNoKeyMaterial(text: string): void {
  expect(text).not.toContain('-----BEGIN');
  for (const s of secrets()) expect(text).not.toContain(s);
}

/** The agent's whole stdout and stderr, as written. */
function capture(a: AgentProcess): () => string {
  let text = '';
  a.proc.stdout!.on('data', (d: Buffer | string) => (text += d.toString()));
  a.proc.stderr!.on('data', (d: Buffer | string) => (text += d.toString()));
  return () => text;
}

/** Until the sample counter instance runs (--samples installs the apps after the control socket is up). */
async function counterRunning(a: AgentProcess): Promise<void> {
  for (;;) {
    const apps = (await a.control('apps')) as { instances: Array<{ instance: string; state: string }> };
    if (apps.instances.some((i) => i.instance === 'counter' && i.state === 'running')) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * What a user sees: `ferry call counter increment` and `ferry status` over the control socket; then
 * a request to the counter's mailbox over the TLS broker from a client of its own, answered by the
 * instance's mailbox session (its own MQTT connection, with the agent's client certificate).
 */
async function exercise(a: AgentProcess, output: () => string): Promise<void> {
  await a.ready;
  await counterRunning(a);
  const call = await runFerry(['call', 'counter', 'increment', '--data', a.dataDir, '--json']);
  expect(call).toMatchObject({ code: 0 });
  expect(JSON.parse(call.stdout)).toEqual({ count: 1 });
  const status = await runFerry(['status', '--data', a.dataDir, '--json']);
  expect(status.code).toBe(0);
  expect(JSON.parse(status.stdout)).toMatchObject({ brokerConnected: true, embeddedBroker: false });

  const client = await connectBus({ url, deviceId: 'tlscaller', tls: { ca: certs.read('ca.crt'), cert: certs.read('client.crt'), key: certs.read('client.key') } });
  try {
    const answer = new Promise<Envelope>((resolve) => void client.subscribe(inboxTopic('tlscaller'), (env) => env.corr === 'tls-call-1' && resolve(env)));
    await client.whenReady();
    await client.publishEnvelope(appMailboxTopic('counter'), {
      v: ENVELOPE_VERSION,
      type: 'app.call',
      id: 'tls-call-1',
      from: 'tlscaller',
      replyTo: inboxTopic('tlscaller'),
      ts: Date.now(),
      body: { handler: 'increment', message: null },
    });
    expect((await answer).body).toEqual({ count: 2 });
  } finally {
    await client.close();
  }
  expectNoKeyMaterial(output() + call.stdout + call.stderr + status.stdout + status.stderr);
}

describe('the agent over mqtts:// with a client certificate', () => {
  it('--broker-ca/--broker-cert/--broker-key: the agent, its mailboxes and its apps get through; no key material in any output', async () => {
    const a = startAgentProcess(join(dir, 'flags'), ['--broker', url, '--broker-ca', certs.caCert, '--broker-cert', certs.clientCert, '--broker-key', certs.clientKey, '--samples']);
    const output = capture(a);
    try {
      await exercise(a, output);
    } finally {
      await a.kill('SIGTERM');
    }
  });

  it('brokerCaFile/brokerCertFile/brokerKeyFile in ferry.config.json, relative to the file’s folder', async () => {
    const conf = join(dir, 'conf');
    mkdirSync(join(conf, 'tls'), { recursive: true });
    for (const f of ['ca.crt', 'client.crt', 'client.key']) copyFileSync(join(certs.dir, f), join(conf, 'tls', f));
    const file = join(conf, 'ferry.config.json');
    writeFileSync(file, JSON.stringify({ broker: url, brokerCaFile: 'tls/ca.crt', brokerCertFile: 'tls/client.crt', brokerKeyFile: 'tls/client.key' }));
    // Run from elsewhere (this test's working directory): the paths resolve against the config file.
    const a = startAgentProcess(join(dir, 'config-data'), ['--config', file, '--samples']);
    const output = capture(a);
    try {
      await exercise(a, output);
    } finally {
      await a.kill('SIGTERM');
    }
  });
});

describe('refusals: at once, typed, naming the option (never BUS_OFFLINE after the connect timeout)', () => {
  it.each([
    ['a CA that did not sign the broker’s certificate', 'brokerCaFile', () => ['--broker-ca', certs.otherCaCert, '--broker-cert', certs.clientCert, '--broker-key', certs.clientKey], /certificate failed verification .*check brokerCaFile/],
    ['a client certificate from an unrelated CA', 'brokerCertFile', () => ['--broker-ca', certs.caCert, '--broker-cert', certs.otherClientCert, '--broker-key', certs.otherClientKey], /refused .*alert unknown_ca.*check brokerCertFile and brokerKeyFile/],
    ['no client certificate for a broker that requires one', 'brokerCertFile', () => ['--broker-ca', certs.caCert], /refused .*alert certificate_required.*set brokerCertFile and brokerKeyFile/],
  ] as const)('%s: BUS_TLS naming %s', async (what, field, flags, message) => {
    const r = await runFerry(['start', '--broker', url, ...flags(), '--data', join(dir, `refused-${field}-${what.length}`), '--json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { error: { code: string; field: string; message: string } };
    // BUS_OFFLINE would mean it retried until the connect timeout (10 s by default).
    expect(out.error.code).not.toBe('BUS_OFFLINE');
    expect(out.error).toMatchObject({ code: 'BUS_TLS', field });
    expect(out.error.message).toMatch(message);
    expectNoKeyMaterial(r.stdout + r.stderr);
  });

  it.each([
    ['a key that is not the certificate’s', 'options.brokerKeyFile', () => ['--broker-ca', certs.caCert, '--broker-cert', certs.clientCert, '--broker-key', certs.otherClientKey], /is not the key of brokerCertFile/],
    ['a key given as the CA file', 'options.brokerCaFile', () => ['--broker-ca', certs.clientKey], /is not a PEM certificate/],
    ['a key given as the certificate', 'options.brokerCertFile', () => ['--broker-ca', certs.caCert, '--broker-cert', certs.clientKey, '--broker-key', certs.clientKey], /is not a PEM certificate/],
  ] as const)('%s is BAD_OPTION naming %s before anything connects, and never shows the file', async (what, field, flags, message) => {
    const r = await runFerry(['start', '--broker', url, ...flags(), '--data', join(dir, `bad-${what.length}`), '--json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { error: { code: string; field: string; message: string } };
    expect(out.error).toMatchObject({ code: 'BAD_OPTION', field });
    expect(out.error.message).toMatch(message);
    expectNoKeyMaterial(r.stdout + r.stderr);
  });
});
