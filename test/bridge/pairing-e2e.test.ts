/**
 * Pairing end to end through the `ferry` command, between two real agent processes (an rpi-4b
 * and an android-phone) on a real broker: pairing, restarts, unpairing (told and untold).
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../core/errors.js';
import { BROKERS } from '../helpers/brokers.js';
import { caughtAsync } from '../helpers/ferry-error.js';
import { devicePair, Device, pairViaCli, until, type PeersView } from './helpers.js';

const mode = (file: string) => statSync(file).mode & 0o777;
const storedPeers = (d: Device) => Object.keys((JSON.parse(readFileSync(join(d.dataDir, 'bridge', 'peers.json'), 'utf8')) as { peers: object }).peers);

describe.each(BROKERS)('pairing two agents through the ferry command (%s)', (_name, startBroker) => {
  const set = devicePair(startBroker);
  let pi: Device;
  let phone: Device;
  beforeAll(() => {
    ({ pi, phone } = set);
  });

  it('pairs by the script flow: both print the same code, both confirm with it, each lists the other as reachable', async () => {
    const fpPi = await pi.fingerprint();
    const fpPhone = await phone.fingerprint();
    expect(fpPi).toMatch(/^[0-9a-f]{4}(:[0-9a-f]{4}){4}$/);
    expect(fpPhone).not.toBe(fpPi);

    const { initiator, responder, confirmed } = await pairViaCli(pi, phone);
    // Each side shows the other's fingerprint with the code, and says what to run next.
    expect(initiator).toMatchObject({ peer: phone.id, fingerprint: fpPhone, next: `ferry pair ${phone.id} --confirm <code shown on ${phone.id}>` });
    expect(responder).toMatchObject({ peer: pi.id, fingerprint: fpPi, next: `ferry pair --accept ${pi.id} --confirm <code shown on ${pi.id}>` });
    // Each confirmation answers with the peer stored.
    expect(confirmed).toEqual([
      expect.objectContaining({ deviceId: phone.id, fingerprint: fpPhone, profile: 'android-phone' }),
      expect.objectContaining({ deviceId: pi.id, fingerprint: fpPi, profile: 'rpi-4b' }),
    ]);

    const onPi = await pi.peers();
    expect(onPi.pending).toEqual([]);
    expect(onPi.paired).toEqual([expect.objectContaining({ deviceId: phone.id, fingerprint: fpPhone, profile: 'android-phone', label: 'my phone', reachable: true })]);
    const onPhone = await phone.peers();
    expect(onPhone.pending).toEqual([]);
    expect(onPhone.paired).toEqual([expect.objectContaining({ deviceId: pi.id, fingerprint: fpPi, profile: 'rpi-4b', label: 'kitchen pi', reachable: true })]);

    for (const d of [pi, phone]) {
      expect(mode(join(d.dataDir, 'bridge', 'identity.key'))).toBe(0o600);
      expect(mode(join(d.dataDir, 'bridge', 'peers.json'))).toBe(0o600);
    }
    expect(storedPeers(pi)).toEqual([phone.id]);
    expect(storedPeers(phone)).toEqual([pi.id]);
  });

  it('keeps the pairing over a restart of both agents, and the sealed channel comes back', async () => {
    const fpPi = await pi.fingerprint();
    const fpPhone = await phone.fingerprint();
    await Promise.all([pi.stop(), phone.stop()]);
    const restartedAt = Date.now();
    await Promise.all([pi.start(), phone.start()]);
    // Same identity from the same files.
    expect(await pi.fingerprint()).toBe(fpPi);
    expect(await phone.fingerprint()).toBe(fpPhone);
    // Read back from peers.json. "Last seen" is kept in memory only: none from before the restart
    // (the region summaries the two exchange at start may have set a new one already).
    const [row] = (await pi.peers(false)).paired;
    expect(row).toEqual(expect.objectContaining({ deviceId: phone.id, fingerprint: fpPhone }));
    expect(row!.lastSeen === null || Date.parse(row!.lastSeen) >= restartedAt).toBe(true);
    expect((await phone.peers(false)).paired).toEqual([expect.objectContaining({ deviceId: pi.id, fingerprint: fpPi })]);

    // No session survives a restart: the first ping makes a new one, the next uses it.
    expect(await pi.control('peer-ping', { peer: phone.id })).toMatchObject({ peer: phone.id });
    expect(await pi.control('peer-ping', { peer: phone.id })).toMatchObject({ peer: phone.id, session: 'kept' });
    expect(await phone.control('peer-ping', { peer: pi.id })).toMatchObject({ peer: pi.id, session: 'kept' });

    expect((await pi.peers()).paired).toEqual([expect.objectContaining({ deviceId: phone.id, reachable: true })]);
    expect((await phone.peers()).paired).toEqual([expect.objectContaining({ deviceId: pi.id, reachable: true })]);
  });

  it('reaches a peer that restarted alone: the stale session is refused once and replaced', async () => {
    expect(await pi.control('peer-ping', { peer: phone.id })).toMatchObject({ session: 'kept' });
    await phone.stop();
    await phone.start();
    expect(await pi.control('peer-ping', { peer: phone.id })).toMatchObject({ peer: phone.id });
    await phone.stop();
    await phone.start();
    expect((await pi.peers()).paired).toEqual([expect.objectContaining({ deviceId: phone.id, reachable: true })]);
    expect((await phone.peers()).paired).toEqual([expect.objectContaining({ deviceId: pi.id, reachable: true })]);
  });

  it('unpairs a reachable peer: it is told and forgets this device too; a ping is then PEER_UNKNOWN', async () => {
    const r = await pi.json(['unpair', phone.id]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.value).toEqual({ peer: phone.id, told: true });
    expect((await pi.peers()).paired).toEqual([]);
    // Polled on the control socket (`ferry peers --no-check`'s list): no process per look.
    await until(`${phone.id} to forget ${pi.id}`, async () => ((await phone.control('peers', { check: false })) as PeersView).paired.length === 0);
    expect(storedPeers(pi)).toEqual([]);
    expect(storedPeers(phone)).toEqual([]);
    const e = await caughtAsync(() => pi.control('peer-ping', { peer: phone.id }));
    expect(e).toBeInstanceOf(FerryError);
    expect(e.code).toBe('PEER_UNKNOWN');
    expect(e.details.field).toBe('peer');
    expect((await caughtAsync(() => phone.control('peer-ping', { peer: pi.id }))).code).toBe('PEER_UNKNOWN');
  });

  it('unpairs a peer that is down: not told; back up, it still lists this device but its channel is refused (BRIDGE_NOT_PAIRED)', async () => {
    await pairViaCli(pi, phone);
    expect((await pi.peers()).paired).toEqual([expect.objectContaining({ deviceId: phone.id, reachable: true })]);
    await phone.stop();

    const r = await pi.json(['unpair', phone.id]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.value).toEqual({ peer: phone.id, told: false });
    expect((await pi.peers(false)).paired).toEqual([]);

    await phone.start();
    expect((await phone.peers(false)).paired).toEqual([expect.objectContaining({ deviceId: pi.id })]);
    const refusedBefore = pi.logs.filter((l) => l.event === 'bridge.refused').length;
    const e = await caughtAsync(() => phone.control('peer-ping', { peer: pi.id }));
    expect(e.code).toBe('BRIDGE_NOT_PAIRED');
    await until('a bridge.refused line on the unpairing side', () =>
      pi.logs.slice(refusedBefore).find((l) => l.event === 'bridge.refused' && l.code === 'BRIDGE_NOT_PAIRED' && l.from === phone.id),
    );
    // The refusal changed nothing on either side, and the refusing agent serves on.
    expect((await phone.peers()).paired).toEqual([expect.objectContaining({ deviceId: pi.id, reachable: false })]);
    const status = await pi.json<{ deviceId: string; paired: number }>(['status']);
    expect(status.code).toBe(0);
    expect(status.value).toMatchObject({ deviceId: pi.id, paired: 0 });
  });
});
