/**
 * A bounded set of recently seen message ids, evicting the least recently
 * seen. QoS 1 is "at least once": a broker redelivers a message whose PUBACK
 * it did not see, and a client resends one after a reconnect. Remembering the
 * last N ids turns that into "once" for any duplicate arriving within N messages.
 *
 * Layout: a Map id → stamp of its latest sighting, and a FIFO of (id, stamp)
 * sightings. Eviction pops the FIFO and drops the id only if that sighting is
 * still its latest (a re-seen id has a younger one further back). Why not a
 * Map alone in insertion order, deleting `keys().next()`: V8 leaves deleted
 * entries as holes at the front of the table, so that first key costs a scan
 * of up to N holes per message (measured ~4 µs per message at N = 4096).
 */
export class RecentIds {
  private readonly ids = new Map<string, number>();
  private fifoIds: string[] = [];
  private fifoStamps: number[] = [];
  private head = 0;
  private stamp = 0;

  constructor(readonly capacity: number) {}

  /** Records `id`; returns true if it was already there (a duplicate). */
  seen(id: string): boolean {
    const dup = this.ids.has(id);
    const s = ++this.stamp;
    this.ids.set(id, s);
    this.fifoIds.push(id);
    this.fifoStamps.push(s);
    while (this.ids.size > this.capacity) {
      const old = this.fifoIds[this.head]!;
      const oldStamp = this.fifoStamps[this.head]!;
      this.head++;
      if (this.ids.get(old) === oldStamp) this.ids.delete(old);
    }
    // Re-seen ids leave stale sightings behind; compact once they are half the FIFO.
    if (this.head > this.capacity || this.fifoIds.length - this.head > 2 * this.capacity) this.compact();
    return dup;
  }

  get size(): number {
    return this.ids.size;
  }

  private compact(): void {
    const ids: string[] = [];
    const stamps: number[] = [];
    for (let i = this.head; i < this.fifoIds.length; i++) {
      const id = this.fifoIds[i]!;
      if (this.ids.get(id) === this.fifoStamps[i]) {
        ids.push(id);
        stamps.push(this.fifoStamps[i]!);
      }
    }
    this.fifoIds = ids;
    this.fifoStamps = stamps;
    this.head = 0;
  }
}
