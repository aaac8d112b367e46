/**
 * Ferry's MQTT topic layout (PROTOCOL.md, "Topics"). Everything lives under
 * `ferry/v1/`; the version level lets a v2 run beside v1 on the same broker.
 */
export const TOPIC_ROOT = 'ferry/v1';

/** Where answers to this device's requests arrive. */
export function inboxTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/inbox/${deviceId}`;
}

/** Bulk control requests (bulk.offer, bulk.status, bulk.commit, bulk.abort) to a receiver. */
export function bulkControlTopic(receiverId: string): string {
  return `${TOPIC_ROOT}/bulk/${receiverId}/ctl`;
}

/** One raw chunk of a transfer. */
export function bulkChunkTopic(receiverId: string, transferId: string, index: number): string {
  return `${TOPIC_ROOT}/bulk/${receiverId}/chunk/${transferId}/${index}`;
}

/** The filter a receiver subscribes to for all its chunks. */
export function bulkChunkFilter(receiverId: string): string {
  return `${TOPIC_ROOT}/bulk/${receiverId}/chunk/+/+`;
}

/** Chunk acknowledgements for one transfer, back to its sender. */
export function bulkAckTopic(senderId: string, transferId: string): string {
  return `${TOPIC_ROOT}/bulk/${senderId}/ack/${transferId}`;
}

/** An app instance's mailbox: requests to the instance, wherever it runs (PROTOCOL.md, "App mailbox"). */
export function appMailboxTopic(instance: string): string {
  return `${TOPIC_ROOT}/app/${instance}/req`;
}

/** MQTT topic matching: `+` one level, `#` the rest; wildcards at the first level never match `$` topics. */
export function topicMatches(filter: string, topic: string): boolean {
  if (filter === topic) return true;
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    const part = f[i];
    if (part === '#') return true;
    if (i >= t.length) return false;
    if (part !== '+' && part !== t[i]) return false;
  }
  return f.length === t.length;
}

/** True if `filter` is a valid MQTT subscription filter. */
export function isValidFilter(filter: unknown): filter is string {
  if (typeof filter !== 'string' || filter.length === 0 || filter.length > 1024 || filter.includes('\u0000')) return false;
  const parts = filter.split('/');
  return parts.every((p, i) => (p.includes('#') ? p === '#' && i === parts.length - 1 : !p.includes('+') || p === '+'));
}
