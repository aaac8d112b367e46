import { describe, expect, it } from 'vitest';
import { ERROR_CODES, FerryError, isFerryError, WIRE_DETAILS, type ErrorCode } from '../../core/errors.js';

describe('error family', () => {
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];

  it.each(codes)('%s is a stable, documented code', (code) => {
    expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
    expect(ERROR_CODES[code].length).toBeGreaterThan(10);
    const e = new FerryError(code, `something about options.x`, { field: 'options.x' });
    expect(e).toBeInstanceOf(Error);
    expect(isFerryError(e, code)).toBe(true);
    expect(e.toString()).toBe(`${code}: something about options.x`);
    expect(JSON.parse(JSON.stringify(e))).toEqual({ code, message: 'something about options.x', details: { field: 'options.x' } });
  });

  it('every code an app mailbox answers with (transports/PROTOCOL.md A.3, A.4) is in the list', () => {
    for (const code of ['APP_NO_HANDLER', 'APP_HANDLER_FAILED', 'APP_TIMEOUT', 'APP_ASYNC_HANDLER', 'HEAP_BAD_VALUE', 'APP_BAD_REQUEST', 'APP_ALREADY_APPLIED', 'MESSAGE_TOO_LARGE']) {
      expect(codes).toContain(code);
    }
  });

  it('every code a service answers with (transports/PROTOCOL.md "Services") is in the list', () => {
    for (const code of ['SERVICE_BAD_REQUEST', 'SERVICE_NOT_FOUND', 'SPACE_NOT_FOUND', 'SPACE_NO_MATCH', 'LEASE_DENIED', 'LEASE_UNKNOWN', 'LEASE_EXPIRED', 'LEASE_NOT_HOLDER', 'LEASE_FENCED', 'MESSAGE_TOO_LARGE']) {
      expect(codes).toContain(code);
    }
  });

  it('WIRE_DETAILS (the details an error answer carries, PROTOCOL §4.1) names only stable codes, each key once', () => {
    for (const [code, keys] of Object.entries(WIRE_DETAILS)) {
      expect(codes).toContain(code);
      expect(keys!.length).toBeGreaterThan(0);
      expect(new Set(keys).size).toBe(keys!.length);
      for (const k of keys!) expect(k).toMatch(/^[a-z][A-Za-z]+$/);
      // `field` and `from` have their own places in an answer and a FerryError.
      expect(keys).not.toContain('field');
      expect(keys).not.toContain('from');
    }
  });

  it('isFerryError distinguishes codes and foreign errors', () => {
    expect(isFerryError(new Error('x'))).toBe(false);
    expect(isFerryError(new FerryError('STORE_CLOSED', 'x'), 'STORE_CORRUPT')).toBe(false);
  });
});
