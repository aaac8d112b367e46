/** One persistent subscription as aedes asks for it by topic (aedes-persistence `subscriptionsByTopic`). */
export interface IndexedSubscription {
  clientId: string;
  topic: string;
  qos: number;
  rh: unknown;
  rap: unknown;
  nl: unknown;
}

interface Node {
  children: Map<string, Node>;
  /** Subscriptions whose filter ends at this node, by client id. */
  subs: Map<string, IndexedSubscription>;
}

const newNode = (): Node => ({ children: new Map(), subs: new Map() });

/**
 * The filters of persistent sessions (QoS > 0 only: QoS 0 messages are never queued),
 * as a trie of topic levels, so a publish finds its subscribers in O(levels) rather
 * than by testing every filter. It lives in memory and is rebuilt from the broker
 * store when the store opens, as aedes-persistence's own index (qlobber) is.
 *
 * Matches are returned in qlobber's order (at each level: `#`, then the level itself
 * or the end, then `+`), which aedes-persistence's abstract tests expect.
 */
export class SubscriptionIndex {
  private readonly root = newNode();
  private count = 0;

  /** Subscriptions held (one per client and filter). */
  get size(): number {
    return this.count;
  }

  /** Adds or replaces the client's subscription to `sub.topic`. */
  add(sub: IndexedSubscription): void {
    let node = this.root;
    for (const level of sub.topic.split('/')) {
      let next = node.children.get(level);
      if (!next) node.children.set(level, (next = newNode()));
      node = next;
    }
    if (!node.subs.has(sub.clientId)) this.count++;
    node.subs.set(sub.clientId, sub);
  }

  /** Removes the client's subscription to `filter`, pruning levels left empty. */
  remove(clientId: string, filter: string): void {
    const path: Array<[Node, string]> = [];
    let node = this.root;
    for (const level of filter.split('/')) {
      const next = node.children.get(level);
      if (!next) return;
      path.push([node, level]);
      node = next;
    }
    if (!node.subs.delete(clientId)) return;
    this.count--;
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i]!;
      const child = parent.children.get(level)!;
      if (child.subs.size > 0 || child.children.size > 0) break;
      parent.children.delete(level);
    }
  }

  /** Every subscription whose filter matches the topic name, each a fresh object. */
  match(topic: string): IndexedSubscription[] {
    const out: IndexedSubscription[] = [];
    // MQTT-4.7.2-1: a filter starting with a wildcard does not match a topic starting with `$`.
    this.walk(this.root, topic.split('/'), 0, topic.startsWith('$'), out);
    return out;
  }

  private walk(node: Node, words: string[], i: number, dollar: boolean, out: IndexedSubscription[]): void {
    const root = i === 0 && dollar;
    const some = root ? undefined : node.children.get('#');
    // `#` matches the rest, the parent level included ("a/#" matches "a").
    if (some) for (const s of some.subs.values()) out.push({ ...s });
    if (i === words.length) {
      for (const s of node.subs.values()) out.push({ ...s });
      return;
    }
    const exact = node.children.get(words[i]!);
    if (exact) this.walk(exact, words, i + 1, dollar, out);
    const one = root ? undefined : node.children.get('+');
    if (one) this.walk(one, words, i + 1, dollar, out);
  }

  clear(): void {
    this.root.children.clear();
    this.root.subs.clear();
    this.count = 0;
  }
}
