/**
 * One queue replay (`outgoingStream`). aedes sends the replayed messages one at a time, each
 * through `outgoingUpdate` before it is written, in the order they were handed out (`pending`).
 * The message at the head passes (whoever asks: the replay, or a live delivery of that same
 * message); one that already passed passes again (a repeat, after it); any other waits for
 * `done` — all handed out and passed (or the replay ended) — so nothing overtakes the queue.
 */
export class Replay {
  readonly pending: string[] = [];
  private head = 0;
  private readonly passed = new Set<string>();
  /** Its queue is being read (`outgoingStream`); before that it only holds live messages (from the connect's restored subscriptions on). */
  streaming = false;
  read = false;
  readonly done: Promise<void>;
  private resolve!: () => void;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly onEnd: () => void) {
    this.done = new Promise((r) => (this.resolve = r));
    // Never hold live messages for long whatever happens to the replay.
    this.timer = setTimeout(() => this.end(), REPLAY_HOLD_MS);
    this.timer.unref();
  }

  /** Whether the message `key` may be sent now. */
  pass(key: string): boolean {
    if (this.pending[this.head] === key) {
      this.head++;
      this.passed.add(key);
      this.check();
      return true;
    }
    return this.passed.has(key);
  }

  check(): void {
    if (this.read && this.head >= this.pending.length) this.end();
  }

  end(): void {
    clearTimeout(this.timer);
    this.onEnd();
    this.resolve();
  }
}

/** Longest a live message waits behind a queue replay, ms. */
const REPLAY_HOLD_MS = 30_000;
