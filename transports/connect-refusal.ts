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
  return tlsVerifyError(e) ?? authRefusedError(e);
}
