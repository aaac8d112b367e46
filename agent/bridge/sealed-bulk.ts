import { createHash, randomBytes } from 'node:crypto';
import { FerryError } from '../../core/errors.js';
import { describe } from '../../core/options.js';
import { encodeCbor } from '../../transports/envelope.js';
import type { Channels } from './channel.js';

/**
 * Bulk data over the sealed channel (DESIGN.md, "Sealed bulk"): the shape of the plain chunked
 * transfer (offer, chunks acknowledged inside a window, a digest-checked commit), with every
 * chunk and acknowledgement a sealed record. The channel's records arrive in order or not at all,
 * so there are no bitmaps and no resends: a lost record ends the session and the transfer fails
 * whole (the handoff that uses it starts over from its last durable step).
 */

export interface SealedBulkOptions {
  /** Bytes per chunk record. Default 65,536; 1..(the channel's frame limit less 128). */
  chunkBytes?: number;
  /** Chunks sent and not yet acknowledged, at most. Default 16; 1..256. */
  window?: number;
  /** Passed to the receiver with the data. */
  meta?: unknown;
  /** How long the open and commit requests wait, ms. Default: the channel's request timeout. Also the longest wait for an ack (default 10,000). */
  timeoutMs?: number;
}

export interface SealedBulkResult {
  transferId: string;
  bytes: number;
  chunks: number;
  ms: number;
}

export interface SealedTransfer {
  from: string;
  data: Buffer;
  meta: unknown;
}

/** An incoming transfer with no chunk for this long is dropped at the next open, ms. */
const IDLE_MS = 30_000;

interface Incoming {
  lastActivity: number;
  from: string;
  data: Buffer;
  chunkBytes: number;
  chunks: number;
  next: number;
  digest: Buffer;
  meta: unknown;
}

/** Longest wait for an ack when options.timeoutMs is not given, ms (the bridge's default request timeout). */
const ACK_TIMEOUT_MS = 10_000;

interface Outgoing {
  acked: number;
  wake: (() => void) | undefined;
  /** Why the transfer fails: a chunk could not be sent, or no ack came in time (the session ended). */
  failed: unknown;
}

function int(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new FerryError('BRIDGE_FRAME_MALFORMED', `body.${name} must be an integer in ${min}..${max}, got ${describe(v)}`, { field: `body.${name}` });
  }
  return v;
}

function body(v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new FerryError('BRIDGE_FRAME_MALFORMED', `body must be a map, got ${describe(v)}`, { field: 'body' });
  return v as Record<string, unknown>;
}

function transferId(v: unknown): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]{8,64}$/.test(v)) throw new FerryError('BRIDGE_FRAME_MALFORMED', `body.x must be a transfer id, got ${describe(v)}`, { field: 'body.x' });
  return v;
}

/**
 * A `bulk.chunk` record, `{t, b: {x, n, a?, d}}`, as CBOR in two parts: everything up to the
 * byte string header of `d`, then `d` itself. The channel seals the two as one plaintext, so the
 * chunk is not copied into an encoder first (the CBOR is the same as encoding the whole map).
 */
export function chunkRecord(x: string, n: number, ack: boolean, d: Uint8Array): Buffer[] {
  const head = encodeCbor({ t: 'bulk.chunk', b: { x, n, ...(ack ? {} : { a: false }), d: EMPTY } });
  // The empty byte string `d` encodes as its last byte, 0x40: put d's real header there.
  if (head[head.length - 1] !== 0x40) throw new Error('bulk.chunk: d is not the last item of its CBOR');
  const len = d.length;
  const header = len < 24 ? Buffer.of(0x40 + len) : len < 0x100 ? Buffer.of(0x58, len) : len < 0x10000 ? Buffer.of(0x59, len >> 8, len & 0xff) : Buffer.from([0x5a, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff]);
  return [Buffer.concat([head.subarray(0, head.length - 1), header]), Buffer.from(d.buffer, d.byteOffset, d.length)];
}

const EMPTY = Buffer.alloc(0);

/** Sends and receives sealed bulk transfers on one device's channels. */
export class SealedBulk {
  private readonly incoming = new Map<string, Incoming>();
  private readonly outgoing = new Map<string, Outgoing>();

  constructor(
    private readonly channels: Channels,
    private readonly limits: { maxTransferBytes: number; maxTransfers: number; maxChunkBytes: number },
    private readonly onTransfer: (t: SealedTransfer) => void,
  ) {
    channels.handle('bulk.open', (peer, b) => this.onOpen(peer, body(b)));
    channels.handle('bulk.chunk', (peer, b) => this.onChunk(peer, body(b)));
    channels.handle('bulk.ack', (peer, b) => this.onAck(body(b)));
    channels.handle('bulk.commit', (peer, b) => this.onCommit(peer, body(b)));
  }

  async send(peer: string, data: Uint8Array, options: SealedBulkOptions = {}): Promise<SealedBulkResult> {
    const chunkBytes = options.chunkBytes ?? 65_536;
    const window = options.window ?? 16;
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > this.limits.maxChunkBytes) {
      throw new FerryError('BAD_OPTION', `options.chunkBytes must be an integer in 1..${this.limits.maxChunkBytes}, got ${describe(chunkBytes)}`, { field: 'options.chunkBytes' });
    }
    if (!Number.isInteger(window) || window < 1 || window > 256) throw new FerryError('BAD_OPTION', `options.window must be an integer in 1..256, got ${describe(window)}`, { field: 'options.window' });
    const t0 = performance.now();
    const x = randomBytes(12).toString('base64url');
    const chunks = Math.ceil(data.length / chunkBytes);
    const digest = createHash('sha256').update(data).digest();
    const out: Outgoing = { acked: 0, wake: undefined, failed: undefined };
    this.outgoing.set(x, out);
    try {
      await this.channels.request(peer, 'bulk.open', { x, size: data.length, chunkBytes, chunks, digest, meta: options.meta ?? null }, options.timeoutMs);
      // Records arrive in order, so an ack of chunk n covers 0..n: asking for one every quarter
      // window keeps the window moving with a quarter of the ack records (each a sealed publish).
      const ackEvery = Math.max(1, Math.floor(window / 4));
      let last: Promise<void> = Promise.resolve();
      for (let i = 0; i < chunks; i++) {
        while (out.failed === undefined && i - out.acked >= window) await this.ackOrStall(out, peer, x, options.timeoutMs ?? ACK_TIMEOUT_MS);
        if (out.failed !== undefined) throw out.failed;
        // Not awaited: the receiver's acks pace the chunks (the window). Waiting for each
        // chunk's PUBACK as well would leave one chunk at a time on its way to the broker.
        // The records are sealed in call order, so they still leave in counter order.
        const ack = (i + 1) % ackEvery === 0 || i === chunks - 1;
        last = this.channels.sendEncoded(peer, chunkRecord(x, i, ack, data.subarray(i * chunkBytes, (i + 1) * chunkBytes))).catch((e: unknown) => {
          out.failed ??= e;
          this.wake(out);
        });
      }
      await last;
      if (out.failed !== undefined) throw out.failed;
      const r = (await this.channels.request(peer, 'bulk.commit', { x }, options.timeoutMs)) as { complete?: unknown };
      if (r?.complete !== true) throw new FerryError('BULK_FAILED', `${peer} did not complete sealed transfer ${x}`, { field: 'transfer' });
    } finally {
      this.outgoing.delete(x);
    }
    return { transferId: x, bytes: data.length, chunks, ms: performance.now() - t0 };
  }

  private onOpen(peer: string, b: Record<string, unknown>): unknown {
    const x = transferId(b.x);
    const size = int(b.size, 'size', 0, this.limits.maxTransferBytes);
    const chunkBytes = int(b.chunkBytes, 'chunkBytes', 1, this.limits.maxChunkBytes);
    const chunks = int(b.chunks, 'chunks', 0, 0xffffffff);
    if (chunks !== Math.ceil(size / chunkBytes)) throw new FerryError('BRIDGE_FRAME_MALFORMED', `body.chunks must be ceil(size / chunkBytes)`, { field: 'body.chunks' });
    if (!(b.digest instanceof Uint8Array) || b.digest.length !== 32) throw new FerryError('BRIDGE_FRAME_MALFORMED', 'body.digest must be a 32-byte sha-256', { field: 'body.digest' });
    // A transfer whose sender went quiet (its session ended, it gave up) is dropped, so failures
    // do not pile up until every new transfer is refused.
    const now = Date.now();
    for (const [id, t] of this.incoming) if (now - t.lastActivity > IDLE_MS) this.incoming.delete(id);
    if (this.incoming.size >= this.limits.maxTransfers) throw new FerryError('BULK_FAILED', `this device already receives ${this.incoming.size} sealed transfers`, { field: 'transfer' });
    this.incoming.set(x, { from: peer, data: Buffer.alloc(size), chunkBytes, chunks, next: 0, digest: Buffer.from(b.digest), meta: b.meta ?? null, lastActivity: now });
    return { open: true };
  }

  private onChunk(peer: string, b: Record<string, unknown>): void {
    const x = transferId(b.x);
    const t = this.incoming.get(x);
    if (!t || t.from !== peer) throw new FerryError('BULK_FAILED', `no sealed transfer ${x} from ${peer} is open here`, { field: 'body.x' });
    const n = int(b.n, 'n', 0, t.chunks - 1);
    // Records arrive in order (the channel refuses any other), so chunk n must be the next one.
    if (n !== t.next) throw new FerryError('BULK_FAILED', `chunk ${n} of ${x} arrived when ${t.next} was due`, { field: 'body.n' });
    const d = b.d;
    const expect = Math.min(t.chunkBytes, t.data.length - n * t.chunkBytes);
    if (!(d instanceof Uint8Array) || d.length !== expect) throw new FerryError('BRIDGE_FRAME_MALFORMED', `body.d must be ${expect} bytes`, { field: 'body.d' });
    t.data.set(d, n * t.chunkBytes);
    t.lastActivity = Date.now();
    t.next++;
    // `a: false`: the sender wants no ack for this chunk (an ack of n covers every chunk up to n).
    if (b.a !== false) this.channels.send(peer, 'bulk.ack', { x, n }).catch(() => undefined);
  }

  private onAck(b: Record<string, unknown>): void {
    const out = this.outgoing.get(transferId(b.x));
    if (!out) return;
    out.acked = Math.max(out.acked, int(b.n, 'n', 0, 0xffffffff) + 1);
    this.wake(out);
  }

  /** Waits for the next ack; none in `ms` fails the transfer (its session ended: no ack will come). */
  private ackOrStall(out: Outgoing, peer: string, x: string, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        out.failed ??= new FerryError('BULK_FAILED', `${peer} acknowledged no chunk of sealed transfer ${x} within ${ms} ms (the session ended?)`, { field: 'transfer' });
        resolve();
      }, ms);
      out.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private wake(out: Outgoing): void {
    const wake = out.wake;
    out.wake = undefined;
    wake?.();
  }

  private onCommit(peer: string, b: Record<string, unknown>): unknown {
    const x = transferId(b.x);
    const t = this.incoming.get(x);
    if (!t || t.from !== peer) throw new FerryError('BULK_FAILED', `no sealed transfer ${x} from ${peer} is open here`, { field: 'body.x' });
    this.incoming.delete(x);
    if (t.next !== t.chunks) throw new FerryError('BULK_FAILED', `sealed transfer ${x} has ${t.next} of ${t.chunks} chunks`, { field: 'body.x' });
    if (!createHash('sha256').update(t.data).digest().equals(t.digest)) throw new FerryError('BULK_FAILED', `sealed transfer ${x}: sha-256 does not match`, { field: 'body.digest' });
    this.onTransfer({ from: peer, data: t.data, meta: t.meta });
    return { complete: true };
  }

  /** Drops what a peer had open (unpaired, or its session ended). */
  forget(peer: string): void {
    for (const [x, t] of this.incoming) if (t.from === peer) this.incoming.delete(x);
  }
}
