import { describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { BROKERS } from '../helpers/brokers.js';

async function roundTrip(url: string): Promise<string> {
  const a = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0 });
  try {
    await a.subscribeAsync('ferry/test/echo', { qos: 1 });
    const got = new Promise<string>((resolve) => a.once('message', (_t, p) => resolve(p.toString())));
    await a.publishAsync('ferry/test/echo', 'hello', { qos: 1 });
    return await got;
  } finally {
    await a.endAsync(true);
  }
}

describe.each(BROKERS)('test broker %s', (name, start) => {
  it('starts on loopback, carries messages, restarts on the same port, stops', async () => {
    const b = await start();
    try {
      expect(b.name).toBe(name);
      expect(b.url).toBe(`mqtt://127.0.0.1:${b.port}`);
      expect(await roundTrip(b.url)).toBe('hello');
      await b.restart();
      expect(await roundTrip(b.url)).toBe('hello');
    } finally {
      await b.stop();
    }
    await expect(mqtt.connectAsync(b.url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 1000 })).rejects.toThrow();
  });
});
