import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseGrantor, ManualClock, SpaceHost } from '../../agent/services/index.js';
import { openStore } from '../../store/index.js';
import { connectBus } from '../../transports/index.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const CHILD = fileURLToPath(new URL('../helpers/space-crash-child.ts', import.meta.url));

/** Runs the child until it reports its acknowledged writes and takes, then SIGKILLs it. */
async function runAndKill(dir: string, stateFile: string, url: string): Promise<{ written: number[]; taken: number[] }> {
  const child = spawn(nodeCommand(), ['--import', 'tsx', CHILD, dir, stateFile, url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const report = await new Promise<{ written: number[]; taken: number[] }>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line) as { written: number[]; taken: number[] });
    });
    child.once('exit', (code, signal) => reject(new Error(`space crash child exited early (${code ?? signal}): ${err.trim()}`)));
  });
  child.kill('SIGKILL');
  await exited;
  return report;
}

describe.each(BROKERS)('persistent space in the device store over %s', (_name, start) => {
  let broker: TestBroker;
  let tmp: string;
  beforeAll(async () => {
    broker = await start();
    tmp = mkdtempSync(join(tmpdir(), 'ferry-space-'));
  });
  afterAll(async () => {
    await broker.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('after SIGKILL, every acknowledged write is there and every taken entry is gone', async () => {
    const dir = join(tmp, `store-${_name}`);
    const stateFile = join(tmp, `grantor-${_name}.sqlite`);
    const { written, taken } = await runAndKill(dir, stateFile, broker.url);
    expect(written).toEqual([0, 1, 2, 3, 4, 5]);
    expect(taken).toEqual([1, 3]);

    const store = openStore({ dir });
    const bus = await connectBus({ url: broker.url, deviceId: `reopen-${_name}` });
    const grantor = await LeaseGrantor.start(bus, { stateFile });
    const space = await SpaceHost.start(bus, grantor, { name: 'crash', kind: 'persistent', store });
    try {
      expect(space.size).toBe(4);
      for (const n of [0, 2, 4, 5]) {
        const e = space.read({ n }).entry as { n: number; blob: Uint8Array };
        expect(e.blob.length).toBe(300 + n * 200);
        expect(e.blob.every((b) => b === n)).toBe(true);
      }
      for (const n of taken) expect(() => space.read({ n })).toThrow(expect.objectContaining({ code: 'SPACE_NO_MATCH' }));
      // The leases came back with the entries: the writer still holds each one.
      const e0 = space.read({ n: 0 });
      expect(e0.entryId).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(grantor.table.size).toBe(4);
      // The store holds the space as one app, with few versions.
      expect(store.listApps()).toContain('space.crash');
      expect(store.versions('space.crash').length).toBeLessThanOrEqual(store.options.keepVersions);
    } finally {
      await space.close();
      await grantor.close();
      await bus.close();
      store.close();
    }
  });

  it('a take and a write are each one committed version; an expired entry is dropped at reopen', async () => {
    const dir = join(tmp, `store2-${_name}`);
    const clock = new ManualClock(Date.now());
    let store = openStore({ dir });
    const bus = await connectBus({ url: broker.url, deviceId: `ver-${_name}` });
    let grantor = await LeaseGrantor.start(bus, { stateFile: join(tmp, `g2-${_name}.sqlite`) }, clock);
    let space = await SpaceHost.start(bus, grantor, { name: 'vers', kind: 'persistent', store }, clock);
    const head = () => store.headVersion('space.vers');
    const h0 = head();
    space.write('w', { k: 'a' }, 10_000);
    expect(head()).toBe(h0 + 1);
    space.write('w', { k: 'short' }, 200);
    expect(head()).toBe(h0 + 2);
    space.take({ k: 'a' });
    expect(head()).toBe(h0 + 3);
    await space.close();
    await grantor.close();
    store.close();
    clock.advance(500);
    store = openStore({ dir });
    grantor = await LeaseGrantor.start(bus, { stateFile: join(tmp, `g2-${_name}.sqlite`) }, clock);
    space = await SpaceHost.start(bus, grantor, { name: 'vers', kind: 'persistent', store }, clock);
    try {
      expect(space.size).toBe(0);
      expect(() => space.read({ k: 'short' })).toThrow(expect.objectContaining({ code: 'SPACE_NO_MATCH' }));
    } finally {
      await space.close();
      await grantor.close();
      await bus.close();
      store.close();
    }
  });

  it('refuses a persistent space without a store, or a name the store cannot take, naming the field', async () => {
    const bus = await connectBus({ url: broker.url, deviceId: `opt-${_name}` });
    const grantor = await LeaseGrantor.start(bus, { stateFile: join(tmp, `g3-${_name}.sqlite`) });
    const store = openStore({ dir: join(tmp, `store3-${_name}`) });
    try {
      await expect(SpaceHost.start(bus, grantor, { name: 'x', kind: 'persistent' })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.store' } });
      await expect(SpaceHost.start(bus, grantor, { name: 'x', store })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.store' } });
      await expect(SpaceHost.start(bus, grantor, { name: 'a~b', kind: 'persistent', store })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.name' } });
    } finally {
      await grantor.close();
      await bus.close();
      store.close();
    }
  });
});
