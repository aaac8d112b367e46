import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startServices } from '../../agent/services/index.js';
import { connectBus } from '../../transports/index.js';
import { codeOf } from './helpers.js';

describe('startServices without a broker URL', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-embedded-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('starts the embedded aedes broker on the configured port, serves peers on it, and stops it on close', async () => {
    const host = await startServices({ deviceId: 'hub1', broker: { port: 0 }, grantor: { stateFile: join(dir, 'hub1.sqlite') } });
    expect(host.broker?.url).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
    const peer = await startServices({ url: host.broker!.url, deviceId: 'peer1' });
    try {
      await host.offer({ name: 'screen', type: 'display', exclusive: true });
      const d = await peer.discovery.waitFor({ type: 'display' });
      const l = await peer.client.grant(d, 1000);
      expect(l.fence).toBeGreaterThan(0);
    } finally {
      await peer.close();
    }
    const url = host.broker!.url;
    await host.close();
    expect(await codeOf(connectBus({ url, deviceId: 'late1', connectTimeoutMs: 300 }))).toBe('BUS_OFFLINE');
  });

  it('refuses a broker beside a URL, and a malformed broker option, naming the field', async () => {
    const e1 = await startServices({ url: 'mqtt://127.0.0.1:1', deviceId: 'x1', broker: { port: 0 } }).catch((e: unknown) => e);
    expect(e1).toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.broker' } });
    const e2 = await startServices({ deviceId: 'x2', broker: 5 as unknown as { port: number } }).catch((e: unknown) => e);
    expect(e2).toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.broker' } });
  });
});
