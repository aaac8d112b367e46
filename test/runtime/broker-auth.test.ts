/**
 * The agent against a Mosquitto that requires a password: `ferry start` passes the user name
 * and a password read from a file to the bus and to every mailbox session; a refused CONNACK is
 * BUS_AUTH at once (not BUS_OFFLINE after the connect timeout), naming the option; the password
 * is in no output and no log line. Bad credential options are refused before anything starts.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FERRY_MAIN, startAgentProcess } from '../helpers/agent-process.js';
import { startMosquitto, type MosquittoBroker } from '../helpers/brokers.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const SECRET = 'pi-broker-Secret-42';
let broker: MosquittoBroker;
const dir = mkdtempSync(join(tmpdir(), 'ferry-broker-auth-'));
const good = join(dir, 'good.pw');
const bad = join(dir, 'bad.pw');

beforeAll(async () => {
  broker = await startMosquitto({
    config: (d) => {
      chmodSync(d, 0o755);
      const pw = join(d, 'passwd');
      writeFileSync(pw, '');
      const r = spawnSync('mosquitto_passwd', ['-b', pw, 'kitchen-pi', SECRET], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`mosquitto_passwd failed: ${r.stderr}`);
      chmodSync(pw, 0o644);
      return ['allow_anonymous false', `password_file ${pw}`];
    },
  });
  writeFileSync(good, `${SECRET}\n`, { mode: 0o600 });
  writeFileSync(bad, 'not-the-password\n', { mode: 0o600 });
});

afterAll(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function ferry(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(nodeCommand(), [FERRY_MAIN, ...args], { timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

describe('broker credentials', () => {
  it('a user name and a password file get the agent, its mailboxes and its apps through; the password shows nowhere', async () => {
    const data = join(dir, 'ok');
    const a = startAgentProcess(data, ['--broker', broker.url, '--broker-user', 'kitchen-pi', '--broker-password-file', good]);
    try {
      await a.ready;
      await a.control('install', { path: join(process.cwd(), 'apps', 'counter.mjs') });
      await a.control('run', { app: 'counter' }); // its mailbox session connects with the same credentials
      expect(await a.control('call', { instance: 'counter', handler: 'increment', message: null })).toEqual({ count: 1 });
      expect((await a.control('status')) as object).toMatchObject({ brokerConnected: true });
      expect(JSON.stringify(a.logs)).not.toContain(SECRET);
    } finally {
      await a.kill('SIGTERM');
    }
  });

  it.each([
    ['a wrong password file', ['--broker-user', 'kitchen-pi', '--broker-password-file', bad], 'brokerPasswordFile', 'not-the-password'],
    ['no credentials at all', [], 'brokerUsername', undefined],
    ['a wrong password in the URL', ['--broker-user', 'kitchen-pi'], 'brokerPasswordFile', 'url-password-9'],
  ] as const)('%s: BUS_AUTH at once, naming the option to check; the password in no line', async (what, flags, field, secret) => {
    const url = what.includes('URL') ? broker.url.replace('mqtt://', 'mqtt://kitchen-pi:url-password-9@') : broker.url;
    const r = await ferry(['start', '--broker', url, ...flags, '--data', join(dir, `refused-${field}-${flags.length}`), '--json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { error: { code: string; field: string; message: string } };
    expect(out.error).toMatchObject({ code: 'BUS_AUTH', field });
    if (secret) expect(r.stdout + r.stderr).not.toContain(secret);
  });

  it.each([
    ['a password file without --broker', ['--broker-password-file', good], 'options.brokerPasswordFile', /given only with brokerUrl/],
    ['a password file that cannot be read', ['--broker', 'mqtt://127.0.0.1:1', '--broker-password-file', join(dir, 'missing.pw')], 'options.brokerPasswordFile', /cannot read password file .*missing\.pw \(ENOENT\)/],
    ['a CA file with a plain mqtt:// URL', ['--broker', 'mqtt://127.0.0.1:1', '--broker-ca', good], 'options.brokerCaFile', /mqtts:\/\//],
    ['a client certificate without its key', ['--broker', 'mqtts://127.0.0.1:1', '--broker-cert', good], 'options.brokerKeyFile', /together/],
  ] as const)('%s is BAD_OPTION naming the option, and never shows a file’s content', async (_what, flags, field, message) => {
    const r = await ferry(['start', ...flags, '--data', join(dir, 'bad-options'), '--json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { error: { code: string; field: string; message: string } };
    expect(out.error).toMatchObject({ code: 'BAD_OPTION', field });
    expect(out.error.message).toMatch(message);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });
});
