import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServices, type Services, type ServicesOptions } from '../../agent/services/index.js';

/** Fast reconnects so broker-restart tests stay short. */
export const FAST_BUS = { reconnectMinMs: 20, reconnectMaxMs: 200, keepaliveSeconds: 5, connectTimeoutMs: 3000 };

export class Devices {
  readonly dir = mkdtempSync(join(tmpdir(), 'ferry-svc-'));
  private readonly started: Services[] = [];
  private n = 0;

  constructor(private readonly url: () => string) {}

  /** A device; `grantor: true` gives it a grantor with a state file in the temp dir. */
  async start(deviceId: string, o: Partial<Omit<ServicesOptions, 'grantor'>> & { grantor?: boolean | Record<string, unknown> } = {}): Promise<Services> {
    const { grantor, ...rest } = o;
    const g = grantor ? { stateFile: join(this.dir, `${deviceId}-${this.n++}.sqlite`), minDurationMs: 10, ...(typeof grantor === 'object' ? grantor : {}) } : undefined;
    const s = await startServices({
      url: this.url(),
      deviceId,
      epochFile: join(this.dir, `${deviceId}.epoch`),
      bus: FAST_BUS,
      client: { timeoutMs: 1000, retries: 2 },
      ...rest,
      ...(g ? { grantor: g } : {}),
    } as ServicesOptions);
    this.started.push(s);
    return s;
  }

  async closeAll(): Promise<void> {
    for (const s of this.started.splice(0)) {
      try {
        await s.close();
      } catch {
        // already closed by the test
      }
    }
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = () => {
      if (cond()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(check, 10);
    };
    check();
  });
}

export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}
