/**
 * `ferry broker-config` (agent/cli/broker-config.ts): the text it prints for a site broker and for
 * the fleet broker, its option and flag errors (each naming the field or flag, a password never
 * shown), the ACL's device rules equal to PROTOCOL §S.7's block, and Mosquitto running what it
 * printed with passwords and the ACL: a site broker bridged to the fleet broker carries a
 * device's retained description and its requests across, under each device's rights.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokerConfig, DEVICE_ACL, type BrokerConfigOptions } from '../../agent/cli/broker-config.js';
import { parseArgs } from '../../agent/cli/args.js';
import { runCommand } from '../../agent/cli/commands.js';
import { caught, caughtAsync } from '../helpers/ferry-error.js';
import { bridgeUp, startFleet, type FleetBrokers } from './fleet-helpers.js';

const SITE: BrokerConfigOptions = { site: 'kitchen', fleet: 'fleet.lan:1883', bridgePassword: 's3cret-Pw' };

const lines = (text: string) => text.split('\n');

describe('broker-config: the text', () => {
  it('a site broker: listener, persistence, and a bridge carrying every Ferry topic both ways at QoS 1, as a bridge, with a persistent session', () => {
    const c = brokerConfig({ ...SITE, port: 1884, bind: '127.0.0.1', brokerDir: '/srv/mq' });
    const l = lines(c.conf);
    for (const want of [
      'listener 1884 127.0.0.1',
      'set_tcp_nodelay true',
      'allow_anonymous false',
      'password_file /srv/mq/passwd',
      'acl_file /srv/mq/ferry.acl',
      'persistence true',
      'persistence_location /srv/mq/db/',
      'autosave_interval 300',
      'autosave_on_changes false',
      'connection ferry-bridge-kitchen',
      'address fleet.lan:1883',
      'topic ferry/v1/# both 1',
      'bridge_protocol_version mqttv311',
      'try_private true',
      'cleansession false',
      'remote_clientid ferry-bridge-kitchen',
      'remote_username ferry-bridge-kitchen',
      'remote_password s3cret-Pw',
      'notifications false',
    ]) expect(l, want).toContain(want);
    // One topic line: nothing outside ferry/v1/ crosses, and nothing inside it is left out.
    expect(l.filter((x) => x.startsWith('topic '))).toEqual(['topic ferry/v1/# both 1']);
    expect(c.paths).toEqual({ acl: '/srv/mq/ferry.acl', passwd: '/srv/mq/passwd', persistence: '/srv/mq/db/' });
    expect(c.next.join('\n')).toContain('--site kitchen');
    // Debian's layout by default; TLS to the fleet on request.
    const d = brokerConfig({ ...SITE, fleetCaFile: '/etc/ssl/fleet-ca.pem' });
    expect(lines(d.conf)).toEqual(expect.arrayContaining(['listener 1883', 'acl_file /etc/mosquitto/ferry.acl', 'persistence_location /var/lib/mosquitto/', 'bridge_cafile /etc/ssl/fleet-ca.pem', 'bridge_insecure false']));
  });

  it('the ACL: the device rules of PROTOCOL §S.7 exactly, mailbox writes and drains, per-instance reads; the fleet adds each site bridge', () => {
    const doc = readFileSync(join(import.meta.dirname, '../../transports/PROTOCOL.md'), 'utf8');
    const block = /<!-- acl:begin -->\s*```[a-z]*\n([\s\S]*?)```\s*<!-- acl:end -->/.exec(doc)![1]!;
    expect(DEVICE_ACL.join('\n')).toBe(block.trimEnd());
    const site = brokerConfig({ ...SITE, instances: ['tally', 'notes', 'tally'] });
    expect(site.acl!.startsWith(block)).toBe(true);
    expect(lines(site.acl!)).toEqual(expect.arrayContaining(['pattern write ferry/v1/app/+/req', 'pattern write ferry/v1/app/+/drain/+', 'pattern read ferry/v1/app/tally/#', 'pattern read ferry/v1/app/notes/#']));
    expect(lines(site.acl!).filter((x) => x.includes('app/tally/#'))).toHaveLength(1);
    expect(site.acl).not.toMatch(/^user /m);
    const fleet = brokerConfig({ role: 'fleet', sites: ['kitchen', 'garage'] });
    expect(fleet.conf).not.toMatch(/^connection /m);
    expect(fleet.acl).toMatch(/^user ferry-bridge-kitchen\ntopic readwrite ferry\/v1\/#$/m);
    expect(fleet.acl).toMatch(/^user ferry-bridge-garage\ntopic readwrite ferry\/v1\/#$/m);
    // auth none: anonymous, no ACL, no bridge credentials.
    const open = brokerConfig({ site: 'lab', fleet: '127.0.0.1:1883', auth: 'none' });
    expect(open.acl).toBeNull();
    expect(open.conf).toMatch(/^allow_anonymous true$/m);
    expect(open.conf).not.toMatch(/remote_(username|password)|acl_file|password_file/);
  });

  it('refuses bad options naming the field, and never shows the password', () => {
    const bad: Array<[BrokerConfigOptions, string]> = [
      [{ fleet: 'f:1883', bridgePassword: 'x' }, 'options.site'],
      [{ ...SITE, site: 'Kitchen' }, 'options.site'],
      [{ ...SITE, site: 'a'.repeat(33) }, 'options.site'],
      [{ ...SITE, fleet: undefined }, 'options.fleet'],
      [{ ...SITE, fleet: 'fleet.lan' }, 'options.fleet'],
      [{ ...SITE, fleet: 'fleet.lan:70000' }, 'options.fleet'],
      [{ ...SITE, fleet: 'a b:1883' }, 'options.fleet'],
      [{ ...SITE, port: 0 }, 'options.port'],
      [{ ...SITE, role: 'hub' as 'site' }, 'options.role'],
      [{ ...SITE, auth: 'tls' as 'none' }, 'options.auth'],
      [{ ...SITE, brokerDir: 'relative/dir' }, 'options.brokerDir'],
      [{ ...SITE, brokerDir: '/with space' }, 'options.brokerDir'],
      [{ ...SITE, instances: ['ok', 'Bad'] }, 'options.instances[1]'],
      [{ ...SITE, autosaveSeconds: 3600 }, 'options.autosaveSeconds'],
      [{ role: 'fleet', sites: ['ok', 'no_way'] }, 'options.sites[1]'],
      [{ role: 'fleet', fleet: 'f:1' }, 'options.fleet'],
      [{ ...SITE, colour: 'red' } as BrokerConfigOptions, 'options.colour'],
    ];
    for (const [o, field] of bad) {
      const e = caught(() => brokerConfig(o));
      expect(e.code, field).toBe('BAD_OPTION');
      expect(e.details.field, JSON.stringify(o)).toBe(field);
    }
    for (const pw of [undefined, '', 'has space', 'x'.repeat(257), 'new\nline']) {
      const e = caught(() => brokerConfig({ ...SITE, bridgePassword: pw }));
      expect(e.details.field).toBe('options.bridgePassword');
      if (pw) expect(e.message).not.toContain(pw);
    }
    expect(caught(() => brokerConfig({ role: 'fleet', bridgePassword: 'secret-1' })).message).not.toContain('secret-1');
  });

  it('the command: flags give the options, a bad one is CLI_USAGE naming the flag; --print picks one file', async () => {
    const run = (argv: string[]) => runCommand(parseArgs(['broker-config', ...argv]), () => undefined);
    const usage = async (argv: string[]) => {
      const e = await caughtAsync(() => run(argv));
      expect(e.code, argv.join(' ')).toBe('CLI_USAGE');
      return e.details.field;
    };
    expect(await usage(['--fleet', 'f:1883', '--auth', 'none'])).toBe('--site');
    expect(await usage(['--site', 'a', '--fleet', 'nope', '--auth', 'none'])).toBe('--fleet');
    expect(await usage(['--site', 'a', '--fleet', 'f:1', '--auth', 'none', '--instances', 'ok,BAD'])).toBe('--instances');
    expect(await usage(['--site', 'a', '--fleet', 'f:1'])).toBe('--bridge-password-file');
    expect(await usage(['--site', 'a', '--fleet', 'f:1', '--bridge-password-file', '/no/such/file'])).toBe('--bridge-password-file');
    expect(await usage(['--site', 'a', '--fleet', 'f:1', '--auth', 'none', '--print', 'acl'])).toBe('--print');
    expect(await usage(['--site', 'a', '--fleet', 'f:1', '--auth', 'none', '--print', 'both'])).toBe('--print');
    expect(await usage(['--site', 'a', '--fleet', 'f:1', '--auth', 'none', '--colour', 'red'])).toBe('--colour');
    expect(await usage(['extra', '--site', 'a', '--fleet', 'f:1', '--auth', 'none'])).toBe('arguments');
    const conf = (await run(['--site', 'a', '--fleet', 'f:1', '--auth', 'none', '--print', 'conf'])) as { result: string };
    expect(conf.result).toBe(brokerConfig({ site: 'a', fleet: 'f:1', auth: 'none' }).conf.trimEnd());
    const both = (await run(['--role', 'fleet', '--sites', 'a,b'])) as { result: string };
    expect(both.result).toContain('# ==== mosquitto.conf ====');
    expect(both.result).toContain('# ==== /etc/mosquitto/ferry.acl ====');
    expect(both.result).toContain('user ferry-bridge-b');
  });
});

describe('broker-config: Mosquitto runs what it printed (passwords, ACL, bridge)', () => {
  const USERS = { 'dev-a': 'pw-a-1', 'dev-b': 'pw-b-2' };
  let f: FleetBrokers;
  const clients: MqttClient[] = [];
  beforeAll(async () => {
    f = await startFleet({ site: 'north', auth: 'password', users: USERS, bridgePassword: 'bridge-pw-9' });
  }, 30_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync()));
    await f?.stop();
  });
  const as = async (url: string, u: keyof typeof USERS) => {
    const c = await connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, username: u, password: USERS[u] });
    clients.push(c);
    return c;
  };

  it("a device's retained description and its requests cross the bridge, under each device's rights", async () => {
    // The bridge logs in at the fleet with its own user: a message crosses.
    await bridgeUp(f.site.url, f.fleet.url, { username: 'dev-b', password: USERS['dev-b'] });
    const a = await as(f.site.url, 'dev-a');
    await a.publishAsync('ferry/v1/svc/dev-a/lamp', 'desc', { qos: 1, retain: true });
    const b = await as(f.fleet.url, 'dev-b');
    const got: string[] = [];
    b.on('message', (t, p, pk) => got.push(`${t} ${p.toString()} retain=${pk.retain}`));
    await b.subscribeAsync(['ferry/v1/svc/+/+', 'ferry/v1/lease/dev-b', 'ferry/v1/inbox/dev-a'], { qos: 1 });
    await a.publishAsync('ferry/v1/lease/dev-b', 'grant', { qos: 1 });
    // dev-a may not announce in dev-b's name: the broker drops it, on either side of the bridge.
    await a.publishAsync('ferry/v1/svc/dev-b/fake', 'forged', { qos: 1, retain: true });
    const deadline = Date.now() + 10_000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    // A mark after them: once it crosses, the forged one would have too.
    await a.publishAsync('ferry/v1/lease/dev-b', 'mark', { qos: 1 });
    while (!got.some((g) => g.includes('mark')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual(expect.arrayContaining(['ferry/v1/svc/dev-a/lamp desc retain=true', 'ferry/v1/lease/dev-b grant retain=false']));
    expect(got.join('\n')).not.toContain('forged');
    // dev-b's subscription to dev-a's inbox delivers nothing (Mosquitto acknowledges it and sends nothing).
    await a.publishAsync('ferry/v1/inbox/dev-a', 'private', { qos: 1 });
    await a.publishAsync('ferry/v1/lease/dev-b', 'mark2', { qos: 1 });
    while (!got.some((g) => g.includes('mark2')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(got.join('\n')).not.toContain('private');
    expect(f.site.log() + f.fleet.log()).not.toMatch(/Error|error/);
  });
});
