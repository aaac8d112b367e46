import { randomFillSync } from 'node:crypto';

/**
 * 128-bit random ids (message ids, lease ids, request ids), base64url, 22 characters.
 *
 * Why a pool: `randomBytes(16)` is one call into the CSPRNG per id, ~2–6 µs each
 * here, and a lease grant makes four ids (request, reqId, answer, lease): about
 * a tenth of a loopback round trip. Filling 4 KiB at once and slicing it costs
 * the same per byte and once per 256 ids. The bytes are the same CSPRNG output,
 * each used once, so the ids stay unguessable; only their generation is batched.
 */
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

export function randomId128(): string {
  if (offset + 16 > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const id = pool.toString('base64url', offset, offset + 16);
  // Wipe what was handed out: a later heap dump or buffer bug must not reveal issued ids.
  pool.fill(0, offset, offset + 16);
  offset += 16;
  return id;
}
