import type { ServerResponse } from 'node:http';
import type { ControlDispatch } from '../runtime/control-server.js';
import type { ResolvedDashboardOptions } from './options.js';

/** One instance as the sampler reads it (figures since the agent started, or since its heap opened). */
export interface InstanceFigures {
  instance: string;
  app: string;
  state: string;
  error?: string;
  /** While it runs: its heap now. */
  heap?: { faults: number; residentBytes: number; budgetBytes: number; virtualBytes: number };
  /** Calls run since the agent started (every outcome). */
  calls: number;
  /** The latest group commit's time, seconds. */
  lastCommitSeconds?: number;
}

/** What the live streams read: instances' figures, and the control commands (logs, migrations). */
export interface LiveSource {
  instances(): InstanceFigures[];
  dispatch: ControlDispatch;
}

/** One instance in one sample: rates over the interval since the previous sample. */
export interface InstanceSample {
  instance: string;
  state: string;
  residentBytes?: number;
  budgetBytes?: number;
  virtualBytes?: number;
  faultsPerSec?: number;
  requestsPerSec?: number;
  lastCommitMs?: number;
}

export interface Sample {
  /** ms since the epoch. */
  at: number;
  instances: InstanceSample[];
  /** Moves under way (as `ferry migrations`), and how many have ended so far (a page reloads the history when it grows). */
  moves: { active: unknown[]; ended: number };
}

/** Log lines a new page gets at once (then every new one as it is written). */
const RECENT_LOG_LINES = 50;

/**
 * The live side of the dashboard: Server-Sent Events to each watching page. While at least one
 * page watches, a sample is taken every `sampleMs` (each instance's resident bytes, faults and
 * requests per second, last commit time; moves under way) and new lines of the agent's log ring
 * (its event stream) are forwarded; with no page, nothing runs (no timer, no reads) and only the
 * last `historySamples` samples stay in memory (a few tens of KB).
 */
export class LiveStreams {
  private readonly clients = new Set<ServerResponse>();
  private readonly history: Sample[] = [];
  private readonly recentLogs: unknown[] = [];
  private readonly previous = new Map<string, { at: number; faults?: number; calls: number }>();
  private timer: NodeJS.Timeout | undefined;
  /** A tick is under way or scheduled. */
  private running = false;
  private logAfter: number | undefined;
  private closed = false;

  constructor(
    private readonly source: LiveSource,
    private readonly options: ResolvedDashboardOptions,
    private readonly now: () => number = Date.now,
  ) {}

  get watching(): number {
    return this.clients.size;
  }

  /** Takes a page's stream; false when `maxStreams` are open already (the caller answers 503). */
  add(res: ServerResponse): boolean {
    if (this.closed || this.clients.size >= this.options.maxStreams) return false;
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Content-Type-Options': 'nosniff' });
    this.clients.add(res);
    res.on('close', () => this.clients.delete(res));
    send(res, 'hello', { history: this.history, logs: this.recentLogs, sampleMs: this.options.sampleMs });
    if (!this.running) void this.tick();
    return true;
  }

  /** Ends every stream and stops sampling (at the agent's shutdown). */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const c of this.clients) c.end();
    this.clients.clear();
  }

  /** One sample and the new log lines, sent to every page; then the next, unless nobody watches. */
  private async tick(): Promise<void> {
    this.running = true;
    try {
      const sample = await this.sample();
      this.history.push(sample);
      if (this.history.length > this.options.historySamples) this.history.splice(0, this.history.length - this.options.historySamples);
      this.broadcast('sample', sample);
      for (const line of await this.newLogLines()) this.broadcast('log', line);
    } catch {
      // An instance closing under the read: this sample is skipped, the next one reads again.
    }
    if (this.closed || this.clients.size === 0) {
      // The next page starts afresh: a rate over the idle gap would be an average, not a sample.
      this.previous.clear();
      this.running = false;
      return;
    }
    this.timer = setTimeout(() => void this.tick(), this.options.sampleMs);
    this.timer.unref();
  }

  private async sample(): Promise<Sample> {
    const at = this.now();
    const figures = this.source.instances();
    // Only the instances there now are remembered (a removed one is forgotten).
    for (const id of this.previous.keys()) if (!figures.some((i) => i.instance === id)) this.previous.delete(id);
    const instances = figures.map((i): InstanceSample => {
      const prev = this.previous.get(i.instance);
      const s: InstanceSample = { instance: i.instance, state: i.state };
      const secs = prev ? (at - prev.at) / 1000 : 0;
      if (i.heap) {
        s.residentBytes = i.heap.residentBytes;
        s.budgetBytes = i.heap.budgetBytes;
        s.virtualBytes = i.heap.virtualBytes;
        // The heap's count starts again at each opening: a smaller count is a new heap's.
        if (prev?.faults !== undefined && secs > 0) s.faultsPerSec = round((i.heap.faults >= prev.faults ? i.heap.faults - prev.faults : i.heap.faults) / secs);
      }
      if (prev && secs > 0) s.requestsPerSec = round(Math.max(0, i.calls - prev.calls) / secs);
      if (i.lastCommitSeconds !== undefined) s.lastCommitMs = round(i.lastCommitSeconds * 1000);
      this.previous.set(i.instance, { at, calls: i.calls, ...(i.heap ? { faults: i.heap.faults } : {}) });
      return s;
    });
    const m = await this.source.dispatch('migrations', {});
    const moves = m.ok ? (m.result as { active: unknown[]; recent: unknown[] }) : { active: [], recent: [] };
    return { at, instances, moves: { active: moves.active, ended: moves.recent.length } };
  }

  private async newLogLines(): Promise<unknown[]> {
    const page = await this.source.dispatch('logs', this.logAfter === undefined ? { limit: RECENT_LOG_LINES } : { after: this.logAfter, limit: 200 });
    if (!page.ok) return [];
    const { lines, next } = page.result as { lines: unknown[]; next: number };
    this.logAfter = next;
    this.recentLogs.push(...lines);
    if (this.recentLogs.length > RECENT_LOG_LINES) this.recentLogs.splice(0, this.recentLogs.length - RECENT_LOG_LINES);
    return lines;
  }

  private broadcast(event: string, data: unknown): void {
    for (const c of this.clients) send(c, event, data);
  }
}

const round = (n: number) => Math.round(n * 100) / 100;

function send(res: ServerResponse, event: string, data: unknown): void {
  if (!res.writableEnded) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}
