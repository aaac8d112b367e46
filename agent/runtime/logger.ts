import { LOG_LEVELS, type LogLevel, type LogLine } from './agent-options.js';
import { LogRing } from './log-ring.js';

/**
 * Structured logs: one JSON object per line, `{ ts, level, event, ...fields }`. Every line written
 * (at the configured level or above) goes to the sink and into `ring`, the recent lines in memory
 * that `ferry logs` reads.
 */
export class Logger {
  private readonly least: number;

  constructor(
    level: LogLevel,
    private readonly sink: (line: LogLine) => void,
    readonly ring: LogRing = new LogRing(),
  ) {
    this.least = LOG_LEVELS.indexOf(level);
  }

  log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
    if (LOG_LEVELS.indexOf(level) < this.least) return;
    const line: LogLine = { ts: new Date().toISOString(), level, event, ...fields };
    try {
      this.ring.add(line);
    } catch {
      // The ring copies the line as JSON text (a getter of an app's data can throw): never the agent's problem.
    }
    try {
      this.sink(line);
    } catch {
      // A broken log sink (a closed pipe) must not stop the agent.
    }
  }

  debug(event: string, fields?: Record<string, unknown>): void {
    this.log('debug', event, fields);
  }

  info(event: string, fields?: Record<string, unknown>): void {
    this.log('info', event, fields);
  }

  warn(event: string, fields?: Record<string, unknown>): void {
    this.log('warn', event, fields);
  }

  error(event: string, fields?: Record<string, unknown>): void {
    this.log('error', event, fields);
  }
}
