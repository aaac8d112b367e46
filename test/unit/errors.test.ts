import { describe, expect, it } from 'vitest';
import { ERROR_CODES, FerryError, isFerryError, type ErrorCode } from '../../core/errors.js';

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

  it('isFerryError distinguishes codes and foreign errors', () => {
    expect(isFerryError(new Error('x'))).toBe(false);
    expect(isFerryError(new FerryError('STORE_CLOSED', 'x'), 'STORE_CORRUPT')).toBe(false);
  });
});
