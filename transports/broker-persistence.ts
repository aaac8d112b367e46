import { Readable } from 'node:stream';
import type Database from 'better-sqlite3';
import { FerryError } from '../core/errors.js';
import { corrupt, decodeRecord, encodeRecord, openBrokerStore } from './broker-store.js';
import { Replay } from './queue-replay.js';
import { SubscriptionIndex } from './subscription-index.js';
import { topicMatches } from './topics.js';

/** A packet as aedes hands it to its persistence: an MQTT packet object, fields by name. */
export type BrokerPacket = Record<string, unknown> & { topic?: string; payload?: unknown; messageId?: number; brokerId?: string; brokerCounter?: number };
type Client = { id: string };
type SubscriptionIn = { topic: string; qos: number; rh?: unknown; rap?: unknown; nl?: unknown; subscriptionIdentifier?: unknown };
type SubRecord = { qos: number; rh: unknown; rap: unknown; nl: unknown; subscriptionIdentifier?: unknown };
type Row = { id: number; message_id: number | null; packet: Buffer };

/** Rows read per query while streaming a queue or the retained messages: bounded memory for any queue length. */
const PAGE = 16;
/** Longest a write nobody waits for stays uncommitted, ms (if no write somebody waits for commits it sooner). */
const LAZY_COMMIT_MS = 50;

interface Batch {
  waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }>;
  /** A commit is scheduled for the next `setImmediate`: somebody waits for it. */
  urgent: boolean;
}

/**
 * aedes's persistence (the aedes-persistence 11 interface, async form, as aedes 1.x calls
 * it) on a SQLite file: retained messages, persistent sessions' subscriptions, their
 * outgoing queues, incoming QoS 2 packets and wills survive a crash or a power loss.
 *
 * **Durable before it answers.** Every write runs at once, in the transaction of the
 * current batch (a savepoint of its own, so a failing operation undoes only itself), and
 * its promise resolves only after that transaction is committed with `synchronous = FULL`.
 * The batch commits from a `setImmediate`: every operation started by one event-loop turn
 * (a socket read of many PUBLISHes) shares one commit and one fsync (group commit).
 * Two writes that acknowledge nothing are not waited for (a QoS 1 message's packet id,
 * the removal of an acknowledged message): they commit with the next batch somebody
 * waits for, or after LAZY_COMMIT_MS. Reads run on the same connection and so see the
 * writes of the open batch; a reader that acts on one (a queue streamed to a client) can
 * at worst deliver a message whose sender was never acknowledged, which QoS 1 allows.
 *
 * Only the subscriptions are kept in memory as well (a trie for `subscriptionsByTopic`,
 * which every QoS > 0 publish asks), rebuilt from the file at open. Queues, retained
 * messages and wills are read from the file in pages, so a long queue costs disk, not heap.
 */
export class SqlitePersistence {
  private readonly db: Database.Database;
  private readonly sql: ReturnType<SqlitePersistence['prepare']>;
  private readonly index = new SubscriptionIndex();
  /** Subscriptions by client, then by filter: the file's `subscriptions` table in memory. */
  private readonly clients = new Map<string, Map<string, SubRecord>>();
  /** Queues being replayed to reconnected clients (outgoingStream), by client id: see `outgoingUpdate`. */
  private readonly replays = new Map<string, Replay>();
  private batch: Batch | undefined;
  private closed = false;
  private aedes: { id: string } | undefined;

  /** Opens (creating if absent) the store file; see `openBrokerStore` for the errors. */
  constructor(readonly file: string) {
    this.db = openBrokerStore(file);
    try {
      this.sql = this.prepare();
      this.load();
    } catch (e) {
      this.db.close();
      throw e;
    }
  }

  private prepare() {
    const db = this.db;
    return {
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      savepoint: db.prepare('SAVEPOINT op'),
      release: db.prepare('RELEASE op'),
      rollbackTo: db.prepare('ROLLBACK TO op'),
      putRetained: db.prepare('INSERT INTO retained (topic, packet) VALUES (?, ?) ON CONFLICT (topic) DO UPDATE SET packet = excluded.packet'),
      delRetained: db.prepare('DELETE FROM retained WHERE topic = ?'),
      retainedPage: db.prepare<[number], { id: number; topic: string; packet: Buffer }>('SELECT id, topic, packet FROM retained WHERE id > ? ORDER BY id LIMIT ' + PAGE),
      allSubs: db.prepare<[], { client_id: string; topic: string; record: Buffer }>('SELECT client_id, topic, record FROM subscriptions ORDER BY id'),
      // The upsert keeps the row's id: a client's filters stay in the order first subscribed.
      putSub: db.prepare('INSERT INTO subscriptions (client_id, topic, record) VALUES (?, ?, ?) ON CONFLICT (client_id, topic) DO UPDATE SET record = excluded.record'),
      delSub: db.prepare('DELETE FROM subscriptions WHERE client_id = ? AND topic = ?'),
      delClientSubs: db.prepare('DELETE FROM subscriptions WHERE client_id = ?'),
      enqueue: db.prepare('INSERT INTO outgoing (client_id, broker_id, broker_counter, message_id, packet) VALUES (?, ?, ?, NULL, ?)'),
      lastOutgoing: db.prepare<[], number | null>('SELECT max(id) FROM outgoing').pluck(),
      outgoingPage: db.prepare<[string, number, number], Row>(`SELECT id, message_id, packet FROM outgoing WHERE client_id = ? AND id > ? AND id <= ? ORDER BY id LIMIT ${PAGE}`),
      // The first entry aedes-persistence's in-memory queue would pick: same broker and counter
      // (a publish getting its message id), or another broker and the same message id (a pubrel
      // taking the place of its publish).
      findUpdate: db.prepare<{ c: string; b: string | null; n: number | null; m: number | null }, { id: number; broker_id: string | null }>(
        'SELECT id, broker_id FROM outgoing WHERE client_id = @c AND ((broker_id IS @b AND broker_counter IS @n) OR (broker_id IS NOT @b AND message_id = @m)) ORDER BY id LIMIT 1',
      ),
      setMessageId: db.prepare('UPDATE outgoing SET message_id = ? WHERE id = ?'),
      replaceOutgoing: db.prepare('UPDATE outgoing SET broker_id = ?, broker_counter = ?, message_id = ?, packet = ? WHERE id = ?'),
      findMessageId: db.prepare<[string, number], Row>('SELECT id, message_id, packet FROM outgoing WHERE client_id = ? AND message_id = ? ORDER BY id LIMIT 1'),
      delOutgoing: db.prepare('DELETE FROM outgoing WHERE id = ?'),
      putIncoming: db.prepare('INSERT OR REPLACE INTO incoming (client_id, message_id, packet) VALUES (?, ?, ?)'),
      getIncoming: db.prepare<[string, number], Buffer>('SELECT packet FROM incoming WHERE client_id = ? AND message_id = ?').pluck(),
      delIncoming: db.prepare('DELETE FROM incoming WHERE client_id = ? AND message_id = ?'),
      delClientIncoming: db.prepare('DELETE FROM incoming WHERE client_id = ?'),
      putWill: db.prepare('INSERT OR REPLACE INTO wills (client_id, broker_id, packet) VALUES (?, ?, ?)'),
      getWill: db.prepare<[string], Buffer>('SELECT packet FROM wills WHERE client_id = ?').pluck(),
      delWill: db.prepare('DELETE FROM wills WHERE client_id = ?'),
      allWills: db.prepare<[], { broker_id: string | null; packet: Buffer }>('SELECT broker_id, packet FROM wills ORDER BY client_id'),
    };
  }

  /** (Re)builds the subscriptions in memory from the file. */
  private load(): void {
    this.clients.clear();
    this.index.clear();
    for (const row of this.sql.allSubs.iterate()) {
      const record = decodeRecord(row.record, this.file, `subscription ${row.topic} of ${row.client_id}`) as SubRecord;
      if (typeof record.qos !== 'number') throw corrupt(this.file, `holds a subscription without a qos (${row.topic} of ${row.client_id})`);
      this.remember(row.client_id, row.topic, record);
    }
  }

  private remember(clientId: string, topic: string, record: SubRecord): void {
    let stored = this.clients.get(clientId);
    if (!stored) this.clients.set(clientId, (stored = new Map()));
    const before = stored.get(topic);
    if (record.qos > 0) this.index.add({ clientId, topic, qos: record.qos, rh: record.rh, rap: record.rap, nl: record.nl });
    else if (before && before.qos > 0) this.index.remove(clientId, topic);
    stored.set(topic, record);
  }

  private forget(clientId: string, topic: string): void {
    const stored = this.clients.get(clientId);
    const before = stored?.get(topic);
    if (!stored || !before) return;
    if (before.qos > 0) this.index.remove(clientId, topic);
    stored.delete(topic);
    if (stored.size === 0) this.clients.delete(clientId);
  }

  // ---- group commit ----

  /**
   * Runs `op` now, in the open batch (a savepoint of its own); resolves once the batch is
   * committed, or at once when `durable` is false (the write still commits with the batch).
   */
  private write<T>(op: () => T, durable = true): Promise<T> {
    if (this.closed) return Promise.reject(new FerryError('STORE_CLOSED', `the broker store ${this.file} is closed`, { field: 'options.persistenceFile' }));
    let batch: Batch;
    let value: T;
    try {
      batch = this.batch ?? this.begin();
      this.sql.savepoint.run();
      try {
        value = op();
      } catch (e) {
        if (this.db.inTransaction) {
          this.sql.rollbackTo.run();
          this.sql.release.run();
        }
        throw e;
      }
      this.sql.release.run();
    } catch (e) {
      // An I/O error or a full disk can make SQLite roll the whole transaction back: the batch is gone.
      if (this.batch && !this.db.inTransaction) this.fail(this.batch, e);
      return Promise.reject(e);
    }
    if (!durable) return Promise.resolve(value);
    if (!batch.urgent) {
      batch.urgent = true;
      setImmediate(() => this.commit(batch));
    }
    return new Promise<T>((resolve, reject) => batch.waiters.push({ resolve: () => resolve(value), reject }));
  }

  private begin(): Batch {
    this.sql.begin.run();
    const batch: Batch = { waiters: [], urgent: false };
    this.batch = batch;
    setTimeout(() => this.commit(batch), LAZY_COMMIT_MS).unref();
    return batch;
  }

  private commit(batch: Batch): void {
    if (this.batch !== batch) return;
    this.batch = undefined;
    try {
      this.sql.commit.run();
    } catch (e) {
      this.fail(batch, e);
      return;
    }
    for (const w of batch.waiters) w.resolve();
  }

  /** The batch's transaction failed: nothing of it is in the file, so none of its operations may be acknowledged. */
  private fail(batch: Batch, e: unknown): void {
    if (this.batch === batch) this.batch = undefined;
    try {
      if (this.db.inTransaction) this.sql.rollback.run();
      this.load();
    } catch {
      // The file is failing: the operations are refused below; the next write tries again.
    }
    for (const w of batch.waiters) w.reject(e);
  }

  // ---- aedes-persistence interface ----

  /** The broker (aedes), for wills (its id) and aedes-persistence's tests. */
  get broker(): { id: string } | undefined {
    return this.aedes;
  }

  async setup(broker: { id: string }): Promise<void> {
    this.aedes = broker;
  }

  storeRetained(packet: BrokerPacket): Promise<void> {
    const topic = String(packet.topic);
    const empty = packet.payload === undefined || packet.payload === null || (packet.payload as { length?: number }).length === 0;
    return this.write(() => {
      if (empty) this.sql.delRetained.run(topic);
      else this.sql.putRetained.run(topic, encodeRecord(packet));
    });
  }

  createRetainedStream(pattern: string): Readable {
    return this.createRetainedStreamCombi([pattern]);
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    const self = this;
    return Readable.from(
      (function* () {
        for (let after = 0; ; ) {
          if (self.closed) return;
          const rows = self.sql.retainedPage.all(after);
          for (const row of rows) {
            if (patterns.some((p) => topicMatches(p, row.topic))) yield decodeRecord(row.packet, self.file, `retained message ${row.topic}`);
          }
          if (rows.length < PAGE) return;
          after = rows[rows.length - 1]!.id;
        }
      })(),
    );
  }

  addSubscriptions(client: Client, subs: SubscriptionIn[]): Promise<void> {
    return this.write(() => {
      const records = subs.map((sub) => {
        const record: SubRecord = { qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl };
        // MQTT 5 subscription identifier: kept only when present, as aedes-persistence does.
        if (sub.subscriptionIdentifier !== undefined) record.subscriptionIdentifier = sub.subscriptionIdentifier;
        this.sql.putSub.run(client.id, sub.topic, encodeRecord(record));
        return record;
      });
      subs.forEach((sub, i) => this.remember(client.id, sub.topic, records[i]!));
    });
  }

  removeSubscriptions(client: Client, topics: string[]): Promise<void> {
    if (!this.clients.has(client.id)) return Promise.resolve();
    return this.write(() => {
      for (const topic of topics) this.sql.delSub.run(client.id, topic);
      for (const topic of topics) this.forget(client.id, topic);
    });
  }

  async subscriptionsByClient(client: Client): Promise<Array<SubRecord & { topic: string }>> {
    const subs = [...(this.clients.get(client.id) ?? [])].map(([topic, record]) => ({ topic, ...record }));
    // aedes asks this at a session's connect, restores the subscriptions, and only a few steps
    // later replays the queue: from here the client's live messages wait for that replay, or one
    // published in between would overtake the queued ones (seen as a swapped pair after a handoff).
    if (subs.length > 0 && typeof (this.aedes as { subscribe?: unknown } | undefined)?.subscribe === 'function') {
      this.replays.get(client.id)?.end();
      this.newReplay(client.id);
    }
    return subs;
  }

  /** A replay (or the hold before it) for client `id`, registered; it unregisters itself when it ends. */
  private newReplay(id: string): Replay {
    const replay: Replay = new Replay(() => this.replays.get(id) === replay && this.replays.delete(id));
    this.replays.set(id, replay);
    return replay;
  }

  async countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return { subsCount: this.index.size, clientsCount: this.clients.size };
  }

  async subscriptionsByTopic(topic: string): Promise<Array<{ clientId: string; topic: string; qos: number }>> {
    return this.index.match(topic);
  }

  cleanSubscriptions(client: Client): Promise<void> {
    // Every clean-session CONNECT asks: a client with nothing stored costs no write.
    const stored = this.clients.get(client.id);
    if (!stored) return Promise.resolve();
    return this.write(() => {
      this.sql.delClientSubs.run(client.id);
      for (const topic of [...stored.keys()]) this.forget(client.id, topic);
    });
  }

  outgoingEnqueue(sub: { clientId: string }, packet: BrokerPacket): Promise<void> {
    return this.outgoingEnqueueCombi([sub], packet);
  }

  outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: BrokerPacket): Promise<void> {
    if (subs.length === 0) return Promise.resolve();
    const p = asPacket(packet);
    const bytes = encodeRecord(p);
    return this.write(() => {
      for (const sub of subs) this.sql.enqueue.run(sub.clientId, str(p.brokerId), int(p.brokerCounter), bytes);
    });
  }

  /**
   * A queued message gets the packet id it is sent under (aedes calls this before every
   * send), or a pubrel takes the place of its QoS 2 publish. The id of a QoS 1 message is
   * not waited for: it only names one delivery on one connection, and if a crash loses it
   * the message is sent again under a new id, a redelivery QoS 1 receivers already expect.
   * Without this a reconnecting session drained its queue at one fsync per message
   * (aedes sends a queue one message at a time). QoS 2 ids and pubrels are waited for:
   * their receivers tell duplicates apart by that id.
   */
  outgoingUpdate(client: Client, packet: BrokerPacket, held = false): Promise<void> {
    // A message published while the client's queue is being replayed reaches it live (aedes
    // restores a session's subscriptions before it replays the queue): it would overtake the
    // older queued messages. It waits until every queued one has passed here, so the client
    // receives its session's messages in the order they were published.
    const replay = this.replays.get(client.id);
    if (replay && !replay.pass(`${str(packet.brokerId)}:${int(packet.brokerCounter)}`)) return replay.done.then(() => this.outgoingUpdate(client, packet, true));
    return this.write(
      () => {
        const brokerId = str(packet.brokerId);
        const found = this.sql.findUpdate.get({ c: client.id, b: brokerId, n: int(packet.brokerCounter), m: int(packet.messageId) });
        // During or after a replay a queued message may have gone already: the replay sent it and it
        // was acknowledged before its live copy (held) came here. Sending it once more is a QoS 1
        // repeat; an error here would make aedes drop the connection.
        if (!found && (replay || held) && packet.cmd === 'publish' && packet.qos === 1) return;
        if (!found) throw new Error('no such packet');
        if (found.broker_id === brokerId) this.sql.setMessageId.run(int(packet.messageId), found.id);
        else this.sql.replaceOutgoing.run(brokerId, int(packet.brokerCounter), int(packet.messageId), encodeRecord(packet), found.id);
      },
      !(packet.cmd === 'publish' && packet.qos === 1),
    );
  }

  /**
   * The receiver acknowledged a message (PUBACK, or PUBCOMP of a pubrel): it leaves the
   * queue. Not waited for, as nothing is acknowledged after it: a crash that loses it sends
   * the message (or the pubrel) once more, which QoS 1 (and the pubrel's id, for QoS 2) allow.
   * Waited for when a clean session discards its queue (`DurableSession.discard`): a crash
   * must not bring back requests for an instance that was removed.
   */
  outgoingClearMessageId(client: Client & { clean?: boolean }, packet: BrokerPacket): Promise<BrokerPacket | undefined> {
    const messageId = int((packet as { messageId?: unknown } | null)?.messageId);
    if (messageId === null) return Promise.resolve(undefined);
    return this.write(() => {
      const row = this.sql.findMessageId.get(client.id, messageId);
      if (!row) return undefined;
      this.sql.delOutgoing.run(row.id);
      return this.outgoingPacket(row);
    }, client.clean === true);
  }

  outgoingStream(client: Client): Readable {
    const self = this;
    // What is queued now, as aedes-persistence's in-memory queue hands out a copy: a message
    // enqueued while the stream runs reaches the client live, not a second time from here
    // (after the replay: outgoingUpdate holds it until then).
    const last = this.closed ? 0 : (this.sql.lastOutgoing.get() ?? 0);
    // Only for a connecting aedes client, whose connect replays the whole stream (a reader that
    // only looks at the queue, as aedes-persistence's own tests do, holds nothing).
    const live = typeof (client as { deliverQoS?: unknown }).deliverQoS === 'function';
    // The hold this connect began when its subscriptions were restored becomes this replay.
    const begun = this.replays.get(client.id);
    let replay: Replay | undefined = live && begun && !begun.streaming ? begun : undefined;
    if (!replay) {
      begun?.end();
      if (live) replay = this.newReplay(client.id);
    }
    if (replay) replay.streaming = true;
    const stream = Readable.from(
      (function* () {
        for (let after = 0; ; ) {
          if (self.closed) break;
          const rows = self.sql.outgoingPage.all(client.id, after, last);
          for (const row of rows) {
            const p = self.outgoingPacket(row);
            replay?.pending.push(`${str(p.brokerId)}:${int(p.brokerCounter)}`);
            yield p;
          }
          if (rows.length < PAGE) break;
          after = rows[rows.length - 1]!.id;
        }
        if (replay) replay.read = true;
        replay?.check();
      })(),
    );
    // A client gone mid-replay (the stream destroyed before its end) must not hold the live
    // messages of its next connection. A normal end is not the replay's end: aedes may still hold
    // read messages on their way to outgoingUpdate.
    stream.once('close', () => {
      if (!stream.readableEnded) replay?.end();
    });
    return stream;
  }

  private outgoingPacket(row: Row): BrokerPacket {
    const p = decodeRecord(row.packet, this.file, `queued message ${row.id}`) as BrokerPacket;
    if (row.message_id !== null) p.messageId = row.message_id;
    return p;
  }

  incomingStorePacket(client: Client, packet: BrokerPacket): Promise<void> {
    const p = asPacket(packet);
    p.messageId = packet.messageId;
    const messageId = int(packet.messageId);
    if (messageId === null) return Promise.reject(new Error('an incoming packet needs a messageId'));
    return this.write(() => {
      this.sql.putIncoming.run(client.id, messageId, encodeRecord(p));
    });
  }

  async incomingGetPacket(client: Client, packet: BrokerPacket): Promise<BrokerPacket> {
    const messageId = int(packet.messageId);
    const bytes = messageId === null ? undefined : this.sql.getIncoming.get(client.id, messageId);
    if (!bytes) throw new Error('no such packet');
    return decodeRecord(bytes, this.file, `incoming packet ${messageId} of ${client.id}`);
  }

  incomingDelPacket(client: Client, packet: BrokerPacket): Promise<void> {
    return this.write(() => {
      const messageId = int(packet.messageId);
      if (messageId === null || this.sql.delIncoming.run(client.id, messageId).changes === 0) throw new Error('no such packet');
    });
  }

  cleanIncoming(client: Client): Promise<void> {
    return this.write(() => {
      this.sql.delClientIncoming.run(client.id);
    });
  }

  putWill(client: Client, packet: BrokerPacket): Promise<void> {
    // As aedes-persistence does: the will is stamped with the broker that holds it, so after a
    // crash the next broker (another id) finds it orphaned and publishes it.
    packet.brokerId = this.aedes?.id;
    packet.clientId = client.id;
    return this.write(() => {
      this.sql.putWill.run(client.id, str(packet.brokerId), encodeRecord(packet));
    });
  }

  async getWill(client: Client): Promise<BrokerPacket | undefined> {
    const bytes = this.sql.getWill.get(client.id);
    return bytes ? decodeRecord(bytes, this.file, `will of ${client.id}`) : undefined;
  }

  delWill(client: Client): Promise<BrokerPacket | undefined> {
    // aedes deletes a will as a client goes, which can be after the broker closed its store.
    if (this.closed) return this.write(() => undefined);
    const bytes = this.sql.getWill.get(client.id);
    if (!bytes) return Promise.resolve(undefined);
    return this.write(() => {
      this.sql.delWill.run(client.id);
      return decodeRecord(bytes, this.file, `will of ${client.id}`);
    });
  }

  streamWill(brokers: Record<string, unknown> = {}): Readable {
    if (this.closed) return Readable.from([]);
    const wills = this.sql.allWills.all().filter((w) => w.broker_id === null || !brokers[w.broker_id]);
    return Readable.from(wills.map((w) => decodeRecord(w.packet, this.file, 'a will')));
  }

  getClientList(topic: string): Readable {
    return Readable.from([...this.clients].filter(([, subs]) => subs.has(topic)).map(([id]) => id));
  }

  /** Commits what is pending and closes the file. Idempotent. */
  async destroy(): Promise<void> {
    if (this.closed) return;
    if (this.batch) this.commit(this.batch);
    this.closed = true;
    this.db.close();
  }
}

/** The fields aedes-packet's `Packet` keeps of a packet (aedes-persistence queues such copies). */
function asPacket(o: BrokerPacket): BrokerPacket {
  const p: BrokerPacket = {};
  for (const k of ['clientId', 'nl', 'properties', 'messageExpiry']) if (Object.hasOwn(o, k)) p[k] = o[k];
  p.cmd = o.cmd || 'publish';
  p.brokerId = o.brokerId || undefined;
  p.brokerCounter = o.brokerCounter || 0;
  p.topic = o.topic;
  p.payload = o.payload || Buffer.alloc(0);
  p.qos = o.qos || 0;
  p.retain = o.retain || false;
  p.dup = o.dup || false;
  if ((p.qos as number) > 0 || p.cmd !== 'publish') p.messageId = undefined;
  return p;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const int = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);
