import { createHash } from 'node:crypto';
import { FerryError, isFerryError } from '../core/errors.js';
import { describe } from '../core/options.js';
import type { Envelope } from './contract.js';
import { isPublishTopic } from './envelope.js';
import type { MqttBus } from './mqtt-bus.js';
import { DEVICE_ID_PATTERN, readBulkReceiverOptions, readBulkSendOptions, type BulkReceiverOptions, type BulkSendOptions } from './options.js';
import { bulkAckTopic, bulkChunkFilter, bulkChunkTopic, bulkControlTopic, TOPIC_ROOT } from './topics.js';

/**
 * Chunked bulk transfer (PROTOCOL.md, "Bulk transfer"; DESIGN.md, "Bulk transfer").
 *
 *   sender                                   receiver
 *   bulk.offer {size, chunkBytes, digest} →  (allocates, or finds the partial transfer)
 *            ← bulk.offer.ok {have: bitmap}
 *   raw chunk i (≤ window unacked)       →  stores, sets bit i
 *            ← bulk.ack {index: i}
 *   ... no ack for stallTimeoutMs: offer again, resend what `have` lacks ...
 *   bulk.commit                          →  sha-256 check
 *            ← bulk.commit.ok {complete} | error BULK_FAILED
 *
 * The offer is idempotent and answers with what the receiver already holds, so
 * a sender that restarts, reconnects or stalls resends only the missing chunks.
 */

export interface BulkSendResult {
  transferId: string;
  bytes: number;
  chunks: number;
  /** Chunk messages published (first sends and resends). */
  chunksSent: number;
  /** Chunks the receiver already held when this send started (a resume). */
  chunksSkipped: number;
  /** Chunks sent again after a stall. */
  resent: number;
  /** Times no ack arrived within stallTimeoutMs. */
  stalls: number;
  ms: number;
}

export interface ReceivedTransfer {
  transferId: string;
  /** Device id of the sender. */
  from: string;
  data: Buffer;
  /** The sender's `meta`, as sent. */
  meta: unknown;
}

/** Bit i of the bitmap (LSB first in each byte) says whether chunk i is held. */
export function bitmapHas(bitmap: Uint8Array, i: number): boolean {
  return ((bitmap[i >> 3] ?? 0) & (1 << (i & 7))) !== 0;
}

function bitmapSet(bitmap: Uint8Array, i: number): void {
  bitmap[i >> 3] = (bitmap[i >> 3] ?? 0) | (1 << (i & 7));
}

function failed(message: string, details: Record<string, unknown> = {}, cause?: unknown): FerryError {
  return new FerryError('BULK_FAILED', message, { field: 'transfer', ...details }, cause === undefined ? undefined : { cause });
}

/** Sends `data` to the BulkReceiver of device `receiverId`. Resolves once the receiver has checked the digest. */
export async function sendBulk(bus: MqttBus, receiverId: string, data: Uint8Array, options: BulkSendOptions = {}): Promise<BulkSendResult> {
  if (typeof receiverId !== 'string' || !DEVICE_ID_PATTERN.test(receiverId)) {
    throw new FerryError('BAD_OPTION', `receiverId must be a device id matching ${DEVICE_ID_PATTERN}, got ${describe(receiverId)}`, { field: 'receiverId' });
  }
  if (!(data instanceof Uint8Array)) throw new FerryError('BAD_OPTION', `data must be a Uint8Array, got ${describe(data)}`, { field: 'data' });
  const o = readBulkSendOptions(options, bus.options.maxMessageBytes);
  const t0 = performance.now();
  const digest = createHash('sha256').update(data).digest();
  // Derived from the content and the chunking: a restarted sender finds its partial transfer again.
  const transferId = o.transferId ?? createHash('sha256').update(digest).update(`${o.chunkBytes}`).digest().subarray(0, 16).toString('base64url');
  const chunks = Math.ceil(data.length / o.chunkBytes);
  const ctl = bulkControlTopic(receiverId);
  const ackTo = bulkAckTopic(bus.deviceId, transferId);
  const result: BulkSendResult = { transferId, bytes: data.length, chunks, chunksSent: 0, chunksSkipped: 0, resent: 0, stalls: 0, ms: 0 };

  const held = new Uint8Array(Math.ceil(chunks / 8));
  let heldCount = 0;
  const unacked = new Set<number>();
  let missing: number[] = [];
  let everSent = new Uint8Array(Math.ceil(chunks / 8));

  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const finished = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  finished.catch(() => undefined); // may fail before it is awaited (abort during the offer)
  let done = false;
  let stallTimer: NodeJS.Timeout | undefined;
  let stallsInARow = 0;
  const fail = (e: unknown) => {
    if (done) return;
    done = true;
    clearTimeout(stallTimer);
    settle.reject(isFerryError(e, 'BULK_FAILED') ? e : failed(`bulk transfer ${transferId} to ${receiverId} failed: ${(e as Error).message}`, { transferId }, e));
  };

  const markHeld = (i: number) => {
    if (bitmapHas(held, i)) return;
    bitmapSet(held, i);
    heldCount++;
    o.onProgress?.(heldCount, chunks);
  };

  const offer = async (): Promise<Uint8Array> => {
    const answer = await bus.request<{ have?: unknown; complete?: unknown }>(
      ctl,
      'bulk.offer',
      { transfer: transferId, size: data.length, chunkBytes: o.chunkBytes, chunks, digest, ackTo, meta: o.meta ?? null },
      { timeoutMs: o.requestTimeoutMs },
    );
    if (answer.body?.complete === true) return new Uint8Array(held.length).fill(0xff);
    const have = answer.body?.have;
    if (!(have instanceof Uint8Array) || have.length !== held.length) {
      throw failed(`receiver ${receiverId} answered bulk.offer without a valid have bitmap`, { transferId, field: 'body.have' });
    }
    return have;
  };

  const applyHave = (have: Uint8Array) => {
    for (let i = 0; i < chunks; i++) if (bitmapHas(have, i)) markHeld(i);
    unacked.clear();
    missing = [];
    for (let i = 0; i < chunks; i++) if (!bitmapHas(held, i)) missing.push(i);
  };

  const armStall = () => {
    clearTimeout(stallTimer);
    stallTimer = setTimeout(() => void onStall(), o.stallTimeoutMs);
  };

  const onStall = async () => {
    if (done) return;
    result.stalls++;
    stallsInARow++;
    if (stallsInARow > o.maxStalls) {
      fail(failed(`bulk transfer ${transferId} to ${receiverId} made no progress in ${o.maxStalls} stalls of ${o.stallTimeoutMs} ms (${heldCount}/${chunks} chunks held)`, { transferId, held: heldCount, chunks }));
      return;
    }
    try {
      applyHave(await offer());
      pump();
    } catch (e) {
      // The offer itself timed out (link down): wait another stall period and try again.
      if (isFerryError(e, 'BUS_TIMEOUT')) armStall();
      else fail(e);
    }
  };

  const pump = () => {
    if (done) return;
    while (unacked.size < o.window && missing.length > 0) {
      const i = missing.shift()!;
      if (bitmapHas(held, i)) continue;
      unacked.add(i);
      if (bitmapHas(everSent, i)) result.resent++;
      else bitmapSet(everSent, i);
      result.chunksSent++;
      const start = i * o.chunkBytes;
      bus.publishRaw(bulkChunkTopic(receiverId, transferId, i), data.subarray(start, Math.min(start + o.chunkBytes, data.length)), { qos: 1 }).catch(fail);
    }
    if (missing.length === 0 && unacked.size === 0) {
      clearTimeout(stallTimer);
      void commit();
    } else {
      armStall();
    }
  };

  let committing = false;
  const commit = async () => {
    if (committing || done) return;
    committing = true;
    try {
      const answer = await bus.request<{ complete?: unknown; have?: unknown }>(ctl, 'bulk.commit', { transfer: transferId }, { timeoutMs: o.requestTimeoutMs });
      committing = false;
      if (answer.body?.complete === true) {
        done = true;
        settle.resolve();
        return;
      }
      // The receiver lacks chunks we saw acked (it restarted): resume from its bitmap.
      const have = answer.body?.have;
      if (!(have instanceof Uint8Array)) throw failed(`receiver ${receiverId} answered bulk.commit without complete or have`, { transferId });
      held.fill(0);
      heldCount = 0;
      applyHave(await offer());
      pump();
    } catch (e) {
      committing = false;
      if (isFerryError(e, 'BUS_TIMEOUT')) armStall();
      else fail(e);
    }
  };

  const onAck = (env: Envelope) => {
    if (done || env.type !== 'bulk.ack') return;
    const b = env.body as { transfer?: unknown; index?: unknown } | null;
    if (b?.transfer !== transferId || typeof b.index !== 'number' || !Number.isInteger(b.index) || b.index < 0 || b.index >= chunks) return;
    stallsInARow = 0;
    unacked.delete(b.index);
    markHeld(b.index);
    pump();
  };

  const onAbort = () => fail(failed(`bulk transfer ${transferId} to ${receiverId} was aborted by the caller`, { transferId }));
  if (o.signal?.aborted) throw failed(`bulk transfer ${transferId} to ${receiverId} was aborted before it started`, { transferId });
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const unsubscribe = await bus.subscribe(ackTo, onAck);
  try {
    const have = await offer();
    applyHave(have);
    result.chunksSkipped = heldCount;
    everSent = new Uint8Array(held); // chunks held already count as sent for the resend statistic
    pump();
    await finished;
  } catch (e) {
    fail(e); // no-op if already failed: `finished` then holds the first cause
    throw await finished.then(
      () => e,
      (x: unknown) => x,
    );
  } finally {
    done = true;
    clearTimeout(stallTimer);
    o.signal?.removeEventListener('abort', onAbort);
    await unsubscribe().catch(() => undefined);
  }
  result.ms = performance.now() - t0;
  return result;
}

/** Tells a receiver to drop a partial transfer (it would otherwise wait for a resume until its idle timeout). */
export async function abortBulk(bus: MqttBus, receiverId: string, transferId: string, timeoutMs = 5000): Promise<void> {
  await bus.request(bulkControlTopic(receiverId), 'bulk.abort', { transfer: transferId }, { timeoutMs });
}

interface Incoming {
  transferId: string;
  from: string;
  size: number;
  chunkBytes: number;
  chunks: number;
  digest: Buffer;
  ackTo: string;
  meta: unknown;
  data: Buffer;
  have: Uint8Array;
  held: number;
  lastActivity: number;
}

export interface BulkReceiverStats {
  /** Chunk messages received (including duplicates). */
  chunksReceived: number;
  /** Chunks received that were already held. */
  duplicateChunks: number;
  /** Chunks for a transfer this receiver holds no offer for, or malformed. */
  strayChunks: number;
  completed: number;
  failed: number;
}

/**
 * Receives bulk transfers addressed to its bus's device id. Partial transfers
 * live in memory: they survive sender restarts and link cuts, not a restart of
 * the receiver (a sender then starts over from its fresh offer).
 */
export class BulkReceiver {
  private readonly transfers = new Map<string, Incoming>();
  private readonly completed = new Map<string, Buffer>(); // transferId → digest, LRU
  private readonly unsubs: Array<() => Promise<void>> = [];
  private sweeper: NodeJS.Timeout | undefined;
  readonly stats: BulkReceiverStats = { chunksReceived: 0, duplicateChunks: 0, strayChunks: 0, completed: 0, failed: 0 };
  private readonly o: ReturnType<typeof readBulkReceiverOptions>;
  private readonly chunkPrefix: string;

  private constructor(
    private readonly bus: MqttBus,
    private readonly onTransfer: (t: ReceivedTransfer) => void,
    options: BulkReceiverOptions,
  ) {
    this.o = readBulkReceiverOptions(options);
    this.chunkPrefix = `${TOPIC_ROOT}/bulk/${bus.deviceId}/chunk/`;
  }

  /** Starts receiving on `bus`; `onTransfer` is called once per completed, digest-checked transfer. */
  static async start(bus: MqttBus, onTransfer: (t: ReceivedTransfer) => void, options: BulkReceiverOptions = {}): Promise<BulkReceiver> {
    if (typeof onTransfer !== 'function') throw new FerryError('BAD_OPTION', `onTransfer must be a function, got ${describe(onTransfer)}`, { field: 'onTransfer' });
    const r = new BulkReceiver(bus, onTransfer, options);
    r.unsubs.push(await bus.subscribeRaw(bulkChunkFilter(bus.deviceId), (topic, payload) => r.onChunk(topic, payload)));
    r.unsubs.push(await bus.serve(bulkControlTopic(bus.deviceId), (env) => r.onControl(env)));
    r.sweeper = setInterval(() => r.sweep(), Math.max(50, Math.floor(r.o.idleTimeoutMs / 4)));
    r.sweeper.unref();
    return r;
  }

  /** Transfers held partly now. */
  get partial(): number {
    return this.transfers.size;
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    this.transfers.clear();
    await Promise.all(this.unsubs.splice(0).map((u) => u().catch(() => undefined)));
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, t] of this.transfers) if (now - t.lastActivity > this.o.idleTimeoutMs) this.transfers.delete(id);
  }

  private onControl(env: Envelope): unknown {
    const b = env.body;
    if (b === null || typeof b !== 'object' || Array.isArray(b)) {
      throw new FerryError('ENVELOPE_MALFORMED', `${env.type} body must be a map, got ${describe(b)}`, { field: 'body' });
    }
    const body = b as Record<string, unknown>;
    const transferId = body.transfer;
    if (typeof transferId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(transferId)) {
      throw new FerryError('ENVELOPE_MALFORMED', `body.transfer must be a transfer id (1..64 of A-Z a-z 0-9 _ -), got ${describe(transferId)}`, { field: 'body.transfer' });
    }
    switch (env.type) {
      case 'bulk.offer':
        return this.onOffer(env, transferId, body);
      case 'bulk.commit':
        return this.onCommit(transferId);
      case 'bulk.abort':
        this.transfers.delete(transferId);
        return { aborted: true };
      default:
        throw new FerryError('ENVELOPE_MALFORMED', `unknown bulk control message type ${JSON.stringify(env.type)}`, { field: 'envelope.type' });
    }
  }

  private onOffer(env: Envelope, transferId: string, body: Record<string, unknown>): unknown {
    const int = (name: string, min: number, max: number): number => {
      const v = body[name];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
        throw new FerryError('ENVELOPE_MALFORMED', `body.${name} must be an integer in ${min}..${max}, got ${describe(v)}`, { field: `body.${name}` });
      }
      return v;
    };
    const size = body.size;
    if (typeof size === 'number' && size > this.o.maxTransferBytes) {
      throw new FerryError('MESSAGE_TOO_LARGE', `transfer ${transferId} is ${size} bytes; this receiver takes at most ${this.o.maxTransferBytes} (options.maxTransferBytes)`, { field: 'body.size', limit: this.o.maxTransferBytes });
    }
    int('size', 0, this.o.maxTransferBytes);
    const chunkBytes = int('chunkBytes', 1, this.bus.options.maxMessageBytes);
    const chunks = int('chunks', 0, 0xffffffff);
    if (chunks !== Math.ceil((size as number) / chunkBytes)) {
      throw new FerryError('ENVELOPE_MALFORMED', `body.chunks must be ceil(size / chunkBytes) = ${Math.ceil((size as number) / chunkBytes)}, got ${chunks}`, { field: 'body.chunks' });
    }
    const digest = body.digest;
    if (!(digest instanceof Uint8Array) || digest.length !== 32) {
      throw new FerryError('ENVELOPE_MALFORMED', `body.digest must be a 32-byte sha-256 byte string, got ${describe(digest)}`, { field: 'body.digest' });
    }
    if (!isPublishTopic(body.ackTo)) throw new FerryError('ENVELOPE_MALFORMED', `body.ackTo must be a topic without wildcards, got ${describe(body.ackTo)}`, { field: 'body.ackTo' });

    const done = this.completed.get(transferId);
    if (done && done.equals(digest)) return { complete: true };

    let t = this.transfers.get(transferId);
    if (t && (t.size !== size || t.chunkBytes !== chunkBytes || !t.digest.equals(digest))) {
      this.transfers.delete(transferId); // same id, other content: start over
      t = undefined;
    }
    if (!t) {
      if (this.transfers.size >= this.o.maxTransfers) {
        throw failed(`receiver ${this.bus.deviceId} already holds ${this.transfers.size} partial transfers (options.maxTransfers)`, { field: 'options.maxTransfers' });
      }
      t = {
        transferId,
        from: env.from,
        size: size as number,
        chunkBytes,
        chunks,
        digest: Buffer.from(digest),
        ackTo: body.ackTo,
        meta: body.meta ?? null,
        data: Buffer.alloc(size as number),
        have: new Uint8Array(Math.ceil(chunks / 8)),
        held: 0,
        lastActivity: Date.now(),
      };
      this.transfers.set(transferId, t);
    }
    // A restarted sender may listen for acks on a new topic.
    t.ackTo = body.ackTo;
    t.lastActivity = Date.now();
    return { have: t.have, held: t.held };
  }

  private onCommit(transferId: string): unknown {
    const t = this.transfers.get(transferId);
    if (!t) {
      if (this.completed.has(transferId)) return { complete: true };
      throw failed(`receiver ${this.bus.deviceId} holds no transfer ${transferId} (never offered, aborted or idle too long)`, { transferId });
    }
    t.lastActivity = Date.now();
    if (t.held < t.chunks) return { complete: false, have: t.have };
    this.transfers.delete(transferId);
    const actual = createHash('sha256').update(t.data).digest();
    if (!actual.equals(t.digest)) {
      this.stats.failed++;
      throw failed(`transfer ${transferId}: sha-256 of the received ${t.size} bytes does not match the offered digest; the transfer was dropped`, { transferId, field: 'body.digest' });
    }
    this.completed.set(transferId, t.digest);
    if (this.completed.size > this.o.rememberCompleted) this.completed.delete(this.completed.keys().next().value as string);
    this.stats.completed++;
    try {
      this.onTransfer({ transferId, from: t.from, data: t.data, meta: t.meta });
    } catch {
      // The application's callback failing is not the transfer failing.
    }
    return { complete: true };
  }

  private onChunk(topic: string, payload: Buffer): void {
    this.stats.chunksReceived++;
    if (!topic.startsWith(this.chunkPrefix)) return;
    const [transferId, indexText, extra] = topic.slice(this.chunkPrefix.length).split('/');
    const t = transferId === undefined ? undefined : this.transfers.get(transferId);
    const index = Number(indexText);
    if (!t || extra !== undefined || !/^\d+$/.test(indexText ?? '') || index >= t.chunks) {
      this.stats.strayChunks++;
      return;
    }
    const start = index * t.chunkBytes;
    const expected = Math.min(t.chunkBytes, t.size - start);
    if (payload.length !== expected) {
      this.stats.strayChunks++;
      return;
    }
    t.lastActivity = Date.now();
    if (bitmapHas(t.have, index)) {
      this.stats.duplicateChunks++;
    } else {
      payload.copy(t.data, start);
      bitmapSet(t.have, index);
      t.held++;
    }
    // Acked even when already held: the sender may have lost the first ack. Not awaited: this runs inside mqtt.js's message callback.
    this.bus.publish(t.ackTo, 'bulk.ack', { transfer: t.transferId, index }, { qos: 1 }).catch(() => undefined);
  }
}
