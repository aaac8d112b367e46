/**
 * A bounded set of recently seen message ids, evicting the least recently
 * seen. QoS 1 is "at least once": a broker redelivers a message whose PUBACK
 * it did not see, and a client resends one after a reconnect. Remembering the
 * last N ids turns that into "once" for any duplicate arriving within N messages.
 */
export class RecentIds {
  // Map keeps insertion order; re-inserting on a hit moves the id to the young end.
  private readonly ids = new Map<string, true>();

  constructor(readonly capacity: number) {}

  /** Records `id`; returns true if it was already there (a duplicate). */
  seen(id: string): boolean {
    if (this.ids.has(id)) {
      this.ids.delete(id);
      this.ids.set(id, true);
      return true;
    }
    this.ids.set(id, true);
    if (this.ids.size > this.capacity) {
      const oldest = this.ids.keys().next().value as string;
      this.ids.delete(oldest);
    }
    return false;
  }

  get size(): number {
    return this.ids.size;
  }
}
