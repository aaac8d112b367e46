import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { until } from '../bridge/helpers.js';
import { BothRunningWatch, checkLedger, INSTANCE, startRig, type FaultDevice, type Rig } from '../handoff/fault-helpers.js';
import { snapshot } from '../handoff/load-client.js';

/**
 * Offline bundles between two real agents (an rpi-4b and an android-phone, same line size) on
 * aedes with a persistent store: requests sent while the bundle is in transit wait at the broker
 * and are applied once, in order, after the import; every refusal leaves the importer as it was;
 * a cancel before the import takes the instance back and the bundle is refused after; a cancel
 * after it is refused; the instance never runs on both; a SIGKILL during an export or an import
 * leaves it on exactly one device.
 */

interface Exported {
  bundle: string;
  bytes: number;
  heapBytes: number;
  path: string;
  codeIncluded: boolean;
}

describe('offline bundles (aedes, two agents)', () => {
  let broker: TestBroker;
  let rig: Rig;
  let dir: string;

  beforeAll(async () => {
    broker = await startAedes({ persistent: true });
    rig = await startRig(broker, { heap: { count: 50, size: 2000 } });
    dir = rig.dirs.make('bundles');
  }, 60_000);

  afterAll(async () => {
    await rig?.close();
    await broker?.stop();
  });

  const exportTo = async (from: FaultDevice, to: FaultDevice, file: string) => {
    const r = await from.json<Exported>(['bundle', 'export', INSTANCE, file, '--for', to.id]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return r.value;
  };
  const refusal = async (d: FaultDevice, args: string[]) => {
    const r = await d.json(['bundle', ...args]);
    expect(r.code, r.stdout).not.toBe(0);
    return r.error!;
  };

  it('exports under load, refuses bad files, imports: requests sent meanwhile are applied exactly once, in order', async () => {
    const { pi, phone, stream } = rig;
    const watch = new BothRunningWatch([pi, phone]);
    stream.start(15);
    await until('30 answers on the pi', () => stream.answers.size >= 30);
    const file = join(dir, 'tally.bundle');
    const e = await exportTo(pi, phone, file);
    expect(e).toMatchObject({ path: 'lines', codeIncluded: true });
    expect(e.heapBytes).toBeGreaterThan(100_000);
    expect(e.bytes / e.heapBytes).toBeLessThan(1.05);
    expect(existsSync(`${file}.part`)).toBe(false);
    expect(await pi.state()).toBe('moved');
    const answeredAtExport = stream.answers.size;

    // Refusals, each leaving the phone as it was; the requests keep queueing meanwhile.
    const before = await snapshot(phone);
    const good = readFileSync(file);
    const flipped = Buffer.from(good);
    flipped[Math.floor(good.length / 2)]! ^= 0x10;
    writeFileSync(join(dir, 'flipped.bundle'), flipped);
    writeFileSync(join(dir, 'cut.bundle'), good.subarray(0, good.length - 1000));
    writeFileSync(join(dir, 'junk.bundle'), Buffer.from('not a bundle at all'));
    expect(await refusal(phone, ['import', join(dir, 'flipped.bundle')])).toMatchObject({ code: 'BUNDLE_FORGED', field: 'signature' });
    expect((await refusal(phone, ['import', join(dir, 'cut.bundle')])).code).toMatch(/^BUNDLE_(CORRUPT|FORGED)$/);
    expect(await refusal(phone, ['import', join(dir, 'junk.bundle')])).toMatchObject({ code: 'BUNDLE_CORRUPT', field: 'magic' });
    expect(await refusal(pi, ['import', file])).toMatchObject({ code: 'BUNDLE_NOT_FOR_US', field: 'header.recipient' });
    expect(await snapshot(phone)).toEqual(before);
    expect(stream.answers.size, 'nothing answered while the bundle is in transit').toBe(answeredAtExport);
    expect(stream.next).toBeGreaterThan(answeredAtExport);

    const imp = await phone.json<{ bundle: string; instance: string; from: string }>(['bundle', 'import', file]);
    expect(imp.code, imp.stdout + imp.stderr).toBe(0);
    expect(imp.value).toMatchObject({ bundle: e.bundle, instance: INSTANCE, from: pi.id });
    await stream.stop();
    await stream.drain(30_000);
    await checkLedger(phone, stream);

    // Once only, and no way back by cancel once imported.
    expect(await refusal(phone, ['import', file])).toMatchObject({ code: 'BUNDLE_IMPORTED' });
    expect(await refusal(pi, ['cancel', INSTANCE])).toMatchObject({ code: 'BUNDLE_IMPORTED' });
    expect(await pi.state()).toBe('moved');
    expect(await phone.state()).toBe('running');
    await watch.stop();
    expect(watch.seen).toEqual([]);
    expect(watch.polls).toBeGreaterThan(10);
  }, 90_000);

  it('a cancel before the import takes the instance back (resumable); the bundle is refused after', async () => {
    const { pi, phone, stream } = rig;
    const file = join(dir, 'back.bundle');
    await exportTo(phone, pi, file);
    copyFileSync(file, join(dir, 'back-copy.bundle'));
    await stream.more(5); // queued at the broker
    const c = await phone.json<{ revoked: boolean; state: string; fileRemoved: boolean }>(['bundle', 'cancel', INSTANCE]);
    expect(c.code, c.stdout + c.stderr).toBe(0);
    expect(c.value).toMatchObject({ revoked: true, state: 'suspended', fileRemoved: true });
    expect(existsSync(file)).toBe(false);
    const before = await snapshot(pi);
    expect(await refusal(pi, ['import', join(dir, 'back-copy.bundle')])).toMatchObject({ code: 'BUNDLE_REVOKED', field: 'header.id' });
    expect(await snapshot(pi)).toEqual(before);
    expect(await refusal(phone, ['cancel', INSTANCE])).toMatchObject({ code: 'BUNDLE_UNKNOWN' });
    expect((await phone.cli(['resume', INSTANCE])).code).toBe(0);
    await stream.drain(30_000);
    await checkLedger(phone, stream);
  }, 60_000);

  it('a cancel with the peer unreachable is refused with a code; --force takes it back', async () => {
    const { pi, phone, stream } = rig;
    await exportTo(phone, pi, join(dir, 'away.bundle'));
    await pi.stop();
    try {
      expect(await refusal(phone, ['cancel', INSTANCE, '--wait', '1000'])).toMatchObject({ code: 'BUNDLE_PEER_UNREACHABLE', field: 'peer' });
      expect(await phone.state()).toBe('moved');
      const f = await phone.json<{ revoked: boolean; forced: boolean; state: string }>(['bundle', 'cancel', INSTANCE, '--force', '--wait', '500']);
      expect(f.code, f.stdout + f.stderr).toBe(0);
      expect(f.value).toMatchObject({ revoked: false, forced: true, state: 'suspended' });
    } finally {
      await pi.start();
    }
    expect((await phone.cli(['resume', INSTANCE])).code).toBe(0);
    await stream.more(3);
    await stream.drain(30_000);
    await checkLedger(phone, stream);
  }, 60_000);

  it('SIGKILL during an export or an import: before the decision nothing moved; after it, the restart finishes the step', async () => {
    const { pi, phone, stream } = rig;
    const file = join(dir, 'killed.bundle');
    const crash = async (fault: string) => {
      await phone.stop();
      phone.fault = fault;
      await phone.start();
      const r = await phone.json(['bundle', 'export', INSTANCE, file, '--for', pi.id]);
      expect(r.code).not.toBe(0);
      await phone.died();
      await phone.restart();
    };
    await crash('origin:bundle-sealed:kill');
    expect(existsSync(file) || existsSync(`${file}.part`)).toBe(false);
    expect(await phone.state()).toBe('running');
    await stream.more(3);
    await stream.drain(30_000);

    await crash('origin:bundle-decided:kill');
    await until('the restarted origin to finish the file', () => existsSync(file) && !existsSync(`${file}.part`));
    expect(await phone.state()).toBe('moved');
    await stream.more(3); // queued: nobody runs it now

    // The importer killed before its decision: undone at restart, the file imports again;
    // killed after it: the restart starts the instance from what it recorded, asking nobody.
    const importDies = async (fault: string) => {
      await pi.stop();
      pi.fault = fault;
      await pi.start();
      expect((await pi.json(['bundle', 'import', file])).code).not.toBe(0);
      await pi.died();
      await pi.restart();
    };
    await importDies('destination:bundle-installed:kill');
    expect(await pi.state()).toBe('moved'); // its record from before the import, restored
    await importDies('destination:bundle-imported:kill');
    await until('the restarted importer to run the instance', async () => (await pi.state()) === 'running');
    expect((await pi.json(['bundle', 'import', file])).error?.code).toBe('BUNDLE_IMPORTED');
    await stream.drain(30_000);
    await checkLedger(pi, stream);
    expect(await phone.state()).toBe('moved');
  }, 120_000);
});
