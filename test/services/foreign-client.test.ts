/**
 * A foreign client: a lease requested and renewed with nothing but Debian's
 * mosquitto_pub / mosquitto_sub and CBOR bytes built by hand here from
 * transports/PROTOCOL.md ("Services"), no Ferry code on the client side.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decode } from 'cbor-x';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';
import { Devices } from './helpers.js';

// ---- a minimal CBOR encoder (RFC 8949): unsigned ints, text strings, arrays, maps ----
function head(major: number, n: number): number[] {
  if (n < 24) return [(major << 5) | n];
  if (n < 0x100) return [(major << 5) | 24, n];
  if (n < 0x10000) return [(major << 5) | 25, n >> 8, n & 0xff];
  if (n < 0x100000000) return [(major << 5) | 26, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  const hi = Math.floor(n / 0x100000000);
  const lo = n >>> 0;
  return [(major << 5) | 27, (hi >>> 24) & 0xff, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff, (lo >>> 24) & 0xff, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff];
}
type V = number | string | V[] | { [k: string]: V };
function cbor(v: V): number[] {
  if (typeof v === 'number') return head(0, v);
  if (typeof v === 'string') {
    const b = [...Buffer.from(v, 'utf8')];
    return [...head(3, b.length), ...b];
  }
  if (Array.isArray(v)) return [...head(4, v.length), ...v.flatMap(cbor)];
  const keys = Object.keys(v);
  return [...head(5, keys.length), ...keys.flatMap((k) => [...cbor(k), ...cbor(v[k]!)])];
}

describe.each(BROKERS)('foreign client on %s', (_name, start) => {
  let broker: TestBroker;
  let devs: Devices;
  beforeAll(async () => {
    broker = await start();
    devs = new Devices(() => broker.url);
  });
  afterAll(async () => {
    await devs.closeAll();
    await broker.stop();
    devs.cleanup();
  });

  /** Publishes hand-built CBOR with mosquitto_pub -f and returns the decoded answer read by mosquitto_sub. */
  async function ask(envelope: V, topic: string, inbox: string, file: string): Promise<Record<string, unknown>> {
    writeFileSync(file, Buffer.from(cbor(envelope)));
    // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe; line buffering lets us see its SUBACK.
    const sub = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', String(broker.port), '-t', inbox, '-q', '1', '-C', '1', '-d', '-F', '%x'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const subscribed = new Promise<void>((resolve) => {
      sub.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (/received SUBACK/i.test(out)) resolve();
      });
    });
    sub.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const killer = setTimeout(() => sub.kill(), 5000);
    const done = new Promise<void>((resolve) => sub.once('close', () => resolve())); // close: stdout drained, not just exited
    await subscribed;
    // Not spawnSync: the aedes broker runs in this process and must keep serving.
    const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-t', topic, '-q', '1', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let pubOut = '';
    pub.stderr.on('data', (b: Buffer) => (pubOut += b.toString()));
    const status = await new Promise<number | null>((resolve) => pub.once('exit', (c) => resolve(c)));
    expect(status, pubOut).toBe(0);
    await done;
    clearTimeout(killer);
    const hex = out.split('\n').map((l) => l.trim()).find((l) => /^[0-9a-f]+$/.test(l) && l.length > 20);
    if (!hex) throw new Error(`no answer; mosquitto_sub said: ${out}; pub: ${pubOut}`);
    return decode(Buffer.from(hex, 'hex')) as Record<string, unknown>;
  }

  it('requests and renews a lease with mosquitto_pub / mosquitto_sub and hand-built CBOR', async () => {
    const p = await devs.start('fp1', { grantor: true });
    await p.offer({ name: 'lamp', type: 'lamp', exclusive: true });
    const topic = 'ferry/v1/lease/fp1';
    const inbox = 'ferry/v1/inbox/foreign1';
    const grant = await ask(
      { v: 1, type: 'lease.grant', id: 'Zm9yZWlnbi1ncmFudC0wMQ', from: 'foreign1', replyTo: inbox, ts: Date.now(), body: { service: 'lamp', durationMs: 4000, reqId: 'foreign-r1' } },
      topic,
      inbox,
      join(devs.dir, 'grant.cbor'),
    );
    expect(grant.type).toBe('lease.grant.ok');
    expect(grant.corr).toBe('Zm9yZWlnbi1ncmFudC0wMQ');
    const body = grant.body as { leaseId: string; durationMs: number; fence: number; holder: string };
    expect(body.durationMs).toBe(4000);
    expect(body.holder).toBe('foreign1');
    expect(body.fence).toBeGreaterThan(0);

    const renew = await ask(
      { v: 1, type: 'lease.renew', id: 'Zm9yZWlnbi1yZW5ldy0wMQ', from: 'foreign1', replyTo: inbox, ts: Date.now(), body: { reqId: 'foreign-r2', leases: [{ leaseId: body.leaseId, durationMs: 6000 }] } },
      topic,
      inbox,
      join(devs.dir, 'renew.cbor'),
    );
    expect(renew.type).toBe('lease.renew.ok');
    expect((renew.body as { results: unknown[] }).results).toEqual([{ leaseId: body.leaseId, ok: true, durationMs: 6000, fence: body.fence }]);
    expect(p.grantor!.table.leasesOf('lamp').map((l) => l.holder)).toEqual(['foreign1']);

    const forged = await ask(
      { v: 1, type: 'lease.cancel', id: 'Zm9yZWlnbi1jYW5jZWwtMQ', from: 'mallory', replyTo: inbox, ts: Date.now(), body: { reqId: 'm1', leaseId: body.leaseId } },
      topic,
      inbox,
      join(devs.dir, 'cancel.cbor'),
    );
    expect(forged.type).toBe('error');
    expect((forged.body as { code: string }).code).toBe('LEASE_NOT_HOLDER');
  });
});
