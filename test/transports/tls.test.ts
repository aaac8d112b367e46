/**
 * Live TLS: a throwaway CA and server certificate made with `openssl` at test
 * time, Mosquitto with a TLS listener on a loopback port, a lease round trip over
 * it with CA verification, and a wrong CA refused with a typed error; a listener that requires
 * a client certificate lets one signed by the CA in, and refuses one from another CA, or none,
 * at once with BUS_TLS naming options.tls.cert (bus and durable session).
 * A missing `openssl` fails the suite (it is never skipped). The certificates come from
 * test/helpers/certs.ts (test/runtime/broker-tls.test.ts runs the agent with a client certificate).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseClient, LeaseGrantor } from '../../agent/services/index.js';
import { connectBus, DurableSession, type MqttBus } from '../../transports/index.js';
import { freePort, startMosquitto, type TestBroker } from '../helpers/brokers.js';
import { makeCerts, tlsListener, type TestCerts } from '../helpers/certs.js';

describe('TLS to Mosquitto with a throwaway CA', () => {
  let certs: TestCerts;
  let broker: TestBroker;
  let tlsPort: number;
  /** A second TLS listener that requires a client certificate signed by the CA. */
  let mtlsPort: number;
  const buses: MqttBus[] = [];

  beforeAll(async () => {
    certs = makeCerts();
    tlsPort = await freePort();
    mtlsPort = await freePort();
    broker = await startMosquitto({ config: () => ['allow_anonymous true', ...tlsListener(certs, tlsPort), ...tlsListener(certs, mtlsPort, { requireClientCert: true })] });
  }, 30_000);

  afterAll(async () => {
    for (const b of buses) await b.close();
    await broker?.stop();
    certs?.remove();
  });

  const url = () => `mqtts://127.0.0.1:${tlsPort}`;

  it('a lease round trip over TLS, the server verified against the CA', async () => {
    const ca = certs.read('ca.crt');
    const provider = await connectBus({ url: url(), deviceId: 'tlsprov', tls: { ca } });
    buses.push(provider);
    const holder = await connectBus({ url: url(), deviceId: 'tlshold', tls: { ca } });
    buses.push(holder);
    const grantor = await LeaseGrantor.start(provider, { stateFile: join(certs.dir, 'grantor.sqlite') });
    try {
      grantor.offer('lamp', { exclusive: true });
      const client = new LeaseClient(holder);
      const lease = await client.grant({ leaseTopic: grantor.topic, service: 'lamp' }, 5000);
      expect(lease.holder).toBe('tlshold');
      expect(lease.fence).toBeGreaterThan(0);
      expect(grantor.holds(lease.leaseId, 'tlshold', 'lamp')).toBe(true);
      expect(await client.cancel(lease)).toBe('cancelled');
    } finally {
      await grantor.close();
    }
  });

  it('a broker whose certificate is not signed by the given CA is refused with BUS_TLS naming options.tls.ca', async () => {
    const wrong = certs.read('other-ca.crt');
    await expect(connectBus({ url: url(), deviceId: 'tlswrong', tls: { ca: wrong }, connectTimeoutMs: 5000 })).rejects.toMatchObject({
      code: 'BUS_TLS',
      details: { field: 'options.tls.ca' },
    });
  });

  it.each([
    ['one signed by an unrelated CA', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', () => ({ cert: certs.read('other-client.crt'), key: certs.read('other-client.key') })],
    ['none', 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', () => ({})],
  ] as const)('a listener that requires a client certificate: %s is refused at once with BUS_TLS naming options.tls.cert', async (_what, tlsCode, client) => {
    const mtls = `mqtts://127.0.0.1:${mtlsPort}`;
    const ca = certs.read('ca.crt');
    // A BUS_OFFLINE would come only after connectTimeoutMs, and fail the match.
    const refused = { code: 'BUS_TLS', details: { field: 'options.tls.cert', tlsCode } };
    await expect(connectBus({ url: mtls, deviceId: 'mtlsno', tls: { ca, ...client() }, connectTimeoutMs: 20_000 })).rejects.toMatchObject(refused);
    await expect(DurableSession.connect({ url: mtls, clientId: 'mtls-no', filter: 'ferry/test/#', tls: { ca, ...client() }, connectTimeoutMs: 20_000 }, () => undefined)).rejects.toMatchObject(refused);
  });

  it('a listener that requires a client certificate: one signed by the CA gets the bus and a durable session in', async () => {
    const tls = { ca: certs.read('ca.crt'), cert: certs.read('client.crt'), key: certs.read('client.key') };
    const mtls = `mqtts://127.0.0.1:${mtlsPort}`;
    const bus = await connectBus({ url: mtls, deviceId: 'mtlsyes', tls });
    buses.push(bus);
    expect(bus.connected).toBe(true);
    const session = await DurableSession.connect({ url: mtls, clientId: 'mtls-yes', filter: 'ferry/test/#', tls }, () => undefined);
    expect(session.connected).toBe(true);
    await session.close();
  });

  it('the plain listener of the same broker still serves (TLS is per listener)', async () => {
    const plain = await connectBus({ url: broker.url, deviceId: 'plain1' });
    buses.push(plain);
    expect(plain.connected).toBe(true);
  });
});
