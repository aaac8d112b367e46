/**
 * The dashboard in a real browser (Debian's Chromium, headless, driven by playwright-core)
 * against real agent processes on a real broker: an rpi-4b with the sample apps and an
 * android-phone. Every page is loaded and photographed (test-output/dashboard/*.png); each action
 * is run through the page's own buttons and what the page then shows is checked against what the
 * agent says over its control socket. Refused cases: no token, a wrong token, a cross-site POST,
 * an action on a vanished instance.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Device, Dirs, until } from '../bridge/helpers.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { launchBrowser, shot, type TestBrowser } from './browser.js';

interface Opened {
  page: Page;
  errors: string[];
  /** The dashboard's address without the token. */
  base: string;
}

type Apps = { instances: Array<{ instance: string; state: string }> };
const stateOf = async (d: Device, instance: string) => ((await d.control('apps')) as Apps).instances.find((i) => i.instance === instance)?.state;
const count = async (d: Device) => ((await d.control('call', { instance: 'counter', handler: 'get', message: null })) as { count: number }).count;

describe('the dashboard in a browser (aedes, an rpi-4b and an android-phone agent)', () => {
  const dirs = new Dirs();
  let broker: TestBroker;
  let pi: Device;
  let phone: Device;
  let tb: TestBrowser;

  beforeAll(async () => {
    broker = await startAedes({ persistent: true });
    const tag = `${process.pid}`;
    const common = ['--broker', broker.url, '--http-port', '0', '--dashboard'];
    pi = new Device(`pi-dash-${tag}`, 'rpi-4b', dirs.make('pi'), [...common, '--samples', '--label', 'kitchen pi']);
    phone = new Device(`phone-dash-${tag}`, 'android-phone', dirs.make('phone'), [...common, '--label', 'my phone']);
    [tb] = await Promise.all([launchBrowser(), pi.start(), phone.start()]);
  }, 120_000);

  afterEach(async () => {
    await tb?.closePages();
  });

  afterAll(async () => {
    await tb?.close();
    await Promise.all([pi?.stop(), phone?.stop()]);
    await broker?.stop();
    dirs.cleanup();
  });

  /** Opens `d`'s dashboard as its owner would: the address `ferry dashboard` prints (token in the fragment). */
  async function open(d: Device): Promise<Opened> {
    const r = await d.json<{ url: string }>(['dashboard']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const { page, errors } = await tb.page();
    await page.goto(r.value.url);
    await page.waitForSelector('[data-page="device"] .card');
    // The token left the address bar; the session cookie stands for it.
    expect(page.url()).not.toContain('token=');
    return { page, errors, base: r.value.url.replace(/#.*$/, '') };
  }

  async function show(o: Opened, name: string): Promise<void> {
    await o.page.goto(`${o.base}#/${name}`);
    // The page's root, not the nav link of the same name.
    await o.page.waitForSelector(`#page > [data-page="${name.split('/')[0]}"]`);
  }

  const notice = (o: Opened) => o.page.locator('#notice');

  it('shows every page with what the agent reports, live, and photographs each', async () => {
    const o = await open(pi);
    const fingerprint = await pi.fingerprint();
    await expect.poll(() => o.page.locator('#broker').textContent()).toBe('broker connected');
    const device = await o.page.locator('#page').textContent();
    expect(device).toContain(pi.id);
    expect(device).toContain('rpi-4b (sbc, 64-bit)');
    expect(device).toContain(fingerprint);
    await shot(o.page, 'device');

    await show(o, 'apps');
    for (const i of ['counter', 'notes', 'sensor-log']) await o.page.locator(`tr[data-instance="${i}"] [data-state="running"]`).waitFor();
    // The live figures arrive over the event stream: resident bytes of the 64 MiB budget, and a chart.
    await expect.poll(() => o.page.locator('[data-live="counter|mem"]').textContent(), { timeout: 10_000 }).toMatch(/ of 64\.0 MiB$/);
    await pi.control('call', { instance: 'counter', handler: 'increment', message: null });
    await expect.poll(() => o.page.locator('[data-live="counter|commit"]').textContent(), { timeout: 10_000 }).toMatch(/ ms$/);
    expect(await o.page.locator('[data-live="counter|req"] svg polyline').count()).toBe(1);
    await shot(o.page, 'apps');

    await show(o, 'checkpoints');
    const versions = (await pi.control('checkpoints', { instance: 'counter' })) as Array<{ version: number }>;
    expect(await o.page.locator('#checkpoints tbody tr').count()).toBe(versions.length);
    await shot(o.page, 'checkpoints');

    await show(o, 'services');
    await o.page.locator(`#grants tr[data-service="${pi.id}/display"]`).waitFor();
    // sensor-log holds the sensor: listed as held here, and as granted by this device.
    await o.page.locator('#leases tr[data-lease]').first().waitFor();
    expect(await o.page.locator('#leases').textContent()).toContain('sensor-log');
    await shot(o.page, 'services');

    await show(o, 'peers');
    expect(await o.page.locator('#page').textContent()).toContain(fingerprint);
    await shot(o.page, 'peers');

    await show(o, 'handoffs');
    expect(await o.page.locator('#page').textContent()).toContain('No paired peer');
    await shot(o.page, 'handoffs');
    expect(o.errors).toEqual([]);
  }, 60_000);

  it('suspends and resumes an instance with its buttons', async () => {
    const o = await open(pi);
    await show(o, 'apps');
    await o.page.click('tr[data-instance="counter"] button[data-action="suspend"]');
    await o.page.locator('tr[data-instance="counter"] [data-state="suspended"]').waitFor();
    expect(await notice(o).textContent()).toBe('Suspend counter: done.');
    expect(await stateOf(pi, 'counter')).toBe('suspended');
    await o.page.click('tr[data-instance="counter"] button[data-action="resume"]');
    await o.page.locator('tr[data-instance="counter"] [data-state="running"]').waitFor();
    expect(await stateOf(pi, 'counter')).toBe('running');
    expect(o.errors).toEqual([]);
  }, 30_000);

  it('restores a version and removes a checkpoint, each only after its confirmation', async () => {
    const counts = new Map<number, number>();
    for (let n = 0; n < 3; n++) {
      const { count: c } = (await pi.control('call', { instance: 'counter', handler: 'increment', message: null })) as { count: number };
      const newest = ((await pi.control('checkpoints', { instance: 'counter' })) as Array<{ version: number; current: boolean }>).find((v) => v.current)!;
      counts.set(newest.version, c);
    }
    const [older, , newest] = [...counts.keys()];
    const o = await open(pi);
    await show(o, 'checkpoints/counter');
    const row = (v: number) => o.page.locator(`#checkpoints tr[data-version="${v}"]`);

    // Cancelled: nothing changes.
    await row(older!).locator('button[data-action="restore"]').click();
    expect(await o.page.locator('#confirm-text').textContent()).toContain(`Restore counter to version ${older}?`);
    await o.page.click('#confirm-no');
    expect(await count(pi)).toBe(counts.get(newest!));

    await row(older!).locator('button[data-action="restore"]').click();
    await o.page.click('#confirm-yes');
    await expect.poll(() => notice(o).textContent()).toBe(`Restore counter to version ${older}: done.`);
    expect(await count(pi)).toBe(counts.get(older!));
    // The page shows as current the version the agent now calls current (a restore of a running
    // instance commits the old state as the newest version).
    const after = (await pi.control('checkpoints', { instance: 'counter' })) as Array<{ version: number; current: boolean }>;
    const current = after.find((v) => v.current)!.version;
    await row(current).locator('.pill', { hasText: 'current' }).waitFor();
    expect(await row(current).locator('.reason').textContent()).toBe(`restored version ${older}`);
    expect(await row(older!).locator('.reason').textContent()).toBe('calls committed');
    expect(await o.page.locator('#checkpoints .pill', { hasText: 'current' }).count()).toBe(1);

    // A version that is not the current one: removed after its confirmation.
    const doomed = newest!;
    expect(current).not.toBe(doomed);
    await row(doomed).locator('button[data-action="checkpoint-rm"]').click();
    await o.page.click('#confirm-yes');
    await row(doomed).waitFor({ state: 'detached' });
    expect(((await pi.control('checkpoints', { instance: 'counter' })) as Array<{ version: number }>).map((v) => v.version)).not.toContain(doomed);
    expect(await count(pi)).toBe(counts.get(older!));
    await shot(o.page, 'checkpoints-after-restore');
    expect(o.errors).toEqual([]);
  }, 30_000);

  it('refuses a page without the token, with a wrong token, and a cross-site POST; nothing changes', async () => {
    const r = await pi.json<{ url: string }>(['dashboard']);
    const base = r.value.url.replace(/#.*$/, '');

    const bare = await tb.page();
    await bare.page.goto(base);
    await bare.page.locator('#login-form').waitFor();
    expect(await bare.page.locator('#nav').isHidden()).toBe(true);
    const status = await bare.page.evaluate(async () => (await fetch('/api/cmd/apps', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).status);
    expect(status).toBe(401);
    await shot(bare.page, 'login');

    await bare.page.goto('about:blank');
    await bare.page.goto(`${base}#token=${'A'.repeat(43)}`);
    await expect.poll(() => bare.page.locator('#notice').textContent()).toMatch(/^Not opened: that is not this device's access token .*\(DASHBOARD_AUTH\)$/);
    await bare.page.locator('#login-form').waitFor(); // shown once the session is found missing

    // Pasting the right token opens it.
    await bare.page.fill('#token', r.value.url.replace(/^.*#token=/, ''));
    await bare.page.click('#login-form button');
    await bare.page.locator('[data-page="device"] .card').first().waitFor();

    expect(bare.errors).toEqual([]);

    // A page of another origin (same host, another port: same-site, so the cookie goes along)
    // posts a form to the dashboard: refused by its Origin, and the instance runs on.
    const evil: Server = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<form id="f" method="POST" action="${base}api/cmd/suspend" enctype="text/plain"><input name='{"instance":"counter","x":"' value='"}'></form><script>document.getElementById('f').submit()</script>`);
    });
    await new Promise<void>((res) => evil.listen(0, '127.0.0.1', res));
    try {
      await bare.page.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
      await bare.page.waitForURL(`${base}api/cmd/suspend`);
      expect(await bare.page.locator('body').textContent()).toContain('"code":"DASHBOARD_CSRF"');
    } finally {
      evil.close();
    }
    expect(await stateOf(pi, 'counter')).toBe('running');
  }, 30_000);

  it('shows an action on an instance that vanished meanwhile as a refusal in words, and changes nothing else', async () => {
    const o = await open(pi);
    await show(o, 'apps');
    await o.page.locator('tr[data-instance="notes"]').waitFor();
    await pi.control('remove', { app: 'notes' }); // behind the page's back
    await o.page.click('tr[data-instance="notes"] button[data-action="suspend"]');
    await expect.poll(() => notice(o).textContent()).toMatch(/^Suspend notes failed: .*notes.* \(APP_UNKNOWN\)$/);
    await o.page.locator('tr[data-instance="notes"]').waitFor({ state: 'detached' });
    expect(await stateOf(pi, 'counter')).toBe('running');
    await shot(o.page, 'refused-vanished');
  }, 30_000);

  it('pairs two agents by comparing the codes both pages show, then moves an instance and watches it reach done', async () => {
    const a = await open(pi);
    const b = await open(phone);
    const before = await count(pi);
    await show(a, 'peers');
    await show(b, 'peers');
    await a.page.fill('#pair-peer', phone.id);
    await a.page.click('form.row button[type="submit"]');
    await b.page.locator(`tr[data-pending="${pi.id}"] button[data-action="accept"]`).click({ timeout: 20_000 });
    const codeA = await a.page.locator(`tr[data-pending="${phone.id}"] [data-code]`).textContent({ timeout: 20_000 });
    const codeB = await b.page.locator(`tr[data-pending="${pi.id}"] [data-code]`).textContent({ timeout: 20_000 });
    expect(codeA).toMatch(/^\d{6}$/);
    expect(codeB).toBe(codeA);
    await shot(a.page, 'peers-pairing');
    await a.page.locator(`tr[data-pending="${phone.id}"] button[data-action="codes-match"]`).click();
    await b.page.locator(`tr[data-pending="${pi.id}"] button[data-action="codes-match"]`).click();
    await a.page.locator(`#paired tr[data-peer="${phone.id}"]`).waitFor({ timeout: 20_000 });
    await b.page.locator(`#paired tr[data-peer="${pi.id}"]`).waitFor({ timeout: 20_000 });
    expect(await a.page.locator(`#paired tr[data-peer="${phone.id}"]`).textContent()).toContain('reachable');
    await shot(a.page, 'peers-paired');

    await show(a, 'handoffs');
    await a.page.selectOption('#move-instance', 'counter');
    await a.page.selectOption('#move-peer', phone.id);
    await a.page.fill('#move-limit', '5000');
    await a.page.click('button[data-action="dry-run"]');
    await expect.poll(() => a.page.locator('#plan').textContent()).toMatch(/Bytes to send.*Expected downtime.*limit 5000 ms/);
    // "best" asks for the candidates and plans for the top one (the phone, the only peer).
    await a.page.selectOption('#move-peer', 'best');
    await a.page.click('button[data-action="dry-run"]');
    await expect.poll(() => a.page.locator('#plan').textContent()).toMatch(new RegExp(`Plan: counter to ${phone.id} \\(best of 1 that fit; needs .*\\)`));
    // Move runs the dry run first and asks: declined, nothing moves.
    await a.page.click('button[data-action="migrate"]');
    await expect.poll(() => a.page.locator('#confirm-text').textContent()).toMatch(new RegExp(`^Move counter to ${phone.id}\\? About .* to send, expected downtime \\d+ ms \\(limit 5000 ms\\)\\.$`));
    await a.page.click('#confirm-no');
    expect(await stateOf(pi, 'counter')).toBe('running');
    expect(((await pi.control('migrations')) as { recent: unknown[] }).recent).toEqual([]);
    await a.page.click('button[data-action="migrate"]');
    await a.page.locator('#confirm[open]').waitFor();
    await a.page.click('#confirm-yes');
    await a.page.locator('#move-phase[data-phase="done"]').waitFor({ timeout: 60_000 });
    // It was followed live: progress events arrived before the end, pre-copy among them.
    const phases = (await a.page.evaluate('watching.events.map((e) => e.phase)')) as string[];
    expect(phases).toContain('precopy');
    expect(await notice(a).textContent()).toMatch(/^counter moved to .*: downtime \d+ ms\.$/);
    await a.page.locator('#history tr[data-move]', { hasText: 'moved' }).first().waitFor();
    await shot(a.page, 'handoff-done');

    expect(await stateOf(pi, 'counter')).toBe('moved');
    await until('counter running on the phone', async () => (await stateOf(phone, 'counter')) === 'running');
    expect(await count(phone)).toBe(before);
    await show(b, 'apps');
    await b.page.locator('tr[data-instance="counter"] [data-state="running"]').waitFor();
    expect([...a.errors, ...b.errors]).toEqual([]);
  }, 120_000);
});
