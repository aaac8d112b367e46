import type { MqttClient } from 'mqtt';

/**
 * Exponential reconnect backoff with jitter. mqtt.js only knows a fixed
 * reconnect period; a fleet of devices retrying a restarted broker every
 * 100 ms would hammer it, so the delay doubles per failed attempt up to a ceiling.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  // ±25 %: devices cut at the same instant do not come back in lockstep.
  return Math.min(maxMs, Math.max(minMs, Math.round(base * (0.75 + random() * 0.5))));
}

/** The mqtt.js internals used to replace its reconnect timer (it sets one, with its period, on every close). */
interface ReconnectInternals {
  options: { reconnectPeriod?: number };
  reconnectTimer: unknown;
  _clearReconnect(): void;
  _setupReconnect(): void;
}

/** Sets the delay of the next reconnect attempt; called from the client's 'close' listener, after mqtt.js armed its timer. */
export function setReconnectDelay(client: MqttClient, delayMs: number): void {
  const c = client as unknown as ReconnectInternals;
  c.options.reconnectPeriod = delayMs;
  if (c.reconnectTimer) {
    c._clearReconnect();
    c._setupReconnect();
  }
}
