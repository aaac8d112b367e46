/**
 * The broker going away and coming back, as an operator sees it: one `broker.lost` line, one
 * `broker.back` line with how long it was away, and `ferry status` saying whether the agent is
 * connected. Credentials in the broker URL never reach the log or the status.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { redactUrl } from '../../agent/runtime/broker-watch.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startMosquitto, type MosquittoBroker } from '../helpers/brokers.js';

let broker: MosquittoBroker | undefined;
let agent: AgentProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), 'ferry-broker-state-'));

afterAll(async () => {
  await agent?.kill();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('broker state', () => {
  it('redactUrl hides a password and leaves everything else', () => {
    expect(redactUrl('mqtt://pi:s3cret@10.0.0.2:1883')).toBe('mqtt://pi:***@10.0.0.2:1883');
    expect(redactUrl('mqtts://broker.example:8883')).toBe('mqtts://broker.example:8883');
    expect(redactUrl('mqtt://127.0.0.1:1883')).toBe('mqtt://127.0.0.1:1883');
  });

  it('logs the broker lost and back (once each, with the outage), and ferry status says whether the agent is connected', async () => {
    broker = await startMosquitto();
    // A password in the URL (Mosquitto here allows anonymous clients, so it is simply sent and ignored).
    const url = broker.url.replace('mqtt://', 'mqtt://pi:s3cret@');
    agent = startAgentProcess(dir, ['--broker', url]);
    const a = agent;
    await a.ready;
    const status = async () => (await a.control('status')) as { brokerConnected: boolean; brokerReconnects: number; brokerDownSince?: string; brokerUpSince?: string; broker: string };
    const first = await status();
    expect(first).toMatchObject({ brokerConnected: true, brokerReconnects: 0 });
    expect(Date.parse(first.brokerUpSince!)).toBeLessThanOrEqual(Date.now());

    await broker.down();
    await until(() => a.logs.some((l) => l.event === 'broker.lost'), 'broker.lost');
    const down = await status();
    expect(down.brokerConnected).toBe(false);
    expect(typeof down.brokerDownSince).toBe('string');
    expect(down.brokerUpSince).toBeUndefined();

    await broker.up();
    await until(() => a.logs.some((l) => l.event === 'broker.back'), 'broker.back');
    await until(async () => (await status()).brokerConnected, 'connected again');
    const back = await status();
    expect(back).toMatchObject({ brokerConnected: true, brokerReconnects: 1 });
    expect(back.brokerDownSince).toBeUndefined();
    // Up since it came back, not since the start.
    expect(Date.parse(back.brokerUpSince!)).toBeGreaterThan(Date.parse(first.brokerUpSince!));
    expect(a.logs.filter((l) => l.event === 'broker.lost')).toHaveLength(1);
    const line = a.logs.find((l) => l.event === 'broker.back')!;
    expect(line.downMs).toBeGreaterThan(0);

    // The password is in no log line and not in the status.
    expect(back.broker).toContain('pi:***@');
    expect(JSON.stringify(a.logs)).not.toContain('s3cret');
    expect(JSON.stringify(back)).not.toContain('s3cret');
  });
});

describe('--log-level debug', () => {
  it('adds what an operator debugging a device needs: each control request (command, time, outcome) and each mailbox commit; info has neither', async () => {
    for (const level of ['debug', 'info'] as const) {
      const d = mkdtempSync(join(tmpdir(), `ferry-debug-${level}-`));
      const a = startAgentProcess(d, ['--port', '0', '--log-level', level]);
      try {
        await a.ready;
        await a.control('install', { path: join(process.cwd(), 'apps', 'counter.mjs') });
        await a.control('run', { app: 'counter' });
        await a.control('call', { instance: 'counter', handler: 'increment', message: { secret: 'app-data-1' } });
        await a.control('call', { instance: 'counter', handler: 'nope', message: null }).catch(() => undefined);
        await a.control('status');
        const control = a.logs.filter((l) => l.event === 'control.request');
        const commits = a.logs.filter((l) => l.event === 'mailbox.commit');
        if (level === 'info') {
          expect(control).toEqual([]);
          expect(commits).toEqual([]);
          continue;
        }
        expect(control.map((l) => [l.cmd, l.ok])).toEqual(expect.arrayContaining([['call', true], ['call', false]]));
        expect(control.find((l) => l.ok === false)).toMatchObject({ cmd: 'call', code: 'APP_NO_HANDLER' });
        expect(commits.length).toBeGreaterThan(0);
        expect(commits[0]).toMatchObject({ app: 'counter', calls: expect.any(Number), checkpoint: expect.any(Number) });
        // Arguments are not logged: a call's message is the app's data.
        expect(JSON.stringify(a.logs)).not.toContain('app-data-1');
      } finally {
        await a.kill('SIGTERM');
        rmSync(d, { recursive: true, force: true });
      }
    }
  });
});
