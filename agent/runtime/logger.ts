import { LOG_LEVELS, type LogLevel, type LogLine } from './agent-options.js';

/** Structured logs: one JSON object per line, `{ ts, level, event, ...fields }`. */
export class Logger {
  private readonly least: number;

  constructor(
    level: LogLevel,
    private readonly sink: (line: LogLine) => void,
  ) {
    this.least = LOG_LEVELS.indexOf(level);
  }

  log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
    if (LOG_LEVELS.indexOf(level) < this.least) return;
    try {
      this.sink({ ts: new Date().toISOString(), level, event, ...fields });
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
