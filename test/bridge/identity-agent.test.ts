/**
 * A real agent with a damaged bridge identity or registry: a clear error naming the file from
 * every bridge command and in `ferry status`, never a silent new identity, and the agent's
 * apps run on.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { freePort } from '../helpers/brokers.js';

const agents: AgentProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) await a.kill();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(dataDir: string): Promise<AgentProcess> {
  const a = startAgentProcess(dataDir, ['--port', String(await freePort()), '--device-id', 'pi-kitchen']);
  agents.push(a);
  await a.ready;
  return a;
}

async function stop(a: AgentProcess): Promise<void> {
  await a.control('shutdown');
  await a.kill('SIGTERM');
  agents.splice(agents.indexOf(a), 1);
}

async function refusal(a: AgentProcess, cmd: string, args: Record<string, unknown>): Promise<{ code: string; message: string }> {
  try {
    await a.control(cmd, args);
  } catch (e) {
    return e as { code: string; message: string };
  }
  throw new Error(`${cmd} was not refused`);
}

describe('a damaged bridge identity, with a real agent', () => {
  const damage: Array<[string, string, string, (bridgeDir: string) => void]> = [
    ['identity.key truncated', 'IDENTITY_CORRUPT', 'identity.key', (d) => writeFileSync(join(d, 'identity.key'), readFileSync(join(d, 'identity.key')).subarray(0, 40))],
    ['identity.key lost while peers.json remains', 'IDENTITY_CORRUPT', 'identity.key', (d) => rmSync(join(d, 'identity.key'))],
    ['identity.key replaced by another device’s', 'IDENTITY_CORRUPT', 'peers.json', (d) => writeFileSync(join(d, 'identity.key'), readFileSync(join(d, 'other.key')))],
    ['peers.json with a bad checksum', 'PEERS_CORRUPT', 'peers.json', (d) => writeFileSync(join(d, 'peers.json'), readFileSync(join(d, 'peers.json'), 'utf8').replace(/"check": "[0-9a-f]+"/, '"check": "0000000000000000"'))],
  ];

  it.each(damage)('%s: every bridge command and status say %s naming the file; apps run on; no new identity is made', async (_name, code, file, harm) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ferry-identity-'));
    dirs.push(dataDir);
    const other = mkdtempSync(join(tmpdir(), 'ferry-identity-other-'));
    dirs.push(other);
    // Another device's identity, for the replacement case.
    const o = await start(other);
    await stop(o);
    const bridgeDir = join(dataDir, 'bridge');
    const a = await start(dataDir);
    const before = (await a.control('status')) as { fingerprint: string };
    expect(before.fingerprint).toMatch(/^[0-9a-f]{4}(:[0-9a-f]{4}){4}$/);
    await a.control('install', { path: join(process.cwd(), 'apps', 'counter.mjs') });
    await a.control('run', { app: 'counter' });
    await stop(a);
    writeFileSync(join(bridgeDir, 'other.key'), readFileSync(join(other, 'bridge', 'identity.key')));
    const keyBefore = (() => {
      try {
        return readFileSync(join(bridgeDir, 'identity.key'));
      } catch {
        return undefined;
      }
    })();
    harm(bridgeDir);
    const harmed = (() => {
      try {
        return readFileSync(join(bridgeDir, 'identity.key'));
      } catch {
        return undefined;
      }
    })();

    const b = await start(dataDir);
    const status = (await b.control('status')) as { bridge?: string; fingerprint?: string };
    expect(status.bridge).toContain(code);
    expect(status.bridge).toContain(file);
    expect(status.fingerprint).toBeUndefined();
    for (const [cmd, args] of [['identity', {}], ['peers', {}], ['pair', { peer: 'phone-1' }], ['unpair', { peer: 'phone-1' }]] as const) {
      const e = await refusal(b, cmd, args);
      expect(e.code).toBe(code);
      expect(e.message).toContain(file);
    }
    expect(b.logs.some((l) => l.event === 'bridge.disabled')).toBe(true);
    // The apps are not the bridge's business: the counter answers.
    expect(await b.control('call', { instance: 'counter', handler: 'increment', message: null })).toMatchObject({ count: 1 });
    // Nothing replaced the damaged file behind the owner's back.
    let now: Buffer | undefined;
    try {
      now = readFileSync(join(bridgeDir, 'identity.key'));
    } catch {
      now = undefined;
    }
    expect(now).toEqual(harmed);
    if (code === 'PEERS_CORRUPT') expect(now).toEqual(keyBefore);
  });
});
