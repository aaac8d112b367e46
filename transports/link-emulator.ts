import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { LinkProfile } from '../hw-profiles/index.js';
import { readLinkEmulatorOptions, type EmulatorClock, type LinkEmulatorOptions } from './options.js';

/**
 * A TCP proxy that makes a loopback connection behave like a device's link
 * (DESIGN.md, "Link emulator"): a client connects to the emulator, the
 * emulator connects to the target (the broker), and each direction goes
 * through its own pipe that imposes
 *
 * - bandwidth: a token bucket (rate bandwidthBps / 8 bytes per second, depth burstBytes);
 * - latency and jitter: each segment is delivered latencyMs ± jitterMs after it
 *   leaves the bucket, but never before the segment ahead of it (TCP keeps byte
 *   order, so jitter stretches gaps, it never reorders);
 * - disconnections: `cutAll()` destroys every connection (optionally keeping the
 *   link down for a while); with randomCuts, each segment cuts its connection
 *   with probability lossRate.
 *
 * Back-pressure: when a direction holds more than maxBufferedBytes, the
 * sending socket is paused, so a fast sender sees a slow link as TCP would show it.
 */
export interface LinkEmulator {
  /** `mqtt://127.0.0.1:<port>`: connect the client here instead of to the broker. */
  readonly url: string;
  readonly port: number;
  /** Connections open now. */
  readonly connections: number;
  readonly stats: LinkEmulatorStats;
  /** Cuts every connection now. With downMs, connections attempted in the next downMs are cut at once too. */
  cutAll(options?: { downMs?: number }): void;
  /** Changes the imposed link for data from now on. */
  setLink(link: LinkProfile): void;
  /** Cuts everything and stops listening. */
  close(): Promise<void>;
}

export interface LinkEmulatorStats {
  connectionsAccepted: number;
  cuts: number;
  /** Bytes delivered client → target and target → client. */
  bytesUp: number;
  bytesDown: number;
}

interface Segment {
  bytes: Buffer;
  deliverAt: number;
}

/** One direction of one connection. */
class Pipe {
  private readonly waiting: Buffer[] = []; // not yet through the bucket
  private readonly inTransit: Segment[] = []; // through the bucket, waiting out the latency
  private tokens: number;
  private lastRefill: number;
  private lastDeliverAt = 0;
  private queuedBytes = 0;
  private bucketTimer: unknown;
  private deliverTimer: unknown;
  private paused = false;
  private closed = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly env: PipeEnv,
    private readonly onBytes: (n: number) => void,
    private readonly onRandomCut: () => void,
  ) {
    this.tokens = env.burstBytes();
    this.lastRefill = env.clock.now();
    from.on('data', (chunk: Buffer) => this.push(chunk));
  }

  private push(chunk: Buffer): void {
    if (this.closed) return;
    const seg = this.env.segmentBytes;
    for (let off = 0; off < chunk.length; off += seg) this.waiting.push(chunk.subarray(off, Math.min(off + seg, chunk.length)));
    this.queuedBytes += chunk.length;
    if (!this.paused && this.queuedBytes > this.env.maxBufferedBytes) {
      this.paused = true;
      this.from.pause();
    }
    this.runBucket();
  }

  private runBucket(): void {
    if (this.closed || this.bucketTimer !== undefined) return;
    const { clock } = this.env;
    const link = this.env.link();
    const rate = link.bandwidthBps / 8 / 1000; // bytes per ms
    const depth = Math.max(this.env.burstBytes(), this.env.segmentBytes);
    while (this.waiting.length > 0) {
      const now = clock.now();
      this.tokens = Math.min(depth, this.tokens + (now - this.lastRefill) * rate);
      this.lastRefill = now;
      const head = this.waiting[0]!;
      if (this.tokens < head.length) {
        const waitMs = Math.max(1, (head.length - this.tokens) / rate);
        this.bucketTimer = clock.setTimeout(() => {
          this.bucketTimer = undefined;
          this.runBucket();
        }, waitMs);
        return;
      }
      this.tokens -= head.length;
      this.waiting.shift();
      if (this.env.randomCuts && link.lossRate > 0 && this.env.random() < link.lossRate) {
        this.onRandomCut();
        return;
      }
      const jitter = link.jitterMs > 0 ? (this.env.random() * 2 - 1) * link.jitterMs : 0;
      // Never before the segment ahead: byte order is kept whatever the jitter.
      const deliverAt = Math.max(now + Math.max(0, link.latencyMs + jitter), this.lastDeliverAt);
      this.lastDeliverAt = deliverAt;
      this.inTransit.push({ bytes: head, deliverAt });
      this.armDelivery();
    }
  }

  private armDelivery(): void {
    if (this.closed || this.deliverTimer !== undefined) return;
    const head = this.inTransit[0];
    if (!head) return;
    const { clock } = this.env;
    const wait = head.deliverAt - clock.now();
    if (wait > 0) {
      this.deliverTimer = clock.setTimeout(() => {
        this.deliverTimer = undefined;
        this.deliver();
      }, wait);
    } else {
      this.deliver();
    }
  }

  private deliver(): void {
    const now = this.env.clock.now();
    // Everything due goes out in one write: fewer syscalls, same bytes in the same order.
    const due: Buffer[] = [];
    while (this.inTransit.length > 0 && this.inTransit[0]!.deliverAt <= now + 0.5) due.push(this.inTransit.shift()!.bytes);
    if (due.length > 0 && !this.closed && !this.to.destroyed) {
      const out = due.length === 1 ? due[0]! : Buffer.concat(due);
      this.to.write(out);
      this.queuedBytes -= out.length;
      this.onBytes(out.length);
      if (this.paused && this.queuedBytes <= this.env.maxBufferedBytes / 2) {
        this.paused = false;
        this.from.resume();
      }
    }
    this.armDelivery();
  }

  close(): void {
    this.closed = true;
    if (this.bucketTimer !== undefined) this.env.clock.clearTimeout(this.bucketTimer);
    if (this.deliverTimer !== undefined) this.env.clock.clearTimeout(this.deliverTimer);
    this.waiting.length = 0;
    this.inTransit.length = 0;
  }
}

interface PipeEnv {
  clock: EmulatorClock;
  link(): LinkProfile;
  burstBytes(): number;
  segmentBytes: number;
  maxBufferedBytes: number;
  randomCuts: boolean;
  random(): number;
}

/** Starts a link emulator on 127.0.0.1 in front of `targetHost:targetPort`. */
export async function startLinkEmulator(options: LinkEmulatorOptions): Promise<LinkEmulator> {
  const o = readLinkEmulatorOptions(options);
  let link = o.link;
  const burstFixed = options.burstBytes !== undefined;
  let burst = o.burstBytes;
  const env: PipeEnv = {
    clock: o.clock,
    link: () => link,
    burstBytes: () => burst,
    segmentBytes: o.segmentBytes,
    maxBufferedBytes: o.maxBufferedBytes,
    randomCuts: o.randomCuts,
    random: o.random,
  };
  const stats: LinkEmulatorStats = { connectionsAccepted: 0, cuts: 0, bytesUp: 0, bytesDown: 0 };
  const conns = new Set<{ cut(): void }>();
  let downUntil = -Infinity;

  const server: Server = createServer((client) => {
    stats.connectionsAccepted++;
    if (o.clock.now() < downUntil) {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    client.pause();
    const upstream = createConnection({ host: o.targetHost, port: o.targetPort, noDelay: true });
    upstream.pause();
    let up: Pipe | undefined;
    let down: Pipe | undefined;
    let gone = false;
    const conn = {
      cut() {
        if (gone) return;
        gone = true;
        conns.delete(conn);
        up?.close();
        down?.close();
        client.destroy();
        upstream.destroy();
      },
    };
    const randomCut = () => {
      stats.cuts++;
      conn.cut();
    };
    conns.add(conn);
    client.on('error', () => conn.cut());
    upstream.on('error', () => conn.cut());
    client.on('close', () => conn.cut());
    upstream.on('close', () => conn.cut());
    upstream.once('connect', () => {
      if (gone) return;
      up = new Pipe(client, upstream, env, (n) => (stats.bytesUp += n), randomCut);
      down = new Pipe(upstream, client, env, (n) => (stats.bytesDown += n), randomCut);
      client.resume();
      upstream.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listenPort, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : o.listenPort;

  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    get connections() {
      return conns.size;
    },
    stats,
    cutAll(opts = {}) {
      if (opts.downMs !== undefined && opts.downMs > 0) downUntil = o.clock.now() + opts.downMs;
      for (const c of [...conns]) {
        stats.cuts++;
        c.cut();
      }
    },
    setLink(next) {
      link = readLinkEmulatorOptions({ targetPort: o.targetPort, link: next }).link;
      if (!burstFixed) burst = Math.max(1500, Math.round((link.bandwidthBps / 8) * 0.005));
    },
    async close() {
      for (const c of [...conns]) c.cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
