import { Decoder, Encoder } from 'cbor-x';
import { randomBytes } from 'node:crypto';
import { FerryError } from '../../core/errors.js';
import { describe } from '../../core/options.js';
import { DEVICE_ID_PATTERN } from '../../transports/options.js';
import { TAG_BYTES, type CipherState } from './noise.js';

/**
 * The bridge's frame format: every raw MQTT payload between paired devices is one frame.
 *   version(1) kind(1) session(8) L(1) from(L) body
 * Records (kind 3) carry an explicit 64-bit counter and are sealed with the Noise transport keys;
 * the whole header, counter included, is the AEAD's associated data, so nothing in a record can be
 * changed without the tag failing. Integers are big-endian.
 */

export const FRAME_VERSION = 1;
/** Frame kinds: Hs1 initiator → responder, Hs2 responder → initiator, Record sealed, Refusal plaintext hint. */
export const FrameKind = { Hs1: 1, Hs2: 2, Record: 3, Refusal: 4 } as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];
export const SESSION_BYTES = 8;
export const COUNTER_BYTES = 8;
/** Records per key: both ends rekey before the record whose counter is a non-zero multiple of this. */
export const REKEY_INTERVAL = 65_536;
/** The default largest frame: the bus's largest payload plus room for the header. */
export const DEFAULT_MAX_FRAME_BYTES = 262_144 + 64;
/** Fixed header bytes before the sender id: version, kind, session, L. */
const FIXED_HEADER_BYTES = 2 + SESSION_BYTES + 1;
const BRIDGE_PROLOGUE_LABEL = 'ferry-bridge-v1';

export interface DecodedFrame {
  kind: FrameKind;
  session: Buffer;
  from: string;
  /** What follows the header: the handshake message, counter ‖ ciphertext, or the refusal CBOR. */
  body: Buffer;
  /** Bytes before `body` (11 + L). */
  headerBytes: number;
}

function malformed(field: string, message: string): FerryError {
  return new FerryError('BRIDGE_FRAME_MALFORMED', message, { field });
}

function checkSession(session: Buffer, field: string): void {
  if (!Buffer.isBuffer(session) || session.length !== SESSION_BYTES) {
    throw new FerryError('BAD_OPTION', `${field} must be ${SESSION_BYTES} bytes, got ${describe(session)}`, { field });
  }
}

function checkDeviceId(id: string, field: string): void {
  if (typeof id !== 'string' || !DEVICE_ID_PATTERN.test(id)) {
    throw new FerryError('BAD_OPTION', `${field} must be a device id matching ${DEVICE_ID_PATTERN}, got ${describe(id)}`, { field });
  }
}

/** A fresh random session id (chosen by the initiator). */
export function newSessionId(): Buffer {
  return randomBytes(SESSION_BYTES);
}

function encodeHeader(kind: FrameKind, session: Buffer, from: string): Buffer {
  checkSession(session, 'session');
  checkDeviceId(from, 'from');
  const id = Buffer.from(from, 'ascii');
  const header = Buffer.alloc(FIXED_HEADER_BYTES + id.length);
  header[0] = FRAME_VERSION;
  header[1] = kind;
  session.copy(header, 2);
  header[2 + SESSION_BYTES] = id.length;
  id.copy(header, FIXED_HEADER_BYTES);
  return header;
}

export interface FrameHeader {
  kind: FrameKind;
  session: Buffer;
  from: string;
}

export function encodeFrame(header: FrameHeader, body: Buffer): Buffer {
  const { kind, session, from } = header;
  if (!Object.values(FrameKind).includes(kind)) throw new FerryError('BAD_OPTION', `kind must be 1..4, got ${describe(kind)}`, { field: 'kind' });
  return Buffer.concat([encodeHeader(kind, session, from), body]);
}

/** A handshake frame: Hs1 (initiator → responder) or Hs2 (responder → initiator) around a Noise message. */
export function encodeHandshakeFrame(kind: typeof FrameKind.Hs1 | typeof FrameKind.Hs2, session: Buffer, from: string, message: Buffer): Buffer {
  return encodeFrame({ kind, session, from }, message);
}

/**
 * Parses and checks a frame's header; the body is checked only for its minimum length. Anything
 * wrong → BRIDGE_FRAME_MALFORMED naming the field. Input comes from the network, so nothing is trusted.
 */
export function decodeFrame(buf: Buffer, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES): DecodedFrame {
  if (buf.length > maxFrameBytes) throw malformed('frame.length', `frame of ${buf.length} bytes exceeds the ${maxFrameBytes}-byte limit`);
  if (buf.length < FIXED_HEADER_BYTES + 1) throw malformed('frame.length', `frame of ${buf.length} bytes is shorter than any header`);
  if (buf[0] !== FRAME_VERSION) throw malformed('frame.version', `frame version ${buf[0]} is not ${FRAME_VERSION}`);
  const kind = buf[1]!;
  if (kind < FrameKind.Hs1 || kind > FrameKind.Refusal) throw malformed('frame.kind', `frame kind ${kind} is not 1..4`);
  const idLength = buf[2 + SESSION_BYTES]!;
  if (idLength < 1 || idLength > 64) throw malformed('frame.from', `sender id length ${idLength} is not 1..64`);
  const headerBytes = FIXED_HEADER_BYTES + idLength;
  if (buf.length < headerBytes) throw malformed('frame.length', `frame of ${buf.length} bytes ends inside its sender id`);
  const idBytes = buf.subarray(FIXED_HEADER_BYTES, headerBytes);
  // Check bytes before decoding: 'latin1' maps every byte to one char, so non-ASCII cannot slip through the pattern.
  const from = idBytes.toString('latin1');
  if (!DEVICE_ID_PATTERN.test(from)) throw malformed('frame.from', 'sender id is not a valid device id');
  const body = buf.subarray(headerBytes);
  const minBody = kind === FrameKind.Record ? COUNTER_BYTES + TAG_BYTES : 1;
  if (body.length < minBody) throw malformed('frame.length', `frame body of ${body.length} bytes is shorter than the ${minBody} bytes kind ${kind} needs`);
  return { kind: kind as FrameKind, session: Buffer.from(buf.subarray(2, 2 + SESSION_BYTES)), from, body, headerBytes };
}

/** The handshake prologue: binds both device ids and the session into the handshake hash, hence into every key. */
export function bridgePrologue(initiatorId: string, responderId: string, session: Buffer): Buffer {
  checkDeviceId(initiatorId, 'initiatorId');
  checkDeviceId(responderId, 'responderId');
  checkSession(session, 'session');
  const zero = Buffer.of(0);
  // Device ids never contain NUL, so the separators make the encoding unambiguous.
  return Buffer.concat([Buffer.from(BRIDGE_PROLOGUE_LABEL, 'ascii'), zero, Buffer.from(initiatorId, 'ascii'), zero, Buffer.from(responderId, 'ascii'), zero, session]);
}

function checkInterval(interval: number | undefined): number {
  const v = interval ?? REKEY_INTERVAL;
  if (!Number.isSafeInteger(v) || v < 1) throw new FerryError('BAD_OPTION', `rekeyInterval must be a positive integer, got ${describe(v)}`, { field: 'rekeyInterval' });
  return v;
}

function rekeyDue(counter: bigint, interval: bigint): boolean {
  return counter > 0n && counter % interval === 0n;
}

export interface RecordSealerOptions {
  /** Records per key; only tests change it. */
  rekeyInterval?: number;
  /** Largest frame the peer takes; a larger record is refused before it uses a counter. */
  maxFrameBytes?: number;
}

/** Seals records for one direction of one session, counting from 0. */
export class RecordSealer {
  private readonly cipher: CipherState;
  private readonly header: Buffer;
  private readonly interval: bigint;
  private readonly maxFrameBytes: number;
  private next = 0n;

  /**
   * @param cipher the sending CipherState from the handshake's split; the sealer owns it from now on
   * @param from this device's id, written into every frame
   */
  constructor(cipher: CipherState, session: Buffer, from: string, options: RecordSealerOptions = {}) {
    this.cipher = cipher;
    this.header = encodeHeader(FrameKind.Record, session, from);
    this.interval = BigInt(checkInterval(options.rekeyInterval));
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /** The counter the next record will carry. */
  get counter(): bigint {
    return this.next;
  }

  /**
   * The whole frame of the next record. `plaintext` may come in parts (a record header and a
   * large payload), sealed as their concatenation without building it.
   */
  seal(plaintext: Buffer | readonly Buffer[]): Buffer {
    const parts = Buffer.isBuffer(plaintext) ? [plaintext] : plaintext;
    const length = parts.reduce((sum, p) => sum + p.length, 0);
    const size = this.header.length + COUNTER_BYTES + length + TAG_BYTES;
    if (size > this.maxFrameBytes) {
      throw new FerryError('MESSAGE_TOO_LARGE', `a record of ${length} bytes makes a ${size}-byte frame, over the ${this.maxFrameBytes}-byte limit`, { field: 'plaintext', limit: this.maxFrameBytes });
    }
    const c = this.next;
    if (rekeyDue(c, this.interval)) this.cipher.rekey();
    const ad = Buffer.alloc(this.header.length + COUNTER_BYTES);
    this.header.copy(ad);
    ad.writeBigUInt64BE(c, this.header.length);
    const sealed = this.cipher.encryptParts(c, ad, parts);
    this.next = c + 1n;
    return Buffer.concat([ad, ...sealed], size);
  }
}

export interface RecordOpenerOptions {
  /**
   * The peer's device id: a record naming another sender is refused up front. Without it such a
   * record still fails, at the tag (the sender id is part of the associated data).
   */
  peer?: string;
  rekeyInterval?: number;
  maxFrameBytes?: number;
}

/**
 * Opens records for one direction of one session. Only the next counter is accepted: MQTT at QoS 1
 * over one connection keeps order, so anything else is a replay or a loss, and the channel would
 * rather be re-established than hold a window of accepted counters.
 */
export class RecordOpener {
  private cipher: CipherState;
  private readonly session: Buffer;
  private readonly peer: string | undefined;
  private readonly interval: bigint;
  private readonly maxFrameBytes: number;
  private next = 0n;

  /** @param cipher the receiving CipherState from the handshake's split; the opener owns it from now on */
  constructor(cipher: CipherState, session: Buffer, options: RecordOpenerOptions = {}) {
    checkSession(session, 'session');
    if (options.peer !== undefined) checkDeviceId(options.peer, 'peer');
    this.cipher = cipher;
    this.session = Buffer.from(session);
    this.peer = options.peer;
    this.interval = BigInt(checkInterval(options.rekeyInterval));
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /** The counter the next record must carry. */
  get counter(): bigint {
    return this.next;
  }

  /** The plaintext of the next record; any refusal leaves the state as it was. */
  open(frame: Buffer | DecodedFrame): Buffer {
    const f = Buffer.isBuffer(frame) ? decodeFrame(frame, this.maxFrameBytes) : frame;
    if (f.kind !== FrameKind.Record) throw malformed('frame.kind', `frame kind ${f.kind} is not a record`);
    if (!f.session.equals(this.session)) throw new FerryError('BRIDGE_RECORD_REFUSED', 'record belongs to another session', { field: 'frame.session' });
    if (this.peer !== undefined && f.from !== this.peer) throw new FerryError('BRIDGE_RECORD_REFUSED', 'record names another sender than this session’s peer', { field: 'frame.from' });
    if (f.body.length < COUNTER_BYTES + TAG_BYTES) throw malformed('frame.length', `record body of ${f.body.length} bytes is shorter than a counter and a tag`);
    const c = f.body.readBigUInt64BE(0);
    if (c < this.next) throw new FerryError('BRIDGE_REPLAY', `record counter ${c} was already used (replayed); expected ${this.next}`, { field: 'record.counter' });
    if (c > this.next) {
      // Records before it never came (a subscriber's connection cut while its peer published).
      // Told apart from a forgery by its tag, so only the peer itself can end the session this way.
      if (c - this.next <= this.interval && this.authentic(f, c)) {
        throw new FerryError('BRIDGE_RECORD_LOST', `records ${this.next}..${c - 1n} of this session were lost on the way (record ${c} came next); the session cannot go on`, { field: 'record.counter' });
      }
      throw new FerryError('BRIDGE_REPLAY', `record counter ${c} is out of order (records missing or reordered); expected ${this.next}`, { field: 'record.counter' });
    }
    // Rekey on a copy: a forged record at a rekey counter must not advance the key.
    const cipher = rekeyDue(c, this.interval) ? this.cipher.clone() : this.cipher;
    if (cipher !== this.cipher) cipher.rekey();
    // The header was checked, so re-encoding it gives back exactly the bytes that were sealed over.
    const ad = Buffer.concat([encodeHeader(FrameKind.Record, f.session, f.from), f.body.subarray(0, COUNTER_BYTES)]);
    const plaintext = cipher.decrypt(c, ad, f.body.subarray(COUNTER_BYTES));
    this.cipher = cipher;
    this.next = c + 1n;
    return plaintext;
  }

  /** Whether record `c` (ahead of the next one, by at most one rekey interval) checks under the key it would be opened with; on a copy. */
  private authentic(f: DecodedFrame, c: bigint): boolean {
    const cipher = this.cipher.clone();
    // The key moves on at each rekey boundary from the next counter up to c (at most two).
    const first = this.next === 0n ? this.interval : ((this.next + this.interval - 1n) / this.interval) * this.interval;
    for (let k = first; k <= c; k += this.interval) cipher.rekey();
    try {
      cipher.decrypt(c, Buffer.concat([encodeHeader(FrameKind.Record, f.session, f.from), f.body.subarray(0, COUNTER_BYTES)]), f.body.subarray(COUNTER_BYTES));
      return true;
    } catch {
      return false;
    }
  }
}

/** A refusal (kind 4): plaintext and unauthenticated, so a receiver treats it as a hint only. */
export interface Refusal {
  code: string;
  message: string;
}

/** Longest refusal fields accepted: a hint needs no more, and a forged one should not fill logs. */
export const MAX_REFUSAL_CODE_CHARS = 64;
export const MAX_REFUSAL_MESSAGE_CHARS = 1024;

// Plain CBOR with text keys, nothing cbor-x specific, as for envelopes.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true, pack: false, structuredClone: false, bundleStrings: false, useSelfDescribedHeader: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, copyBuffers: true } as ConstructorParameters<typeof Decoder>[0]);

/** A whole refusal frame (kind 4). Over-long fields are cut, so the peer's limits always hold. */
export function encodeRefusal(session: Buffer, from: string, code: string, message: string): Buffer {
  const body = encoder.encode({ code: code.slice(0, MAX_REFUSAL_CODE_CHARS), message: message.slice(0, MAX_REFUSAL_MESSAGE_CHARS) });
  return encodeFrame({ kind: FrameKind.Refusal, session, from }, Buffer.from(body));
}

/** The refusal in the body of a kind-4 frame; anything else → BRIDGE_FRAME_MALFORMED naming the field. */
export function decodeRefusal(body: Buffer): Refusal {
  let v: unknown;
  try {
    v = decoder.decode(body);
  } catch {
    throw malformed('refusal', 'refusal body is not valid CBOR');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Map || v instanceof Uint8Array) {
    throw malformed('refusal', `refusal body must be a CBOR map, got ${describe(v)}`);
  }
  const { code, message } = v as Record<string, unknown>;
  if (typeof code !== 'string' || code.length < 1 || code.length > MAX_REFUSAL_CODE_CHARS) {
    throw malformed('refusal.code', `refusal code must be a string of 1..${MAX_REFUSAL_CODE_CHARS} characters, got ${describe(code)}`);
  }
  if (typeof message !== 'string' || message.length > MAX_REFUSAL_MESSAGE_CHARS) {
    throw malformed('refusal.message', `refusal message must be a string of at most ${MAX_REFUSAL_MESSAGE_CHARS} characters, got ${describe(message)}`);
  }
  return { code, message };
}
