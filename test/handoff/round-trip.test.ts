import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { appMailboxTopic, connectBus } from '../../transports/index.js';
import { startAedes } from '../helpers/brokers.js';
import { devicePair, pairViaCli } from '../bridge/helpers.js';
import { migrate, moved } from './helpers.js';

/**
 * A round trip between an rpi-4b and an android-phone agent (same line size: the line path):
 * the code travels only when the destination lacks it, the heap arrives whole and `onMigrated`
 * runs there, mailbox requests reach it where it runs, a return trip sends about what changed
 * (the origin kept its last version as a cache), and the device it left refuses to run it.
 */

const keeper = (version: string) => `export default {
  name: 'keeper',
  version: '${version}',
  requirements: { minHeapBytes: 16 * 1024 },
  init(ctx) { ctx.root.slots = []; ctx.root.arrivals = []; },
  handlers: {
    fill(ctx, m) { for (let i = 0; i < m.kb; i++) ctx.root.slots.push({ s: 'x'.repeat(1000) + i }); return { slots: ctx.root.slots.length }; },
    set(ctx, m) { ctx.root.slots[m.i] = { s: m.v }; return { ok: true }; },
    get(ctx, m) { return { slots: ctx.root.slots.length, at: ctx.root.slots[m.i]?.s, arrivals: ctx.root.arrivals, version: ctx.app.version }; },
  },
  onMigrated(ctx, m) { ctx.root.arrivals.push({ from: m.from, to: m.to, downtime: typeof m.downtimeMs === 'number' }); },
};
`;

/** Generous: this test is about what moves, not how fast (bench:bridge measures that); a busy machine must not abort it. */
const LIMIT = ['--downtime-limit', '5000'];

describe('handoff round trip (aedes)', () => {
  const s = devicePair(() => startAedes({ persistent: true }), { emulate: true });

  it('moves a 200 KiB heap to the phone and back; the return sends only what changed', async () => {
    const { pi, phone } = s;
    await pairViaCli(pi, phone);
    const file = join(s.dirs.make('app'), 'keeper.mjs');
    writeFileSync(file, keeper('1.0.0'));
    expect((await pi.cli(['install', file])).code).toBe(0);
    expect((await pi.cli(['run', 'keeper'])).code).toBe(0);
    expect((await pi.json(['call', 'keeper', 'fill', '{"kb":200}'])).value).toEqual({ slots: 200 });

    const plan = await migrate(pi, 'keeper', phone.id, ['--dry-run']);
    expect(plan.code, JSON.stringify(plan.error)).toBe(0);
    expect(plan.report).toMatchObject({ outcome: 'planned', path: 'lines' });
    expect(plan.report!.bytesMissing).toBeGreaterThan(200 * 1000);
    expect((await pi.json<{ instances: Array<{ state: string }> }>(['apps'])).value.instances[0]!.state).toBe('running');

    const there = await moved(pi, 'keeper', phone.id, LIMIT);
    expect(there).toMatchObject({ path: 'lines', codeSent: true, linesReused: 0 });
    expect(there.downtimeMs).toBeLessThanOrEqual(there.downtimeLimitMs);
    expect(there.bytesSent).toBeGreaterThanOrEqual(there.bytesMissing);

    // A client that knows only the instance reaches it on the phone, through its mailbox.
    const client = await connectBus({ url: s.broker.url, deviceId: `client-${process.pid}` });
    try {
      const got = await client.request(appMailboxTopic('keeper'), 'app.call', { handler: 'get', message: { i: 199 } }, { timeoutMs: 10_000 });
      expect(got.body).toMatchObject({ slots: 200, at: `${'x'.repeat(1000)}199`, arrivals: [{ from: pi.id, to: phone.id, downtime: true }], version: '1.0.0' });
    } finally {
      await client.close();
    }
    // The phone had no such app: the module came with it and is installed there now.
    expect((await phone.json<{ apps: Array<{ name: string }> }>(['apps'])).value.apps.map((a) => a.name)).toEqual(['keeper']);
    // The Pi refuses to run what moved away, naming where it went.
    const again = await pi.json(['resume', 'keeper']);
    expect(again.error?.code).toBe('MIGRATE_MOVED');
    expect(again.error?.message).toContain(phone.id);
    expect((await pi.json<{ instances: Array<{ state: string }> }>(['apps'])).value.instances[0]!.state).toBe('moved');

    // About 1 % of the heap changes on the phone; going back reuses the Pi's cached version.
    await phone.json(['call', 'keeper', 'set', '{"i":5,"v":"changed on the phone"}']);
    const back = await moved(phone, 'keeper', pi.id, LIMIT);
    expect(back.codeSent).toBe(false);
    expect(back.linesReused).toBeGreaterThan(0);
    expect(back.bytesSent / back.heapBytes).toBeLessThan(0.1);
    const home = (await pi.json<{ at: string; arrivals: unknown[] }>(['call', 'keeper', 'get', '{"i":5}'])).value;
    expect(home.at).toBe('changed on the phone');
    expect(home.arrivals).toHaveLength(2);

    // Removing the copy the phone keeps must not touch the mailbox session the Pi now uses.
    expect((await phone.cli(['remove', 'keeper'])).code).toBe(0);
    const client2 = await connectBus({ url: s.broker.url, deviceId: `client2-${process.pid}` });
    try {
      const got = await client2.request(appMailboxTopic('keeper'), 'app.call', { handler: 'get', message: { i: 5 } }, { timeoutMs: 10_000 });
      expect(got.body).toMatchObject({ at: 'changed on the phone' });
    } finally {
      await client2.close();
    }
    const history = (await pi.json<{ recent: Array<{ outcome: string; to: string }> }>(['migrations'])).value.recent;
    expect(history[0]).toMatchObject({ outcome: 'moved', to: phone.id });
  }, 120_000);

  it('a destination with another version of the app installed runs the code that came with the instance', async () => {
    const { pi, phone } = s;
    const file = join(s.dirs.make('app'), 'keeper.mjs');
    writeFileSync(file, keeper('2.0.0'));
    expect((await phone.cli(['install', file])).code).toBe(0);
    const there = await moved(pi, 'keeper', phone.id, LIMIT);
    expect(there.codeSent).toBe(true);
    expect((await phone.json<{ version: string }>(['call', 'keeper', 'get', '{"i":0}'])).value.version).toBe('1.0.0');
    // The installed module is still 2.0.0 for anything else run from it.
    expect((await phone.json<{ apps: Array<{ version: string }> }>(['apps'])).value.apps[0]!.version).toBe('2.0.0');
    // For people (no --json, no terminal): the summary as `key: value` lines, and the history as a table.
    const human = await phone.cli(['migrate', 'keeper', pi.id, ...LIMIT]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^outcome: moved$/m);
    expect(human.stdout).toMatch(/^downtimeMs: \d+(\.\d+)?$/m);
    expect(human.stdout).toMatch(new RegExp(`^to: ${pi.id}$`, 'm'));
    const table = await phone.cli(['migrations']);
    expect(table.stdout).toMatch(/startedAt\s+instance\s+to\s+outcome\s+downtimeMs/);
    expect(table.stdout.split('\n').filter((l) => /\bmoved\b/.test(l)).length).toBeGreaterThanOrEqual(2);
  }, 60_000);
});
