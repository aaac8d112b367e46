/** Published Noise test vectors (the cacophony / snow format) kept as fixtures beside this file. */
import { readFileSync } from 'node:fs';

export interface NoiseVector {
  source: string;
  protocol_name: string;
  init_prologue: string;
  init_static: string;
  init_ephemeral: string;
  init_remote_static: string;
  resp_prologue: string;
  resp_static: string;
  /** Absent in one-way patterns (the responder sends nothing). */
  resp_ephemeral?: string;
  resp_remote_static: string;
  handshake_hash?: string;
  messages: { payload: string; ciphertext: string }[];
}

/** The vectors in `fixtures/<file>`. */
export function noiseVectors(file: string): NoiseVector[] {
  return (JSON.parse(readFileSync(new URL(`./fixtures/${file}`, import.meta.url), 'utf8')) as { vectors: NoiseVector[] }).vectors;
}

export const hex = (s: string): Buffer => Buffer.from(s, 'hex');
export const EMPTY = Buffer.alloc(0);
