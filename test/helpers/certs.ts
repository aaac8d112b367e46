/**
 * Throwaway X.509 material for the live TLS tests, made with `openssl` at test time in a
 * temp dir (never checked in, gone at `remove()`):
 *
 * - `ca.crt`/`ca.key`: the test CA.
 * - `server.crt`/`server.key`: signed by it, for IP:127.0.0.1 and DNS:localhost.
 * - `client.crt`/`client.key`: a client certificate (CN `ferry-test-client`, clientAuth) signed by the CA.
 * - `other-ca.crt`/`other-ca.key`: an unrelated CA.
 * - `other-client.crt`/`other-client.key`: a client certificate signed by the unrelated CA.
 *
 * Every file is readable by all (Mosquitto started as root drops to its own user before it
 * reads them; these keys protect nothing). A missing `openssl` throws: the tests that need it
 * fail, they are never skipped.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCerts {
  /** The temp dir holding every file below. */
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** The CN of `clientCert` (the user name with Mosquitto's `use_identity_as_username`). */
  readonly clientName: string;
  readonly otherCaCert: string;
  readonly otherClientCert: string;
  readonly otherClientKey: string;
  /** A file of the set, as text (by path or by name in `dir`). */
  read(file: string): string;
  /** Deletes the dir. */
  remove(): void;
}

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error('openssl is not installed: the live TLS tests need it to make a throwaway CA (apt-get install -y openssl)');
  }
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

const DAYS = ['-days', '2'];

function makeCa(dir: string, name: string, cn: string): void {
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, ...DAYS, '-subj', `/CN=${cn}`]);
}

/** A key and a certificate `${name}.crt` for `cn`, signed by the CA `${ca}.crt`, with the extensions given. */
function makeSigned(dir: string, name: string, cn: string, ca: string, extensions: string): void {
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, ...DAYS, '-extfile', `${name}.ext`]);
}

/** Makes the whole set in a new temp dir (about a second: five RSA keys). */
export function makeCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-certs-'));
  try {
    const clientName = 'ferry-test-client';
    makeCa(dir, 'ca', 'ferry-test-ca');
    makeCa(dir, 'other-ca', 'ferry-other-ca');
    makeSigned(dir, 'server', 'localhost', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    makeSigned(dir, 'client', clientName, 'ca', 'extendedKeyUsage=clientAuth\n');
    makeSigned(dir, 'other-client', clientName, 'other-ca', 'extendedKeyUsage=clientAuth\n');
    chmodSync(dir, 0o755);
    for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
    const at = (f: string) => join(dir, f);
    return {
      dir,
      caCert: at('ca.crt'),
      caKey: at('ca.key'),
      serverCert: at('server.crt'),
      serverKey: at('server.key'),
      clientCert: at('client.crt'),
      clientKey: at('client.key'),
      clientName,
      otherCaCert: at('other-ca.crt'),
      otherClientCert: at('other-client.crt'),
      otherClientKey: at('other-client.key'),
      read: (f) => readFileSync(f.includes('/') ? f : at(f), 'utf8'),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Mosquitto configuration lines (for `startMosquitto({ config })`) of a TLS listener on
 * `port` serving `certs`' server certificate; with `requireClientCert`, only clients with a
 * certificate signed by the test CA get in, their CN as user name.
 */
export function tlsListener(certs: TestCerts, port: number, options: { requireClientCert?: boolean } = {}): string[] {
  return [
    `listener ${port} 127.0.0.1`,
    `cafile ${certs.caCert}`,
    `certfile ${certs.serverCert}`,
    `keyfile ${certs.serverKey}`,
    ...(options.requireClientCert ? ['require_certificate true', 'use_identity_as_username true'] : []),
  ];
}
