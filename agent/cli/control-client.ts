import { connect } from 'node:net';
import { FerryError, ERROR_CODES, type ErrorCode } from '../../core/errors.js';
import { controlSocketPath, type ControlAnswer } from '../runtime/control-server.js';

/**
 * Sends one request to the agent of `dataDir` over its control socket and
 * returns the result; an error answer is thrown as a FerryError with the
 * agent's code. No agent: AGENT_UNREACHABLE. `signal` gives up on the request (the connection
 * is closed; it rejects with the signal's reason).
 */
export function controlRequest(dataDir: string, cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000, signal?: AbortSignal): Promise<unknown> {
  const path = controlSocketPath(dataDir);
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = '';
    let done = false;
    const onAbort = () => finish(() => reject(signal!.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (f: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      sock.destroy();
      f();
    };
    const timer = setTimeout(() => finish(() => reject(new FerryError('AGENT_UNREACHABLE', `the agent on ${dataDir} did not answer ${cmd} within ${timeoutMs} ms`, { field: 'data' }))), timeoutMs);
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(`${JSON.stringify({ id: 1, cmd, args })}\n`));
    sock.on('error', (e: NodeJS.ErrnoException) =>
      finish(() => reject(new FerryError('AGENT_UNREACHABLE', `no agent runs on ${dataDir} (${e.code ?? e.message}); start one with: ferry start --data ${dataDir}`, { field: 'data' }))),
    );
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      finish(() => {
        let a: ControlAnswer;
        try {
          a = JSON.parse(buf.slice(0, nl)) as ControlAnswer;
        } catch {
          reject(new FerryError('AGENT_UNREACHABLE', `the agent on ${dataDir} answered something that is not JSON`, { field: 'data' }));
          return;
        }
        if (a.ok) resolve(a.result);
        else {
          const code: ErrorCode = Object.prototype.hasOwnProperty.call(ERROR_CODES, a.error.code) ? (a.error.code as ErrorCode) : 'REMOTE_ERROR';
          reject(new FerryError(code, a.error.message, a.error.field !== undefined ? { field: a.error.field } : {}));
        }
      });
    });
    sock.on('close', () => finish(() => reject(new FerryError('AGENT_UNREACHABLE', `the agent on ${dataDir} closed the connection without answering ${cmd}`, { field: 'data' }))));
  });
}
