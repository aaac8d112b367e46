import { Decoder, Encoder } from 'cbor-x';
import { FerryError } from '../../core/errors.js';
import { describe } from '../../core/options.js';
import { DEVICE_ID_PATTERN } from '../../transports/options.js';
import { NAME } from '../runtime/app-definition.js';
import { ed25519Verify, type RawKeyPair } from './keys.js';
import { MAX_MESSAGE_BYTES, TAG_BYTES } from './noise.js';
import { K_MIN_MESSAGE_BYTES, readK, writeK } from './noise-k.js';

/**
 * The offline bundle file (transports/PROTOCOL.md, "Offline bundles"; agent/bridge/DESIGN.md):
 * pure functions, no I/O. Layout (integers big-endian):
 *
 *   magic "FERRYBDL" (8) ‖ format (1) ‖ H (2) ‖ header (H bytes of CBOR)          — the prologue
 *   ‖ M (2) ‖ Noise_K handshake message (M bytes: e ‖ encrypted empty payload)
 *   ‖ { L (2) ‖ record (L bytes: ChaChaPoly of type(1) ‖ data) } … ending in one END record
 *   ‖ Ed25519 signature (64) over every byte before it
 *
 * The header travels in the clear (who it is from and for, what it holds, sizes) so a reader can
 * refuse a bundle for another device before any crypto; the signature covers it, and so does
 * the Noise handshake (it is the prologue). The reader checks, in order: structure and header
 * fields (BUNDLE_CORRUPT), recipient (BUNDLE_NOT_FOR_US), origin paired (BRIDGE_NOT_PAIRED),
 * signature (BUNDLE_FORGED) — before anything is decrypted — then the handshake and every
 * record: nonces are the record counters (implicit, from 0), so a missing, repeated or
 * reordered record fails its tag, and the END record (with the header's counts) catches a cut.
 */

export const BUNDLE_MAGIC = Buffer.from('FERRYBDL', 'ascii');
export const BUNDLE_FORMAT = 1;
export const SIGNATURE_BYTES = 64;
/** Largest header: ids and names are short, so a bigger one is damage. */
export const MAX_HEADER_BYTES = 4096;
/** Payload bytes per data record: the largest Noise message less the tag and the type byte. */
export const RECORD_DATA_BYTES = MAX_MESSAGE_BYTES - TAG_BYTES - 1;
const PROLOGUE_FIXED = BUNDLE_MAGIC.length + 1 + 2;
const RECORD_DATA = 0;
const RECORD_END = 1;
/** The smallest whole bundle: a 1-byte header, the handshake, an END record and the signature. */
export const MIN_BUNDLE_BYTES = PROLOGUE_FIXED + 1 + 2 + K_MIN_MESSAGE_BYTES + 2 + TAG_BYTES + 1 + SIGNATURE_BYTES;
export const BUNDLE_ID = /^bundle-[0-9a-f]{32}$/;

/** What the header says in the clear (all covered by the signature and the handshake). */
export interface BundleHeader {
  /** `bundle-` and 32 hex digits: the origin's move id for it, the importer's ledger key. */
  id: string;
  origin: string;
  recipient: string;
  instance: string;
  app: string;
  appVersion: string;
  /** The module's code hash (16 hex digits). */
  code: string;
  /** Whether the module source is in the payload (else the recipient must hold that code). */
  codeIncluded: boolean;
  /** `lines` when the recipient's line and word size match the origin's, else `objects`. */
  path: 'lines' | 'objects';
  lineSize: number;
  wordBits: number;
  /** Bytes of heap the bundle carries: lines × line size, or the object records' bytes. */
  heapBytes: number;
  /** Bytes of the CBOR payload, before sealing. */
  payloadBytes: number;
  /** Records, the END record included. */
  records: number;
  createdAt: number;
}

export type HeaderInput = Omit<BundleHeader, 'payloadBytes' | 'records'>;

const HEADER_KEYS = ['id', 'origin', 'recipient', 'instance', 'app', 'appVersion', 'code', 'codeIncluded', 'path', 'lineSize', 'wordBits', 'heapBytes', 'payloadBytes', 'records', 'createdAt'] as const;

// Plain CBOR with text keys, nothing cbor-x specific (as envelopes and refusals).
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true, pack: false, structuredClone: false, bundleStrings: false, useSelfDescribedHeader: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, copyBuffers: true } as ConstructorParameters<typeof Decoder>[0]);

export function cborEncode(v: unknown): Buffer {
  return Buffer.from(encoder.encode(v));
}

export function corrupt(field: string, message: string): FerryError {
  return new FerryError('BUNDLE_CORRUPT', `bundle ${message}`, { field });
}

/** CBOR of bytes that passed the signature and the AEAD; a decoder error is still damage, never a crash. */
export function cborDecode(b: Buffer, field: string): unknown {
  try {
    return decoder.decode(b);
  } catch (e) {
    throw corrupt(field, `${field} is not valid CBOR (${(e as Error).message.slice(0, 120)})`);
  }
}

function checkHeader(v: unknown): BundleHeader {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array || v instanceof Map) throw corrupt('header', `header must be a CBOR map, got ${describe(v)}`);
  const h = v as Record<string, unknown>;
  for (const k of Object.keys(h)) if (!(HEADER_KEYS as readonly string[]).includes(k)) throw corrupt(`header.${k}`, `header has an unknown field ${JSON.stringify(k.slice(0, 40))}`);
  const str = (k: string, re: RegExp) => {
    if (typeof h[k] !== 'string' || !re.test(h[k])) throw corrupt(`header.${k}`, `header.${k} must match ${re}, got ${describe(h[k])}`);
  };
  const int = (k: string, min: number, max: number) => {
    if (!Number.isSafeInteger(h[k]) || (h[k] as number) < min || (h[k] as number) > max) throw corrupt(`header.${k}`, `header.${k} must be an integer in ${min}..${max}, got ${describe(h[k])}`);
  };
  str('id', BUNDLE_ID);
  str('origin', DEVICE_ID_PATTERN);
  str('recipient', DEVICE_ID_PATTERN);
  str('instance', NAME);
  str('app', NAME);
  str('appVersion', /^[\x20-\x7e]{1,64}$/);
  str('code', /^[0-9a-f]{16}$/);
  if (typeof h.codeIncluded !== 'boolean') throw corrupt('header.codeIncluded', `header.codeIncluded must be a boolean, got ${describe(h.codeIncluded)}`);
  if (h.path !== 'lines' && h.path !== 'objects') throw corrupt('header.path', `header.path must be "lines" or "objects", got ${describe(h.path)}`);
  int('lineSize', 64, 1 << 20);
  if (h.wordBits !== 32 && h.wordBits !== 64) throw corrupt('header.wordBits', `header.wordBits must be 32 or 64, got ${describe(h.wordBits)}`);
  int('heapBytes', 0, Number.MAX_SAFE_INTEGER);
  int('payloadBytes', 0, Number.MAX_SAFE_INTEGER);
  int('records', 1, 2 ** 32);
  int('createdAt', 0, Number.MAX_SAFE_INTEGER);
  for (const k of HEADER_KEYS) if (!(k in h)) throw corrupt(`header.${k}`, `header lacks ${k}`);
  return h as unknown as BundleHeader;
}

/** Where the parts of a bundle are: read from its lengths only (no crypto). Truncation and bad lengths → BUNDLE_CORRUPT. */
export interface BundleLayout {
  header: BundleHeader;
  /** Bytes [0, prologueEnd): magic, format, H, header. */
  prologueEnd: number;
  handshake: { start: number; end: number };
  /** Each record's ciphertext, in order. */
  records: Array<{ start: number; end: number }>;
  /** Where the signature starts (file length − 64). */
  signatureAt: number;
}

export function bundleLayout(file: Buffer, maxBytes: number): BundleLayout {
  if (!Buffer.isBuffer(file)) throw new FerryError('BAD_OPTION', `a bundle must be a Buffer, got ${describe(file)}`, { field: 'file' });
  if (file.length > maxBytes) throw new FerryError('BUNDLE_TOO_LARGE', `bundle is ${file.length} bytes, over this device's maxBundleBytes (${maxBytes})`, { field: 'file.length', limit: maxBytes });
  // What is there of the magic must match (a file cut inside it is truncated, not foreign).
  const head = file.subarray(0, Math.min(file.length, BUNDLE_MAGIC.length));
  if (!head.equals(BUNDLE_MAGIC.subarray(0, head.length))) throw corrupt('magic', 'file does not start with "FERRYBDL": not a Ferry bundle');
  if (file.length > BUNDLE_MAGIC.length && file[BUNDLE_MAGIC.length] !== BUNDLE_FORMAT) throw corrupt('format', `format is ${file[BUNDLE_MAGIC.length]}; this agent reads format ${BUNDLE_FORMAT}`);
  if (file.length < MIN_BUNDLE_BYTES) throw corrupt('file.length', `is truncated: ${file.length} bytes, a bundle has at least ${MIN_BUNDLE_BYTES}`);
  const signatureAt = file.length - SIGNATURE_BYTES;
  const hLen = file.readUInt16BE(BUNDLE_MAGIC.length + 1);
  if (hLen < 1 || hLen > MAX_HEADER_BYTES || PROLOGUE_FIXED + hLen + 2 > signatureAt) throw corrupt('headerLength', `header length ${hLen} does not fit the file (1..${MAX_HEADER_BYTES}; truncated?)`);
  const prologueEnd = PROLOGUE_FIXED + hLen;
  const header = checkHeader(cborDecode(file.subarray(PROLOGUE_FIXED, prologueEnd), 'header'));
  let at = prologueEnd;
  const part = (field: string, min: number): { start: number; end: number } => {
    if (at + 2 > signatureAt) throw corrupt(field, `is truncated: ${field} is missing`);
    const len = file.readUInt16BE(at);
    if (len < min || at + 2 + len > signatureAt) throw corrupt(field, `${field} length ${len} is out of range or past the end (truncated?)`);
    const p = { start: at + 2, end: at + 2 + len };
    at = p.end;
    return p;
  };
  const handshake = part('handshake', K_MIN_MESSAGE_BYTES);
  const records: BundleLayout['records'] = [];
  while (at < signatureAt) {
    if (records.length >= header.records) throw corrupt(`records[${records.length}]`, `has more records than the ${header.records} its header says`);
    records.push(part(`records[${records.length}]`, TAG_BYTES + 1));
  }
  if (records.length !== header.records) throw corrupt('records', `has ${records.length} records, its header says ${header.records} (truncated?)`);
  return { header, prologueEnd, handshake, records, signatureAt };
}

export interface SealOptions {
  header: HeaderInput;
  /** The plaintext payload (CBOR of the contents, bundle-content.ts). */
  payload: Buffer;
  /** The origin's static X25519 key pair. */
  staticKey: RawKeyPair;
  /** The recipient's static X25519 public key (from pairing). */
  recipientStaticKey: Buffer;
  /** Ed25519 signature with the origin's device key (DeviceIdentity.sign). */
  sign: (data: Buffer) => Buffer;
  /** A fixed ephemeral key, for tests. */
  ephemeral?: RawKeyPair;
}

/** Seals and signs a bundle: the whole file. */
export function sealBundle(o: SealOptions): Buffer {
  const records = Math.ceil(o.payload.length / RECORD_DATA_BYTES) + 1;
  const header = checkHeader({ ...o.header, payloadBytes: o.payload.length, records });
  const hBytes = cborEncode(header);
  if (hBytes.length > MAX_HEADER_BYTES) throw new FerryError('BAD_OPTION', `the bundle header is ${hBytes.length} bytes, over ${MAX_HEADER_BYTES}`, { field: 'header' });
  const fixed = Buffer.alloc(PROLOGUE_FIXED);
  BUNDLE_MAGIC.copy(fixed);
  fixed[BUNDLE_MAGIC.length] = BUNDLE_FORMAT;
  fixed.writeUInt16BE(hBytes.length, BUNDLE_MAGIC.length + 1);
  const prologue = Buffer.concat([fixed, hBytes]);
  const hs = writeK({ prologue, s: o.staticKey, rs: o.recipientStaticKey, payload: Buffer.alloc(0), ...(o.ephemeral ? { e: o.ephemeral } : {}) });
  const parts: Buffer[] = [prologue, u16(hs.message.length), hs.message];
  const ad = Buffer.alloc(0);
  // Each record's nonce is its counter (the CipherState's implicit one, from 0).
  for (let i = 0; i < records; i++) {
    const last = i === records - 1;
    const data = last ? Buffer.alloc(0) : o.payload.subarray(i * RECORD_DATA_BYTES, (i + 1) * RECORD_DATA_BYTES);
    const sealed = hs.send.encryptParts(hs.send.nonce, ad, [Buffer.of(last ? RECORD_END : RECORD_DATA), data]);
    hs.send.setNonce(hs.send.nonce + 1n);
    parts.push(u16(sealed.reduce((n, b) => n + b.length, 0)), ...sealed);
  }
  const body = Buffer.concat(parts);
  const signature = o.sign(body);
  if (signature.length !== SIGNATURE_BYTES) throw new FerryError('BAD_OPTION', `sign returned ${signature.length} bytes, not an Ed25519 signature`, { field: 'sign' });
  return Buffer.concat([body, signature]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

export interface OpenOptions {
  /** This device's id: a bundle for another is BUNDLE_NOT_FOR_US. */
  self: string;
  /** This device's static X25519 key pair. */
  staticKey: RawKeyPair;
  /** The paired origin's keys, or undefined when it is not paired (BRIDGE_NOT_PAIRED). */
  originKeys: (origin: string) => { deviceKey: Buffer; staticKey: Buffer } | undefined;
  /** Largest bundle read, bytes (BUNDLE_TOO_LARGE above). */
  maxBytes: number;
}

/** Reads, authenticates and decrypts a bundle; every refusal is a typed FerryError and nothing else happens. */
export function openBundle(file: Buffer, o: OpenOptions): { header: BundleHeader; payload: Buffer } {
  const l = bundleLayout(file, o.maxBytes);
  const h = l.header;
  if (h.recipient !== o.self) throw new FerryError('BUNDLE_NOT_FOR_US', `bundle ${h.id} is for ${h.recipient}, not this device (${o.self})`, { field: 'header.recipient' });
  const keys = o.originKeys(h.origin);
  if (!keys) throw new FerryError('BRIDGE_NOT_PAIRED', `bundle ${h.id} comes from ${h.origin}, which is not paired with this device`, { field: 'header.origin' });
  if (!ed25519Verify(keys.deviceKey, file.subarray(0, l.signatureAt), file.subarray(l.signatureAt))) {
    throw new FerryError('BUNDLE_FORGED', `bundle ${h.id}'s signature does not verify under ${h.origin}'s device key: it was modified or not made by ${h.origin}`, { field: 'signature' });
  }
  let recv;
  try {
    recv = readK({ prologue: file.subarray(0, l.prologueEnd), s: o.staticKey, rs: keys.staticKey, message: file.subarray(l.handshake.start, l.handshake.end) }).recv;
  } catch {
    // Signed by the origin, yet not sealed to the key this device holds: paired again since?
    throw new FerryError('BUNDLE_NOT_FOR_US', `bundle ${h.id} is signed by ${h.origin} but sealed to another key of this device (paired again since it was made?)`, { field: 'handshake' });
  }
  const out = Buffer.alloc(h.payloadBytes);
  let filled = 0;
  const ad = Buffer.alloc(0);
  l.records.forEach((r, i) => {
    let plain: Buffer;
    try {
      plain = recv.decryptWithAd(ad, file.subarray(r.start, r.end));
    } catch {
      throw corrupt(`records[${i}]`, `record ${i} of ${h.id} fails authentication`);
    }
    const last = i === l.records.length - 1;
    if (plain[0] !== (last ? RECORD_END : RECORD_DATA) || (last && plain.length !== 1)) throw corrupt(`records[${i}]`, `record ${i} of ${h.id} has type ${plain[0]}; only the last is the end marker`);
    if (filled + plain.length - 1 > out.length) throw corrupt(`records[${i}]`, `records of ${h.id} hold more than the ${h.payloadBytes} payload bytes its header says`);
    plain.copy(out, filled, 1);
    filled += plain.length - 1;
  });
  if (filled !== h.payloadBytes) throw corrupt('records', `records of ${h.id} hold ${filled} bytes, its header says ${h.payloadBytes}`);
  return { header: h, payload: out };
}
