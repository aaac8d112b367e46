import type { Bus } from '../../transports/contract.js';
export { redactUrl } from '../../transports/options.js';
import type { Logger } from './logger.js';

/** What `ferry status` says of the broker connection. */
export interface BrokerView {
  brokerConnected: boolean;
  /** Since when the broker has been away (ISO), while it is. */
  brokerDownSince?: string;
  /** Since when the connection has been up (ISO: the agent's start, or the latest return), while it is. */
  brokerUpSince?: string;
  /** Times the connection came back since the agent started. */
  brokerReconnects: number;
}

/**
 * Watches the agent's bus for the broker going away and coming back: one `broker.lost` (warn)
 * when the connection drops, one `broker.back` (info, with how long it was away) when it is up
 * and subscribed again, and the state for `ferry status`. An operator reading a fleet's logs
 * sees the outage and its length; nothing per reconnect attempt.
 */
export class BrokerWatch {
  private downSince: number | undefined;
  private upSince: number;
  private reconnects = 0;
  private readonly onLost = () => {
    if (this.downSince !== undefined) return;
    this.downSince = this.now();
    this.log.warn('broker.lost', { broker: this.url });
  };
  private readonly onBack = () => {
    if (this.downSince === undefined) return;
    const downMs = this.now() - this.downSince;
    this.downSince = undefined;
    this.upSince = this.now();
    this.reconnects++;
    this.log.info('broker.back', { broker: this.url, downMs, reconnects: this.reconnects });
  };

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
    private readonly url: string,
    private readonly now: () => number = Date.now,
  ) {
    this.upSince = now();
    bus.on('close', this.onLost);
    bus.on('connect', this.onBack);
  }

  view(): BrokerView {
    return {
      brokerConnected: this.bus.connected,
      ...(this.downSince !== undefined ? { brokerDownSince: new Date(this.downSince).toISOString() } : { brokerUpSince: new Date(this.upSince).toISOString() }),
      brokerReconnects: this.reconnects,
    };
  }

  close(): void {
    this.bus.off('close', this.onLost);
    this.bus.off('connect', this.onBack);
  }
}
