/**
 * A fleet over two Mosquitto processes for tests: a fleet broker and a site broker bridged to it,
 * each configured from `ferry broker-config` (the built command, as an operator runs it) and
 * started with that configuration as it printed it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import type { BrokerConfig } from '../../agent/cli/broker-config.js';
import { FERRY_MAIN } from '../helpers/agent-process.js';
import { startMosquitto, type MosquittoBroker } from '../helpers/brokers.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

/** `ferry broker-config <args> --json`, run synchronously (it is given inside a broker's start). */
export function brokerConfigCli(args: string[]): BrokerConfig {
  const out = execFileSync(nodeCommand(), [FERRY_MAIN, 'broker-config', ...args, '--json'], { encoding: 'utf8' });
  return JSON.parse(out) as BrokerConfig;
}

export interface FleetBrokers {
  fleet: MosquittoBroker;
  site: MosquittoBroker;
  stop(): Promise<void>;
}

/**
 * Starts the fleet broker (role fleet) and the site broker `site` bridged to it. `auth`: with
 * `password`, `users` (user → password; the bridge's user is `ferry-bridge-<site>`, whose password
 * is `bridgePassword`) go into both brokers' password files.
 */
export async function startFleet(o: { site: string; auth: 'none' | 'password'; users?: Record<string, string>; bridgePassword?: string; instances?: string[] }): Promise<FleetBrokers> {
  const files = (dir: string, c: BrokerConfig, users: Record<string, string>) => {
    chmodSync(dir, 0o755);
    if (c.acl !== null) {
      writeFileSync(c.paths.acl, c.acl, { mode: 0o644 });
      writeFileSync(c.paths.passwd, '', { mode: 0o644 });
      for (const [u, p] of Object.entries(users)) {
        const r = spawnSync('mosquitto_passwd', ['-b', c.paths.passwd, u, p], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`mosquitto_passwd failed: ${r.stderr}`);
      }
      chmodSync(c.paths.passwd, 0o644);
    }
  };
  const common = (dir: string, port: number) => ['--port', String(port), '--bind', '127.0.0.1', '--broker-dir', dir, '--auth', o.auth, ...(o.instances ? ['--instances', o.instances.join(',')] : [])];
  const bridgeUser = `ferry-bridge-${o.site}`;
  const fleet = await startMosquitto({
    fullConfig: (dir, port) => {
      const c = brokerConfigCli(['--role', 'fleet', '--sites', o.site, ...common(dir, port)]);
      files(dir, c, { ...o.users, ...(o.bridgePassword ? { [bridgeUser]: o.bridgePassword } : {}) });
      return c.conf;
    },
  });
  let site: MosquittoBroker;
  try {
    site = await startMosquitto({
      fullConfig: (dir, port) => {
        const pw = join(dir, 'bridge-password');
        if (o.bridgePassword) writeFileSync(pw, `${o.bridgePassword}\n`, { mode: 0o600 });
        const c = brokerConfigCli(['--site', o.site, '--fleet', `127.0.0.1:${fleet.port}`, ...common(dir, port), ...(o.bridgePassword ? ['--bridge-password-file', pw] : [])]);
        files(dir, c, o.users ?? {});
        return c.conf;
      },
    });
  } catch (e) {
    await fleet.stop();
    throw e;
  }
  return {
    fleet,
    site,
    async stop() {
      await site.stop();
      await fleet.stop();
    },
  };
}

/** Resolves once a message published at `from` arrives at `to` (the bridge is up); rejects after `timeoutMs`. */
export async function bridgeUp(from: string, to: string, auth: { username?: string; password?: string } = {}, timeoutMs = 15_000): Promise<void> {
  const topic = `ferry/v1/inbox/${auth.username ?? `bridge-check-${process.pid}`}`;
  const sub = await connectAsync(to, { protocolVersion: 4, reconnectPeriod: 0, ...auth });
  const pub = await connectAsync(from, { protocolVersion: 4, reconnectPeriod: 0, ...auth });
  try {
    let got = false;
    sub.on('message', () => (got = true));
    await sub.subscribeAsync(topic, { qos: 1 });
    const deadline = Date.now() + timeoutMs;
    while (!got) {
      if (Date.now() > deadline) throw new Error(`no message crossed from ${from} to ${to} within ${timeoutMs} ms`);
      await pub.publishAsync(topic, 'x', { qos: 1 });
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  }
}
