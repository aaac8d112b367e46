import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { SqlitePersistence, type BrokerPacket } from '../../transports/broker-persistence.js';
import { BROKER_STORE_VERSION } from '../../transports/broker-store.js';
import { startEmbeddedBroker, storeBeforeAck } from '../../transports/embedded-broker.js';
import { caught, caughtAsync } from '../helpers/ferry-error.js';
import { Temp } from '../heap/graph.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const temp = new Temp();
afterEach(() => temp.cleanup());

const ABSTRACT = fileURLToPath(new URL('../helpers/abstract-persistence.ts', import.meta.url));
const storeFile = () => join(temp.dir('broker'), 'broker.db');

function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(nodeCommand(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, out }));
  });
}

const pkt = (topic: string, payload: string, counter: number, extra: Partial<BrokerPacket> = {}): BrokerPacket => ({
  cmd: 'publish',
  topic,
  payload: Buffer.from(payload),
  qos: 1,
  retain: false,
  dup: false,
  brokerId: 'broker-a',
  brokerCounter: counter,
  ...extra,
});

async function drain(s: NodeJS.ReadableStream): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const x of s) out.push(x);
  return out;
}

/** Everything a persistence answers, for comparing a store before and after reopening. */
async function snapshot(p: SqlitePersistence) {
  const c1 = { id: 'c1' };
  const c2 = { id: 'c2' };
  return {
    retained: await drain(p.createRetainedStream('#')),
    subsC1: await p.subscriptionsByClient(c1),
    subsC2: await p.subscriptionsByClient(c2),
    byTopic: await p.subscriptionsByTopic('q/x'),
    count: await p.countOffline(),
    queueC1: await drain(p.outgoingStream(c1)),
    queueC2: await drain(p.outgoingStream(c2)),
    incoming: await p.incomingGetPacket(c1, { messageId: 9 }),
    will: await p.getWill(c1),
    wills: await drain(p.streamWill({})),
    clientsOfQ: await drain(p.getClientList('q/+')),
  };
}

describe('the embedded broker store (SqlitePersistence)', () => {
  it('passes aedes-persistence’s own abstract test suite (node:test, run in a child)', async () => {
    const r = await run(['--import', 'tsx', '--test', '--test-reporter=tap', ABSTRACT]);
    const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(r.out)?.[1] ?? NaN);
    expect({ code: r.code, fail: count('fail'), cancelled: count('cancelled') }, r.out.slice(-4000)).toEqual({ code: 0, fail: 0, cancelled: 0 });
    expect(count('pass')).toBeGreaterThan(0);
    expect(count('pass')).toBe(count('tests'));
  });

  it('reopened, it holds the same retained messages, subscriptions, queues, incoming packets and wills', async () => {
    const file = storeFile();
    let p = new SqlitePersistence(file);
    await p.setup({ id: 'broker-a' });
    await p.storeRetained(pkt('r/1', 'one', 1, { retain: true }));
    await p.storeRetained({ cmd: 'publish', topic: 'r/2', payload: 'two as text', qos: 0, retain: true, properties: { userProperties: { k: 'v' } } });
    await p.addSubscriptions({ id: 'c1' }, [
      { topic: 'q/+', qos: 1, rh: 0, rap: true, nl: false },
      { topic: 'z/#', qos: 0 },
    ]);
    await p.addSubscriptions({ id: 'c2' }, [{ topic: 'q/#', qos: 2, subscriptionIdentifier: 5 }]);
    for (let i = 1; i <= 3; i++) await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('q/x'), pkt('q/x', `m${i}`, i));
    await p.outgoingUpdate({ id: 'c1' }, { ...pkt('q/x', 'm1', 1), messageId: 7 });
    await p.outgoingUpdate({ id: 'c2' }, { ...pkt('q/x', 'm1', 1), messageId: 8 });
    await p.outgoingUpdate({ id: 'c2' }, { cmd: 'pubrel', messageId: 8 });
    await p.incomingStorePacket({ id: 'c1' }, { cmd: 'publish', topic: 'in', payload: Buffer.from('qos2'), qos: 2, messageId: 9 });
    await p.putWill({ id: 'c1' }, { topic: 'will/c1', payload: Buffer.from('gone'), qos: 1, retain: false });
    const before = await snapshot(p);
    await p.destroy();

    p = new SqlitePersistence(file);
    await p.setup({ id: 'broker-b' });
    expect(await snapshot(p)).toEqual(before);
    // What the snapshot holds, spelled out: queue order, message ids, the pubrel in its publish's place.
    expect(before.queueC1).toMatchObject([{ payload: Buffer.from('m1'), messageId: 7 }, { payload: Buffer.from('m2'), messageId: undefined }, { payload: Buffer.from('m3') }]);
    expect(before.queueC2).toMatchObject([{ cmd: 'pubrel', messageId: 8 }, { payload: Buffer.from('m2') }, { payload: Buffer.from('m3') }]);
    expect(before.retained).toMatchObject([{ topic: 'r/1' }, { topic: 'r/2', payload: 'two as text', properties: { userProperties: { k: 'v' } } }]);
    expect(before.byTopic.map((s) => s.clientId).sort()).toEqual(['c1', 'c2']);
    expect(before.count).toEqual({ subsCount: 2, clientsCount: 2 });
    expect(before.subsC2).toEqual([{ topic: 'q/#', qos: 2, rh: undefined, rap: undefined, nl: undefined, subscriptionIdentifier: 5 }]);
    // The will keeps the broker that held it, so the next broker (another id) publishes it as orphaned.
    expect(before.wills).toMatchObject([{ clientId: 'c1', brokerId: 'broker-a', topic: 'will/c1' }]);
    await p.destroy();
  });

  it('from the moment a connect restores its subscriptions, a live message waits for the queue replay', async () => {
    const p = new SqlitePersistence(storeFile());
    // A broker, as aedes passes itself (the hold is for connects of a real broker only).
    await p.setup({ id: 'broker-a', subscribe: () => undefined } as unknown as { id: string });
    await p.addSubscriptions({ id: 'c1' }, [{ topic: 'q/#', qos: 1 }]);
    await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('q/x'), pkt('q/x', 'queued', 1));
    const client = { id: 'c1', deliverQoS: () => undefined };
    // The connect: subscriptions restored (live delivery on), the queue not yet replayed.
    expect(await p.subscriptionsByClient({ id: 'c1' })).toHaveLength(1);
    await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('q/x'), pkt('q/x', 'live', 2));
    const order: string[] = [];
    const live = p.outgoingUpdate(client, { ...pkt('q/x', 'live', 2), messageId: 2 }).then(() => order.push('live'));
    await new Promise((r) => setTimeout(r, 50));
    expect(order).toEqual([]); // held: the queue has not been replayed yet
    // The replay (aedes's emptyQueue): the queued message first, then the held live one.
    const replayed = (await p.outgoingStream(client).toArray()) as BrokerPacket[];
    expect(replayed.map((x) => String(x.payload))).toEqual(['queued', 'live']);
    await p.outgoingUpdate(client, { ...replayed[0]!, messageId: 1 }).then(() => order.push('queued'));
    await p.outgoingUpdate(client, { ...replayed[1]!, messageId: 2 });
    await live;
    expect(order).toEqual(['queued', 'live']);
    await p.destroy();
  });

  it('after close, what aedes still calls as clients go is refused as STORE_CLOSED, never thrown', async () => {
    const p = new SqlitePersistence(storeFile());
    await p.setup({ id: 'broker-a' });
    await p.putWill({ id: 'c1' }, { topic: 'will/c1', payload: Buffer.from('gone'), qos: 1, retain: false });
    await p.destroy();
    // aedes deletes a departing client's will after the broker closed its store (seen in CI).
    expect((await caughtAsync(() => p.delWill({ id: 'c1' }))).code).toBe('STORE_CLOSED');
    expect((await caughtAsync(() => p.putWill({ id: 'c2' }, { topic: 'w', payload: Buffer.alloc(0), qos: 0, retain: false }))).code).toBe('STORE_CLOSED');
    expect(await p.streamWill().toArray()).toEqual([]);
    expect(await p.outgoingStream({ id: 'c1' }).toArray()).toEqual([]);
    expect(await p.createRetainedStream('#').toArray()).toEqual([]);
  });

  it('a broker on the store keeps a persistent session’s queue across a restart, in order', async () => {
    const file = storeFile();
    let broker = await startEmbeddedBroker({ persistenceFile: file });
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'kept-session', clean: false, reconnectPeriod: 0 });
    await sub.subscribeAsync('jobs/#', { qos: 1 });
    await sub.endAsync();
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'publisher', reconnectPeriod: 0 });
    // Each resolves at its PUBACK.
    for (let i = 0; i < 20; i++) await pub.publishAsync(`jobs/${i % 3}`, `job ${i}`, { qos: 1 });
    await pub.endAsync();
    await broker.close();

    broker = await startEmbeddedBroker({ persistenceFile: file, port: 0 });
    const got: string[] = [];
    const again = mqtt.connect(broker.url, { clientId: 'kept-session', clean: false, reconnectPeriod: 0 });
    again.on('message', (_t, payload) => got.push(payload.toString()));
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve) => again.once('connect', resolve));
    for (let t = 0; t < 400 && got.length < 20; t++) await new Promise((r) => setTimeout(r, 10));
    expect(connack.sessionPresent).toBe(true);
    expect(got).toEqual([...Array(20).keys()].map((i) => `job ${i}`));
    await again.endAsync();
    await broker.close();
    // Acknowledged by the subscriber: gone from the file too.
    const p = new SqlitePersistence(file);
    expect(await drain(p.outgoingStream({ id: 'kept-session' }))).toEqual([]);
    await p.destroy();
  });

  it('a session that reconnects while messages keep coming gets them all in publish order (live ones wait for the queue)', async () => {
    // aedes restores a session's subscriptions before it replays its queue: without the hold in
    // outgoingUpdate, messages published during the replay overtook the queued ones (a handoff's
    // mailbox moving to another device reordered requests).
    const broker = await startEmbeddedBroker({ persistenceFile: storeFile() });
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'moving-mailbox', clean: false, reconnectPeriod: 0 });
    await sub.subscribeAsync('req/#', { qos: 1 });
    await sub.endAsync();
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'client', reconnectPeriod: 0 });
    const QUEUED = 300;
    const TOTAL = 600;
    for (let i = 0; i < QUEUED; i++) await pub.publishAsync('req/x', String(i), { qos: 1 });
    const got: number[] = [];
    const again = mqtt.connect(broker.url, { clientId: 'moving-mailbox', clean: false, reconnectPeriod: 0 });
    again.on('message', (_t, payload) => got.push(Number(payload.toString())));
    // Publishing goes on while the session comes back and its queue drains.
    const more = (async () => {
      for (let i = QUEUED; i < TOTAL; i++) await pub.publishAsync('req/x', String(i), { qos: 1 });
    })();
    await more;
    for (let t = 0; t < 1000 && new Set(got).size < TOTAL; t++) await new Promise((r) => setTimeout(r, 10));
    // QoS 1 may repeat a message; what counts is that none is lost and none overtakes an older one.
    const firsts = got.filter((n, i) => got.indexOf(n) === i);
    expect(firsts).toEqual([...Array(TOTAL).keys()]);
    await again.endAsync();
    await pub.endAsync();
    await broker.close();
  });

  it('the wills a crashed run left are published when the broker comes back, before a client can reconnect', async () => {
    const file = storeFile();
    // What a SIGKILL leaves: a connected client's will, stored by the broker that died, never published.
    const p = new SqlitePersistence(file);
    await p.setup({ id: 'the-run-that-crashed' });
    await p.putWill({ id: 'device-7' }, { topic: 'ferry/v1/svc-death/device-7', payload: Buffer.from('epoch 3'), qos: 1, retain: true });
    await p.destroy();

    const broker = await startEmbeddedBroker({ persistenceFile: file });
    const c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const got = new Promise((resolve) => c.once('message', (topic, payload, packet) => resolve({ topic, payload: payload.toString(), retain: packet.retain })));
    await c.subscribeAsync('ferry/v1/svc-death/#', { qos: 1 });
    // Retained: published before anyone could subscribe, and kept.
    expect(await got).toEqual({ topic: 'ferry/v1/svc-death/device-7', payload: 'epoch 3', retain: true });
    await c.endAsync();
    await broker.close();
    const after = new SqlitePersistence(file);
    expect(await drain(after.streamWill({}))).toEqual([]);
    await after.destroy();
  });

  it('a QoS 1 message is stored before its PUBACK leaves (aedes alone sends the PUBACK first)', async () => {
    // Bytes the broker wrote to the publisher's socket when the store of its message completed:
    // the CONNACK (4 bytes) only, or the CONNACK and the PUBACK (8).
    async function bytesSentWhenStored(fix: boolean): Promise<{ atStore: number; atEnd: number }> {
      let sent = 0;
      let atStore = -1;
      class Observed extends SqlitePersistence {
        override async outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: BrokerPacket): Promise<void> {
          await super.outgoingEnqueueCombi(subs, packet);
          if (packet.topic === 'q/1') atStore = sent;
        }
      }
      const persistence = new Observed(storeFile());
      const aedes = await Aedes.createBroker({ persistence });
      if (fix) storeBeforeAck(aedes);
      let last: Socket | undefined;
      const server = createServer((socket) => {
        last = socket;
        const write = socket.write.bind(socket) as (...a: unknown[]) => boolean;
        socket.write = ((chunk: Uint8Array | string, ...rest: unknown[]) => {
          sent += chunk.length;
          return write(chunk, ...rest);
        }) as typeof socket.write;
        aedes.handle(socket);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`;
      const sub = await mqtt.connectAsync(url, { clientId: 'offline', clean: false, reconnectPeriod: 0 });
      await sub.subscribeAsync('q/+', { qos: 1 });
      await sub.endAsync();
      const pub = await mqtt.connectAsync(url, { clientId: 'pub', reconnectPeriod: 0 });
      sent = 0;
      await pub.publishAsync('q/1', 'x', { qos: 1 });
      const atEnd = sent;
      await pub.endAsync();
      last?.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => aedes.close(() => r()));
      await persistence.destroy();
      return { atStore, atEnd };
    }
    // The control: aedes as it is acknowledges first (if this changes, storeBeforeAck can go).
    expect(await bytesSentWhenStored(false)).toEqual({ atStore: 4, atEnd: 4 });
    expect(await bytesSentWhenStored(true)).toEqual({ atStore: 0, atEnd: 4 });
  });

  it('a damaged or foreign file is BROKER_STORE_CORRUPT naming the file; the broker does not start', async () => {
    const expectCorrupt = (file: string, why: RegExp) => {
      const e = caught(() => new SqlitePersistence(file));
      expect(e.code).toBe('BROKER_STORE_CORRUPT');
      expect(e.details).toMatchObject({ field: 'options.persistenceFile', file });
      expect(e.message).toContain(file);
      expect(e.message).toMatch(why);
    };
    // Not a database at all.
    const junk = storeFile();
    writeFileSync(junk, Buffer.alloc(8192, 0x5a));
    expectCorrupt(junk, /not a readable SQLite database/);
    // Another application's SQLite file.
    const foreign = storeFile();
    const f = new Database(foreign);
    f.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)');
    f.close();
    expectCorrupt(foreign, /another application/);
    // A store of a format this code does not read.
    const future = storeFile();
    await new SqlitePersistence(future).destroy();
    const d = new Database(future);
    d.pragma(`user_version = ${BROKER_STORE_VERSION + 1}`);
    d.close();
    expectCorrupt(future, /format version 2/);
    // A store whose pages were overwritten.
    const damaged = storeFile();
    const p = new SqlitePersistence(damaged);
    await p.setup({ id: 'b' });
    for (let i = 0; i < 200; i++) await p.outgoingEnqueue({ clientId: `c${i % 7}` }, pkt('t', 'x'.repeat(500), i + 1));
    await p.destroy();
    const fd = openSync(damaged, 'r+');
    const size = readFileSync(damaged).length;
    for (let off = 4096 * 2; off < size; off += 4096 * 3) writeSync(fd, Buffer.alloc(64, 0xff), 0, 64, off + 8);
    closeSync(fd);
    expectCorrupt(damaged, /SQLite database|integrity check/);

    const e = await caughtAsync(() => startEmbeddedBroker({ port: 0, persistenceFile: junk }));
    expect(e.code).toBe('BROKER_STORE_CORRUPT');
    // The file is left as it was, for the owner to inspect: never replaced by an empty store.
    expect(readFileSync(junk)).toEqual(Buffer.alloc(8192, 0x5a));
  });

  it('a bad persistenceFile is BAD_OPTION naming the field', async () => {
    for (const bad of [42, '', ':memory:', join(temp.dir('broker'), 'no', 'such', 'dir', 'broker.db')]) {
      const e = await caughtAsync(() => startEmbeddedBroker({ port: 0, persistenceFile: bad as string }));
      expect(e.code, String(bad)).toBe('BAD_OPTION');
      expect(e.details.field).toBe('options.persistenceFile');
    }
  });

  it('a store locked by another open broker is BAD_OPTION, not an empty second broker', async () => {
    const file = storeFile();
    const first = new SqlitePersistence(file);
    const e = caught(() => new SqlitePersistence(file));
    expect(e.code).toBe('BAD_OPTION');
    expect(e.details.field).toBe('options.persistenceFile');
    await first.destroy();
  });
});
