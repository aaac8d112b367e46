import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { FerryError, isFerryError } from '../../core/errors.js';
import type { OptionReader } from '../../core/options.js';
import type { BusSessionOptions } from '../../transports/contract.js';
import { redactUrl } from '../../transports/options.js';

/** The agent's broker credentials options (fields of AgentOptions and ferry.config.json). */
export interface BrokerCredentialOptions {
  /** MQTT user name, given to the broker of `brokerUrl`. Default none. */
  brokerUsername?: string;
  /** A file whose first line is the MQTT password (read at start, never logged; keep it mode 0600). Default none. */
  brokerPasswordFile?: string;
  /** PEM file of the CA that signed an `mqtts://` broker's certificate. Default: the system's CAs. */
  brokerCaFile?: string;
  /** PEM files of a client certificate and its key, for a broker that asks for one. Given together. Default none. */
  brokerCertFile?: string;
  brokerKeyFile?: string;
}

export const BROKER_CREDENTIAL_KEYS = ['brokerUsername', 'brokerPasswordFile', 'brokerCaFile', 'brokerCertFile', 'brokerKeyFile'] as const;

/** What the bus and the mailbox sessions are given: user name, password, TLS material. */
export type BrokerCredentials = Pick<BusSessionOptions, 'username' | 'password' | 'tls'>;

function readFile(r: OptionReader, name: string, what: string): Buffer {
  const path = r.string(name);
  try {
    return readFileSync(path);
  } catch (e) {
    // The path and the reason only: never a byte of the file.
    throw new FerryError('BAD_OPTION', `${r.prefix}.${name}: cannot read ${what} file ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { field: `${r.prefix}.${name}` });
  }
}

/**
 * Reads and checks the credentials options: only with a broker URL (the embedded broker needs
 * none), TLS files only with an `mqtts://` URL, certificate and key together. The password is
 * the file's first line, kept as bytes and never printed.
 */
export function readBrokerCredentials(r: OptionReader, brokerUrl: string | undefined): BrokerCredentials {
  const given = BROKER_CREDENTIAL_KEYS.filter((k) => r.has(k));
  if (given.length === 0) return {};
  if (brokerUrl === undefined) r.fail(given[0]!, 'given only with brokerUrl (the embedded broker takes no credentials)', '(set)');
  const out: BrokerCredentials = {};
  if (r.has('brokerUsername')) out.username = r.string('brokerUsername');
  if (r.has('brokerPasswordFile')) {
    const text = readFile(r, 'brokerPasswordFile', 'password');
    const nl = text.indexOf(10);
    const line = nl >= 0 ? text.subarray(0, nl > 0 && text[nl - 1] === 13 ? nl - 1 : nl) : text;
    if (line.length === 0) r.fail('brokerPasswordFile', 'a file whose first line is the password (it is empty)', r.string('brokerPasswordFile'));
    out.password = Buffer.from(line);
  }
  const tlsKeys = ['brokerCaFile', 'brokerCertFile', 'brokerKeyFile'].filter((k) => r.has(k));
  if (tlsKeys.length > 0) {
    if (!brokerUrl!.startsWith('mqtts://')) r.fail(tlsKeys[0]!, 'given only with an mqtts:// brokerUrl', r.string(tlsKeys[0]!));
    if (r.has('brokerCertFile') !== r.has('brokerKeyFile')) r.fail(r.has('brokerCertFile') ? 'brokerKeyFile' : 'brokerCertFile', 'given together with the other (a client certificate and its key)', undefined);
    out.tls = {
      ...(r.has('brokerCaFile') ? { ca: readFile(r, 'brokerCaFile', 'CA certificate') } : {}),
      ...(r.has('brokerCertFile') ? { cert: readFile(r, 'brokerCertFile', 'client certificate'), key: readFile(r, 'brokerKeyFile', 'client key') } : {}),
    };
    checkTlsFiles(r, out.tls);
  }
  return out;
}

/**
 * The TLS files parse, and the key is the certificate's: checked at start, where the error can
 * name the option, rather than by the first connection (an untyped OpenSSL error). The messages
 * carry OpenSSL's reason and the path, never a byte of the files.
 */
function checkTlsFiles(r: OptionReader, tls: NonNullable<BrokerCredentials['tls']>): void {
  const bad = (name: string, what: string, e?: unknown): never => {
    const why = e === undefined ? '' : ` (${(e as Error).message.replace(/^error:[0-9A-F]+:/, '')})`;
    throw new FerryError('BAD_OPTION', `${r.prefix}.${name}: ${r.string(name)} ${what}${why}`, { field: `${r.prefix}.${name}` });
  };
  const pem = (v: string | Uint8Array) => Buffer.from(v).toString('latin1');
  if (tls.ca !== undefined) {
    // A bundle may start with comments and hold several; the first plain one must parse.
    const text = pem(tls.ca);
    if (!/-----BEGIN (TRUSTED )?CERTIFICATE-----/.test(text)) bad('brokerCaFile', 'is not a PEM certificate');
    if (text.includes('-----BEGIN CERTIFICATE-----')) {
      try {
        new X509Certificate(Buffer.from(tls.ca));
      } catch (e) {
        bad('brokerCaFile', 'is not a PEM certificate', e);
      }
    }
  }
  if (tls.cert === undefined || tls.key === undefined) return;
  try {
    createSecureContext({ cert: Buffer.from(tls.cert) });
  } catch (e) {
    bad('brokerCertFile', 'is not a PEM certificate', e);
  }
  try {
    createSecureContext({ key: Buffer.from(tls.key) });
  } catch (e) {
    bad('brokerKeyFile', 'is not an unencrypted PEM private key', e);
  }
  try {
    createSecureContext({ cert: Buffer.from(tls.cert), key: Buffer.from(tls.key) });
  } catch (e) {
    bad('brokerKeyFile', 'is not the key of brokerCertFile', e);
  }
}

/**
 * A BUS_TLS from the bus in the agent's options: the broker's certificate failed verification
 * (`options.tls.ca`: brokerCaFile), or the broker refused the client certificate or its absence
 * (`options.tls.cert`: brokerCertFile and brokerKeyFile).
 */
function tlsInAgentTerms(e: FerryError, c: BrokerCredentials, brokerUrl: string | undefined): FerryError {
  const url = brokerUrl === undefined ? 'the broker' : `the broker ${redactUrl(brokerUrl)}`;
  const tlsCode = String(e.details.tlsCode);
  if (e.details.field === 'options.tls.cert') {
    const alert = tlsCode.replace(/^ERR_SSL_(SSLV3|TLSV1|TLSV13)_ALERT_/, '').toLowerCase();
    const check = c.tls?.cert !== undefined ? 'check brokerCertFile and brokerKeyFile (a certificate signed by a CA the broker trusts)' : 'it requires a client certificate: set brokerCertFile and brokerKeyFile';
    return new FerryError('BUS_TLS', `${url} refused this agent's TLS connection (alert ${alert}); ${check}`, { field: 'brokerCertFile', tlsCode }, { cause: e });
  }
  const reason = e.cause instanceof Error ? `: ${e.cause.message}` : '';
  const check = c.tls?.ca !== undefined ? 'check brokerCaFile' : "set brokerCaFile (none given: the system's CAs were used)";
  return new FerryError('BUS_TLS', `${url}'s certificate failed verification (${tlsCode}${reason}); ${check} and the broker URL's host name`, { field: 'brokerCaFile', tlsCode }, { cause: e });
}

/**
 * A BUS_AUTH from the bus, restated in the agent's own options (what the owner sets), not the
 * bus's. Brokers answer a wrong password as "not authorized" too (Mosquitto does), so: no user
 * name given (by option or in the URL), name that; else the password. Other errors pass as they are.
 */
export function inAgentTerms(e: unknown, c: BrokerCredentials, brokerUrl: string | undefined): unknown {
  if (isFerryError(e, 'BUS_TLS')) return tlsInAgentTerms(e, c, brokerUrl);
  if (!isFerryError(e, 'BUS_AUTH')) return e;
  const field = c.username === undefined && !/\/\/[^/@]+@/.test(brokerUrl ?? '') ? 'brokerUsername' : 'brokerPasswordFile';
  const url = brokerUrl === undefined ? 'the broker' : `the broker ${redactUrl(brokerUrl)}`;
  return new FerryError('BUS_AUTH', `${url} refused this agent's credentials (CONNACK return code ${String(e.details.returnCode)}); check ${field}${field === 'brokerUsername' ? ' and brokerPasswordFile (it asks for them)' : ' and brokerUsername'}`, { field });
}
