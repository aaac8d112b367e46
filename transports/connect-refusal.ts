import { FerryError } from '../core/errors.js';

/**
 * Connection failures that every retry would meet again, told apart from a broker that is
 * merely away: the connecting call refuses at once with a typed error instead of retrying
 * until BUS_OFFLINE.
 */

/** Node's codes for a server certificate that failed verification. */
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** BUS_TLS for a certificate verification failure, else undefined. */
function tlsVerifyError(e: unknown): FerryError | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !TLS_VERIFY_CODES.has(code)) return undefined;
  return new FerryError('BUS_TLS', `the broker's certificate failed verification (${code}: ${(e as Error).message}); check options.tls.ca and the URL's host name`, { field: 'options.tls.ca', tlsCode: code }, { cause: e });
}

/**
 * TLS alerts a broker sends when it refuses this client's certificate: none given to a broker
 * that requires one (TLS 1.3 `certificate_required`; TLS 1.2 brokers answer `handshake_failure`),
 * one signed by a CA the broker does not trust (`unknown_ca`), or one it rejects otherwise.
 * Node reports them on the socket after the handshake (TLS 1.3) or during it (TLS 1.2).
 */
const TLS_PEER_REFUSED_CODES = new Set([
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED',
]);

/** BUS_TLS for a broker that refused this client's certificate (or its lack of one), else undefined. */
function tlsPeerRefusedError(e: unknown): FerryError | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !TLS_PEER_REFUSED_CODES.has(code)) return undefined;
  const alert = code.replace(/^ERR_SSL_(SSLV3|TLSV1|TLSV13)_ALERT_/, '').toLowerCase();
  return new FerryError(
    'BUS_TLS',
    `the broker refused the TLS connection (alert ${alert}): it requires a client certificate signed by a CA it trusts; check options.tls.cert and options.tls.key`,
    { field: 'options.tls.cert', tlsCode: code },
    { cause: e },
  );
}

/**
 * BUS_AUTH for a CONNACK that refuses the client (MQTT 3.1.1 return codes 4, bad user name or
 * password, and 5, not authorized), else undefined. The message names the field, never its value.
 */
function authRefusedError(e: unknown): FerryError | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (code !== 4 && code !== 5) return undefined;
  const field = code === 4 ? 'options.password' : 'options.username';
  const why = code === 4 ? 'bad user name or password' : 'not authorized';
  return new FerryError('BUS_AUTH', `the broker refused the connection: ${why} (CONNACK return code ${code}); check ${field}`, { field, returnCode: code });
}

/** BUS_TLS or BUS_AUTH for a failure that retrying cannot cure, else undefined. */
export function connectRefusal(e: unknown): FerryError | undefined {
  return tlsVerifyError(e) ?? tlsPeerRefusedError(e) ?? authRefusedError(e);
}
