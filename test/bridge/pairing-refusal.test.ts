/**
 * Pairing attempts that end without a pairing, through the `ferry` command between two real
 * agents: a wrong code, a cancel, a refusal, a timeout. Each ends on both sides with its code,
 * and nothing is stored on either.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BROKERS } from '../helpers/brokers.js';
import { Device, otherCode, pairViaCli, pendingWith, requestAndAccept, startDevices, until, type JsonRan, type PeersView, devicePair } from './helpers.js';

/**
 * Nothing stored and no attempt left, on either device (the attempt ends on the far side as its
 * message arrives). The wait reads `ferry peers --no-check`'s list on the control socket (no
 * process per look); the last look is `ferry peers` itself. Both devices at once.
 */
async function nothingStored(...devices: Device[]): Promise<void> {
  await Promise.all(
    devices.map(async (d) => {
      const file = JSON.parse(readFileSync(join(d.dataDir, 'bridge', 'peers.json'), 'utf8')) as { peers: object };
      expect(file.peers).toEqual({});
      await until(`no attempt left on ${d.id}`, async () => ((await d.control('peers', { check: false })) as PeersView).pending.length === 0);
      expect((await d.peers()).paired).toEqual([]);
    }),
  );
}

function failedWith(r: JsonRan<unknown>, code: string): void {
  expect(r.code, r.stdout + r.stderr).toBe(1);
  expect(r.error?.code, r.stdout).toBe(code);
}

describe.each(BROKERS)('pairing attempts that end unpaired (%s)', (_name, startBroker) => {
  const set = devicePair(startBroker);
  let pi: Device;
  let phone: Device;
  beforeAll(() => {
    ({ pi, phone } = set);
  });
  afterEach(async () => {
    // Leave no attempt behind for the next case, whatever this one did (both sides at once).
    await Promise.all([pi.cli(['pair', '--cancel', phone.id]), phone.cli(['pair', '--cancel', pi.id])]);
  });

  it.each(['initiator', 'responder'] as const)('a wrong code on the %s: PAIR_CODE_MISMATCH there, PAIR_REFUSED on the other side', async (wrongSide) => {
    const { initiator, responder } = await requestAndAccept(pi, phone);
    const code = initiator.value.code;
    expect(responder.value.code).toBe(code);
    const confirmPi = (c: string) => pi.json(['pair', phone.id, '--confirm', c]);
    const confirmPhone = (c: string) => phone.json(['pair', '--accept', pi.id, '--confirm', c]);
    const [right, rightDevice, rightPeer] = wrongSide === 'initiator' ? [confirmPhone, phone, pi.id] : [confirmPi, pi, phone.id];
    const wrong = wrongSide === 'initiator' ? confirmPi : confirmPhone;

    // The right side confirms first and waits for the other's confirmation.
    const waiting = right(code);
    await until(`${rightDevice.id} to confirm`, async () => (await pendingWith(rightDevice, rightPeer))?.step === 'confirmed');
    const mismatch = await wrong(otherCode(code));
    failedWith(mismatch, 'PAIR_CODE_MISMATCH');
    expect(mismatch.error?.field).toBe('code');
    failedWith(await waiting, 'PAIR_REFUSED');
    await nothingStored(pi, phone);
  });

  it('a cancel on the initiator ends the attempt on the responder (PAIR_CANCELLED), before or after the responder accepted', async () => {
    // After: the responder confirmed and waits.
    const { initiator } = await requestAndAccept(pi, phone);
    const waiting = phone.json(['pair', '--accept', pi.id, '--confirm', initiator.value.code]);
    await until('the responder to confirm', async () => (await pendingWith(phone, pi.id))?.step === 'confirmed');
    const cancel = await pi.json(['pair', '--cancel', phone.id]);
    expect(cancel.code, cancel.stdout).toBe(0);
    expect(cancel.value).toEqual({ peer: phone.id, cancelled: true });
    failedWith(await waiting, 'PAIR_CANCELLED');
    await nothingStored(pi, phone);

    // Before: the request is only pending on the responder; the initiator's own wait ends too.
    const asking = pi.json(['pair', phone.id]);
    await until('the request pending on the responder', () => pendingWith(phone, pi.id));
    expect((await pi.json(['pair', '--cancel', phone.id])).code).toBe(0);
    failedWith(await asking, 'PAIR_CANCELLED');
    await nothingStored(pi, phone);
    expect(phone.logs).toContainEqual(expect.objectContaining({ event: 'pair.ended', peer: pi.id, code: 'PAIR_CANCELLED' }));
    // The responder's owner answering late learns why.
    failedWith(await phone.json(['pair', '--accept', pi.id]), 'PAIR_CANCELLED');
    failedWith(await phone.json(['pair', '--accept', pi.id, '--confirm', '123456']), 'PAIR_CANCELLED');
    await nothingStored(pi, phone);
  });

  it('a refusal of a pending request ends the initiator\'s wait with PAIR_REFUSED', async () => {
    const asking = pi.json(['pair', phone.id]);
    const pending = await until('the request pending on the responder', () => pendingWith(phone, pi.id));
    expect(pending).toMatchObject({ role: 'responder', step: 'incoming' });
    const refuse = await phone.json(['pair', '--refuse', pi.id]);
    expect(refuse.code, refuse.stdout).toBe(0);
    expect(refuse.value).toEqual({ peer: pi.id, cancelled: true });
    failedWith(await asking, 'PAIR_REFUSED');
    await nothingStored(pi, phone);
  });

  it('after every ended attempt the two still pair', async () => {
    await pairViaCli(pi, phone);
    expect((await pi.peers()).paired).toEqual([expect.objectContaining({ deviceId: phone.id, reachable: true })]);
    expect((await phone.json(['unpair', pi.id])).value).toEqual({ peer: pi.id, told: true });
    await until('the initiator to forget the responder', async () => ((await pi.control('peers', { check: false })) as PeersView).paired.length === 0);
  });

  it('an unanswered request times out (pairTimeoutMs from ferry.config.json): PAIR_TIMEOUT on the initiator, nothing left on the responder', async () => {
    const [a, b] = await startDevices(set.dirs, set.broker.url, { pairTimeoutMs: 2000 });
    try {
      const r = await a.json(['pair', b.id]);
      failedWith(r, 'PAIR_TIMEOUT');
      expect(b.logs).toContainEqual(expect.objectContaining({ event: 'pair.incoming', peer: a.id, profile: 'rpi-4b' }));
      await until('the responder to end the attempt', () => b.logs.find((l) => l.event === 'pair.ended' && l.peer === a.id && l.code === 'PAIR_TIMEOUT'));
      // Answering late fails: with why while the agent remembers it (timeoutMs), then as unknown.
      const late = await b.json(['pair', '--accept', a.id]);
      expect(late.code).toBe(1);
      expect(['PAIR_TIMEOUT', 'PAIR_UNKNOWN']).toContain(late.error?.code);
      await nothingStored(a, b);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
