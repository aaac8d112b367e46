import { FerryError, isFerryError } from '../../core/errors.js';
import { MAX_LOG_WAIT_MS } from '../runtime/control-server.js';
import { MAX_LOG_READ, type LogPage } from '../runtime/log-ring.js';
import { noMore, type Command } from './command.js';
import { controlRequest } from './control-client.js';
import { formatLogLine } from './format.js';

/** Lines `ferry logs` shows without --lines. */
const DEFAULT_LINES = 100;

/** Lines asked for per read while following. */
const FOLLOW_BATCH = 1000;

/**
 * `ferry logs [instance] [--follow] [--lines n]`: the newest lines of the agent's log ring (of
 * one instance: its app's `ctx.log` lines and the agent's events about it), then with `--follow`
 * every new one until Ctrl-C (exit 0) or until the agent goes away (AGENT_UNREACHABLE, exit 1).
 * Human lines are `<ISO time> <level> <instance> <event> key=value…`; with `--json`, one JSON
 * object per line (JSON Lines), each with its `seq`. Lines the ring dropped before a follower
 * read them are reported where they were: `… N lines skipped` (`{"skipped":N}` with --json).
 */
export const LOGS_COMMAND: Command = {
  usage: 'logs [instance] [--follow] [--lines <n>]',
  summary: "recent log lines (an instance's ctx.log lines and the agent's events about it); --follow for new ones",
  flags: ['follow', 'lines'],
  async run(ctx, w, f, _cfg, d) {
    noMore(w, 1, this.usage);
    const instance = w[0] !== undefined ? { instance: w[0] } : {};
    const limit = f.int('lines', 0, MAX_LOG_READ) ?? DEFAULT_LINES;
    const json = ctx.parsed.flags.has('json');
    const print = (page: LogPage, filtered: boolean) => {
      const out: string[] = [];
      if (page.skipped > 0) {
        out.push(json ? JSON.stringify({ skipped: page.skipped }) : `… ${page.skipped} lines skipped (the agent's log ring overflowed before they were read${filtered ? '; counted over every instance' : ''})`);
      }
      for (const l of page.lines) out.push(json ? JSON.stringify(l) : formatLogLine(l));
      if (out.length > 0) process.stdout.write(`${out.join('\n')}\n`);
    };
    let page = (await controlRequest(d, 'logs', { ...instance, limit })) as LogPage;
    print(page, false);
    if (!f.bool('follow')) return { exitCode: 0 };

    // Following: long polls (the agent holds each up to MAX_LOG_WAIT_MS) from the last line seen.
    // Ctrl-C (or SIGTERM, or a reader gone away: `| head`) ends it with status 0; the agent going
    // away is an error.
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    const onPipe = (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') stop.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.stdout.on('error', onPipe);
    try {
      for (;;) {
        page = (await controlRequest(d, 'logs', { ...instance, after: page.next, limit: FOLLOW_BATCH, wait: MAX_LOG_WAIT_MS }, MAX_LOG_WAIT_MS + 10_000, stop.signal)) as LogPage;
        if (stop.signal.aborted) break;
        print(page, w[0] !== undefined);
      }
    } catch (e) {
      if (!stop.signal.aborted) {
        if (isFerryError(e, 'AGENT_UNREACHABLE')) {
          throw new FerryError('AGENT_UNREACHABLE', `the agent on ${d} went away (it stopped or was killed); no more lines to follow`, { field: 'data' });
        }
        throw e;
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.stdout.off('error', onPipe);
    }
    return { exitCode: 0 };
  },
};
