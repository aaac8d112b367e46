/**
 * Live TLS: a throwaway CA and server certificate made with `openssl` at test
 * time, Mosquitto with a TLS listener on a loopback port, a lease round trip over
 * it with CA verification, and a wrong CA refused with a typed error.
 * A missing `openssl` fails the suite (it is never skipped).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseClient, LeaseGrantor } from '../../agent/services/index.js';
import { connectBus, type MqttBus } from '../../transports/index.js';
import { freePort, startMosquitto, type TestBroker } from '../helpers/brokers.js';

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error('openssl is not installed: the live TLS test needs it to make a throwaway CA (apt-get install -y openssl)');
  }
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/** A CA (ca.crt/ca.key), a server certificate for 127.0.0.1 signed by it, and an unrelated CA (other-ca.crt). */
function makeCerts(dir: string): void {
  const days = ['-days', '2'];
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', ...days, '-subj', '/CN=ferry-test-ca']);
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other-ca.key', '-out', 'other-ca.crt', ...days, '-subj', '/CN=ferry-other-ca']);
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', ...days, '-extfile', 'ext.cnf']);
  // Mosquitto started as root drops to its own user before reading them: let it (throwaway keys).
  chmodSync(dir, 0o755);
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
}

describe('TLS to Mosquitto with a throwaway CA', () => {
  let certs: string;
  let broker: TestBroker;
  let tlsPort: number;
  const buses: MqttBus[] = [];

  beforeAll(async () => {
    certs = mkdtempSync(join(tmpdir(), 'ferry-tls-'));
    makeCerts(certs);
    tlsPort = await freePort();
    broker = await startMosquitto({
      config: () => [
        'allow_anonymous true',
        `listener ${tlsPort} 127.0.0.1`,
        `cafile ${join(certs, 'ca.crt')}`,
        `certfile ${join(certs, 'server.crt')}`,
        `keyfile ${join(certs, 'server.key')}`,
      ],
    });
  }, 30_000);

  afterAll(async () => {
    for (const b of buses) await b.close();
    await broker?.stop();
    rmSync(certs, { recursive: true, force: true });
  });

  const url = () => `mqtts://127.0.0.1:${tlsPort}`;

  it('a lease round trip over TLS, the server verified against the CA', async () => {
    const ca = readFileSync(join(certs, 'ca.crt'), 'utf8');
    const provider = await connectBus({ url: url(), deviceId: 'tlsprov', tls: { ca } });
    buses.push(provider);
    const holder = await connectBus({ url: url(), deviceId: 'tlshold', tls: { ca } });
    buses.push(holder);
    const grantor = await LeaseGrantor.start(provider, { stateFile: join(certs, 'grantor.sqlite') });
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
    const wrong = readFileSync(join(certs, 'other-ca.crt'), 'utf8');
    await expect(connectBus({ url: url(), deviceId: 'tlswrong', tls: { ca: wrong }, connectTimeoutMs: 5000 })).rejects.toMatchObject({
      code: 'BUS_TLS',
      details: { field: 'options.tls.ca' },
    });
  });

  it('the plain listener of the same broker still serves (TLS is per listener)', async () => {
    const plain = await connectBus({ url: broker.url, deviceId: 'plain1' });
    buses.push(plain);
    expect(plain.connected).toBe(true);
  });
});
