import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PeerRegistry } from '../../agent/bridge/peer-registry.js';
import { runUntilKilled } from '../helpers/killed-child.js';
import { xorshift } from '../helpers/prng.mjs';

/**
 * Crash consistency of peers.json: a child process adds and removes peers in a loop and is
 * SIGKILLed at a random moment, often in the middle of a write. After every kill the registry
 * must open (never PEERS_CORRUPT, never empty by accident) and hold exactly the state after the
 * last acknowledged operation or after the one in flight.
 */

const CHILD = join(import.meta.dirname, '../helpers/peer-registry-child.mjs');
const SELF = '0123:4567:89ab:cdef:0011';
const IDS = ['alpha', 'bravo', 'charlie-2', 'delta.home', 'echo:7', 'foxtrot_x'];
const PROFILES = ['rpi-4b', 'rpi-zero-2w', 'esp32.s3'];

type Op =
  | { kind: 'add'; id: string; deviceKey: string; staticKey: string; profile: string; label: string; pairedAt: number }
  | { kind: 'remove'; id: string };

/** The deterministic workload: adds (each with a label unique to its place in the list) and removes. */
function workload(seed: number, length: number): Op[] {
  const r = xorshift(seed);
  const hex = () => Buffer.from(Array.from({ length: 32 }, () => Math.floor(r() * 256))).toString('hex');
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  return Array.from({ length }, (_, i): Op => {
    const id = pick(IDS);
    if (r() < 0.35) return { kind: 'remove', id };
    return { kind: 'add', id, deviceKey: hex(), staticKey: hex(), profile: pick(PROFILES), label: `op ${i} ✓`, pairedAt: 1_700_000_000_000 + i };
  });
}

/** Registry states as comparable text: id → stored fields. */
type State = ReadonlyMap<string, string>;

function apply(state: State, op: Op): State {
  const next = new Map(state);
  if (op.kind === 'remove') next.delete(op.id);
  else {
    const key = (h: string) => Buffer.from(h, 'hex').toString('base64url');
    next.set(op.id, JSON.stringify([key(op.deviceKey), key(op.staticKey), op.profile, op.label, op.pairedAt]));
  }
  return next;
}

function stateOf(registry: PeerRegistry): State {
  return new Map(registry.list().map((p) => [p.deviceId, JSON.stringify([p.deviceKey.toString('base64url'), p.staticKey.toString('base64url'), p.profile, p.label, p.pairedAt])]));
}

function show(s: State): string {
  return JSON.stringify([...s].sort());
}

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('peer registry crash consistency under SIGKILL', () => {
  it('after every kill the file opens and holds the last acknowledged state or the one in flight', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-peers-crash-'));
    dirs.push(dir);
    const file = join(dir, 'peers.json');
    const ops = workload(20240611, 400);
    const opsFile = join(dir, 'ops.json');
    writeFileSync(opsFile, JSON.stringify(ops));

    // `done`: operations durable in the file so far; `state`: the model after them.
    let done = 0;
    let state: State = new Map();
    let seed = 777;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const KILLS = 30;
    let kills = 0;
    let sawPeers = false;
    // At least KILLS kills, more (up to 4×) until the workload has gone round its list once.
    for (; kills < KILLS || (done < ops.length && kills < KILLS * 4); kills++) {
      const killAfter = 5 + random() * 75;
      const { out } = await runUntilKilled(CHILD, [file, SELF, opsFile, String(done + 1)], killAfter, 'READY');
      expect(out, `kill ${kills}: the child never got ready`).toMatch(/^READY/m);
      let lastAck = done;
      for (const m of out.matchAll(/^ACK (\d+)$/gm)) lastAck = Math.max(lastAck, Number(m[1]));

      let acked = state;
      for (let n = done + 1; n <= lastAck; n++) acked = apply(acked, ops[(n - 1) % ops.length]!);
      const inFlight = apply(acked, ops[lastAck % ops.length]!);

      const got = stateOf(PeerRegistry.open(file, SELF));
      if (show(got) === show(inFlight)) {
        done = lastAck + 1;
        state = inFlight;
      } else {
        expect(show(got), `kill ${kills}: after ACK ${lastAck}`).toBe(show(acked));
        done = lastAck;
        state = acked;
      }
      if (state.size > 0) sawPeers = true;
    }
    expect(kills).toBeGreaterThanOrEqual(KILLS);
    // The workload made real progress, through adds, replacements and removes.
    expect(done).toBeGreaterThanOrEqual(ops.length);
    expect(sawPeers).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  }, 300_000);
});
