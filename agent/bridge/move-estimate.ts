/**
 * What a handoff's switch will cost (DESIGN.md, "Handoff: the estimate and the limit"), from
 * figures measured during the move itself: the link (bytes ÷ time of the rounds that carried
 * data), the round trip (sealed pings), the destination's cost to install a round (a fixed part:
 * its durable writes; and a part per byte), its cost to connect a mailbox session (a probe it
 * runs during pre-copy), this device's cost to write its decision (a probe at the start), and
 * what earlier moves to the same peer showed the estimate missed.
 */

/** Each measured part of the switch is counted this many times over: a busy device is slower at the switch than when it was measured. */
const SAFETY = 1.5;
/** Added to every estimate of the fixed part, ms: the hook's commit, timers, the bits not measured. */
const MARGIN_MS = 5;

export class SwitchEstimate {
  rttMs = 0;
  bandwidthBps = 0;
  /** The destination's durable-write cost of a round (its smallest install so far), ms. */
  applyFixedMs = 0;
  applyPerByteMs = 0;
  /** The destination's mailbox-session connect (its probe), ms. */
  connectMs = 0;
  /** This device's registry write (the decision), ms. */
  decideMs = 0;
  /** This device's mailbox-session connect (an aborted switch reconnects it), ms. */
  ownConnectMs = 0;
  private xferMs = 0;
  private xferBytes = 0;
  private smallestApply = Infinity;

  constructor(
    private readonly leases: number,
    /** What earlier switches to this peer took beyond their estimate, ms. */
    private readonly learnedMs: number,
  ) {}

  /** A round: `bytes` of line data sent in `ms` (its request's round trip included), installed there in `applyMs`. */
  round(bytes: number, ms: number, applyMs: number | undefined): void {
    if (bytes > 0) {
      this.xferMs += ms;
      this.xferBytes += bytes;
      this.bandwidthBps = Math.round((this.xferBytes * 1000) / Math.max(1, this.xferMs));
    }
    if (applyMs === undefined) return;
    if (applyMs < this.smallestApply) {
      this.smallestApply = applyMs;
      this.applyFixedMs = applyMs;
    }
    if (bytes > 0) this.applyPerByteMs = Math.max(this.applyPerByteMs * 0.5, Math.max(0, applyMs - this.applyFixedMs) / bytes);
  }

  /** A figure the destination reported (its session-connect probe), ms. */
  connect(ms: number): void {
    this.connectMs = Math.max(this.connectMs, ms);
  }

  /** Time to send and install `bytes` at the switch (the `move.switch` request and its answer), ms. */
  sendMs(bytes: number): number {
    const bps = this.bandwidthBps > 0 ? this.bandwidthBps : 1;
    return SAFETY * (bytes / (bps / 1000) + bytes * this.applyPerByteMs + this.rttMs + this.applyFixedMs);
  }

  /** After the destination is prepared: the decision, the handovers, the commit's round trip and the session's connect there, ms. */
  reserveMs(): number {
    return SAFETY * (this.decideMs + this.leases * this.rttMs + this.rttMs + this.connectMs) + MARGIN_MS + this.learnedMs;
  }

  /**
   * What the switch keeps back after the destination's answer: the reserve, or, if larger, what
   * an abort at that point costs here (reconnecting the paused instance's session), ms.
   */
  holdBackMs(): number {
    return Math.max(this.reserveMs(), SAFETY * this.ownConnectMs + MARGIN_MS);
  }

  /** The whole downtime of a switch that sends `bytes`, ms. */
  downtimeMs(bytes: number): number {
    return Math.round(this.sendMs(bytes) + this.reserveMs());
  }

  /** Before any data went: the link guessed from the round trip (64 KiB per RTT), for a dry run's plan. */
  guessMs(bytes: number): number {
    const bps = this.bandwidthBps > 0 ? this.bandwidthBps : Math.max(1, (64 * 1024 * 1000) / Math.max(1, this.rttMs));
    return Math.round(SAFETY * (bytes / (bps / 1000) + this.rttMs) + this.reserveMs());
  }
}
