import { FerryError } from '../core/errors.js';

/**
 * Client-side flow control for publishes: at most `maxInFlight` are handed to
 * the MQTT client and unacknowledged at once; up to `maxQueued` more wait in
 * FIFO order; beyond that a publish is refused with BUS_QUEUE_FULL.
 *
 * Why: mqtt.js accepts any number of publishes and keeps them all in memory
 * and on the socket; a burst (a heap transfer, a storm of renewals on a slow
 * link) then delays every other message and grows memory without bound. A
 * window bounds both and gives callers back-pressure they can see.
 */
export type SendFn = (done: (err?: Error | null) => void) => void;

/** The outcome of a send: null when acknowledged (QoS 1) or written (QoS 0), else the error. */
export type SendOutcome = (err: Error | null) => void;

interface Entry {
  send: SendFn;
  /** Called once with the outcome (a promise's settle functions, or the caller's callback). */
  settle: SendOutcome;
  finished: boolean;
}

export class PublishWindow {
  private readonly queue: Entry[] = [];
  private readonly inFlightEntries = new Set<Entry>();
  private open = false;
  /** Highest in-flight count ever reached (tests check the bound). */
  maxInFlightSeen = 0;

  constructor(
    readonly maxInFlight: number,
    readonly maxQueued: number,
  ) {}

  get inFlight(): number {
    return this.inFlightEntries.size;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Queues a send; it starts when the window is open and has room. Resolves or rejects with the send's outcome. */
  submit(send: SendFn): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.submitCb(send, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * `submit` without a promise: `settle` is called once, with null when the send
   * completed or with its error (BUS_QUEUE_FULL at once, synchronously). The
   * request/answer path uses it: no promise to allocate and settle per publish.
   */
  submitCb(send: SendFn, settle: SendOutcome): void {
    const entry: Entry = { send, settle, finished: false };
    if (this.open && this.inFlightEntries.size < this.maxInFlight && this.queue.length === 0) {
      this.start(entry);
      return;
    }
    if (this.queue.length >= this.maxQueued) {
      settle(new FerryError('BUS_QUEUE_FULL', `the publish queue is full (${this.maxQueued} waiting behind ${this.inFlightEntries.size} in flight; options.maxQueued)`, { field: 'options.maxQueued' }));
      return;
    }
    this.queue.push(entry);
  }

  /** Connected: start sending queued publishes. */
  resume(): void {
    this.open = true;
    this.drain();
  }

  /** Disconnected: hold new sends in the queue (those in flight stay with the MQTT client, which resends them). */
  pause(): void {
    this.open = false;
  }

  /** Rejects everything queued and in flight (the bus is closing). */
  failAll(err: Error): void {
    this.open = false;
    const all = [...this.inFlightEntries, ...this.queue.splice(0)];
    this.inFlightEntries.clear();
    for (const e of all) e.finished = true;
    for (const e of all) e.settle(err);
  }

  private drain(): void {
    while (this.open && this.inFlightEntries.size < this.maxInFlight && this.queue.length > 0) {
      this.start(this.queue.shift()!);
    }
  }

  private start(entry: Entry): void {
    this.inFlightEntries.add(entry);
    if (this.inFlightEntries.size > this.maxInFlightSeen) this.maxInFlightSeen = this.inFlightEntries.size;
    // The completion callback is an anonymous argument, not a named closure: under tsx (tests,
    // benchmarks) every named closure is wrapped by a naming helper, ~1 µs per publish.
    try {
      entry.send((err) => this.finish(entry, err));
    } catch (e) {
      this.finish(entry, e as Error);
    }
  }

  private finish(entry: Entry, err: Error | null | undefined): void {
    if (entry.finished) return;
    entry.finished = true;
    // Already failed by failAll: its promise is settled.
    if (!this.inFlightEntries.delete(entry)) return;
    entry.settle(err ?? null);
    this.drain();
  }
}
