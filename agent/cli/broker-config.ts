import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { FerryError, isFerryError } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';
import { SITE_NAME } from '../bridge/options.js';
import type { Flags } from './args.js';
import { noMore, type Command } from './command.js';

/**
 * `ferry broker-config`: the Mosquitto configuration a fleet of Ferry devices over several
 * brokers needs (transports/PROTOCOL.md, "Federation"). A *site* is one Mosquitto with the agents
 * that connect to it; each site's broker bridges every Ferry topic (`ferry/v1/#`, both ways, QoS 1)
 * to one *fleet* broker, with Mosquitto's own bridge. This file is a pure function from options to
 * the text of `mosquitto.conf` and its ACL file, and the command that prints them.
 */

/** What `brokerConfig` is asked for. Every field is checked on entry, naming it (`options.<field>`). */
export interface BrokerConfigOptions {
  /** `site`: a site's broker, bridged to the fleet broker; `fleet`: the broker every site bridges to. Default `site`. */
  role?: 'site' | 'fleet';
  /**
   * The site's name: 1..32 of `a-z 0-9 -`, starting with a letter or digit. It names the bridge
   * (connection, client ids, the bridge's user at the fleet) and is what every agent on this
   * broker is started with (`--site`, or `site` in ferry.config.json). Required for a site.
   */
  site?: string;
  /** The fleet broker's `host:port` (role site). Required for a site. */
  fleet?: string;
  /** The sites bridging to this broker (role fleet): each gets its bridge user in the ACL. Default none (add them later). */
  sites?: string[];
  /** The listener's TCP port. Default 1883; 1..65,535. */
  port?: number;
  /** The listener's address (an IPv4 address or a host name). Default: every interface. */
  bind?: string;
  /**
   * An absolute folder for the broker's files: its persistence (`<dir>/db/`), `<dir>/ferry.acl`
   * and `<dir>/passwd`. Default Debian's layout: `/var/lib/mosquitto/` and `/etc/mosquitto/`.
   */
  brokerDir?: string;
  /** `password`: `allow_anonymous false`, a password file and the ACL; `none`: anonymous, no ACL (a lab on loopback only). Default `password`. */
  auth?: 'password' | 'none';
  /** The bridge's password at the fleet broker (role site, auth `password`): 1..256 printable characters, no white space. Required then. */
  bridgePassword?: string;
  /** A PEM file of the CA that signed the fleet broker's certificate: the bridge then uses TLS (`bridge_cafile`). Default: no TLS. */
  fleetCaFile?: string;
  /** Instances whose mailboxes every device may read (any paired device may come to run one): one ACL line each. Default none. */
  instances?: string[];
  /** Seconds between the broker's saves (`autosave_interval`). Default 300; 1..3,555 (saves must come more often than the agents' 1 h replay horizon less 45 s: PROTOCOL A.1). */
  autosaveSeconds?: number;
}

/** The files, and what each agent on the broker needs. */
export interface BrokerConfig {
  role: 'site' | 'fleet';
  site: string | null;
  /** `mosquitto.conf` (or a file under `/etc/mosquitto/conf.d/`). */
  conf: string;
  /** The ACL file the conf names (`acl_file`), or null with auth `none`. */
  acl: string | null;
  /** Where the conf expects the ACL and password files, and the persistence folder. */
  paths: { acl: string; passwd: string; persistence: string };
  /** What to do besides writing the files: the password entries to make, the agents' flags. */
  next: string[];
}

const SITE = SITE_NAME;
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/;
const INSTANCE = /^[a-z][a-z0-9-]{0,63}$/;
/** A path written into the conf: absolute, no white space (Mosquitto splits its lines at spaces). */
const CONF_PATH = /^\/[^\s\u0000-\u001f]*$/;

/** The device rules of PROTOCOL §S.7 (the block between its acl markers; a test keeps the two the same). */
export const DEVICE_ACL = [
  '# Ferry federation ACL (Mosquitto acl_file). %u = the MQTT username = the device id.',
  "# Discovery: read everyone's descriptions and deaths, write only your own.",
  'pattern read ferry/v1/svc/+/+',
  'pattern write ferry/v1/svc/%u/+',
  'pattern read ferry/v1/svc-death/+',
  'pattern write ferry/v1/svc-death/%u',
  '# Answers: only you read your inbox; anyone may answer into it.',
  'pattern read ferry/v1/inbox/%u',
  'pattern write ferry/v1/inbox/+',
  '# Requests: served only by the device named in the topic; sent by anyone.',
  'pattern read ferry/v1/lease/%u',
  'pattern write ferry/v1/lease/+',
  'pattern read ferry/v1/svc-call/%u/+',
  'pattern write ferry/v1/svc-call/+/+',
  'pattern read ferry/v1/space/%u/+',
  'pattern write ferry/v1/space/+/+',
  '# Bulk transfer: control and chunks to the receiver, acks back to the sender.',
  'pattern read ferry/v1/bulk/%u/#',
  'pattern write ferry/v1/bulk/+/ctl',
  'pattern write ferry/v1/bulk/+/chunk/+/+',
  'pattern write ferry/v1/bulk/+/ack/+',
  '# Bridge: pairing messages and sealed frames go to a device; only it reads them.',
  'pattern read ferry/v1/bridge/%u/+',
  'pattern write ferry/v1/bridge/+/pair',
  'pattern write ferry/v1/bridge/+/ch',
];

/** The bridge's name for a site: the Mosquitto connection, its client ids and its user at the fleet. */
export const bridgeName = (site: string) => `ferry-bridge-${site}`;

function list(r: OptionReader, name: string, pattern: RegExp, what: string): string[] {
  const v = r.raw(name);
  if (v === undefined) return [];
  if (!Array.isArray(v)) r.fail(name, `an array of ${what}`, v);
  (v as unknown[]).forEach((x, i) => {
    if (typeof x !== 'string' || !pattern.test(x)) r.fail(`${name}[${i}]`, what, x);
  });
  return [...new Set(v as string[])];
}

/** The configuration text for one broker of the fleet; throws BAD_OPTION naming the field. */
export function brokerConfig(options: BrokerConfigOptions): BrokerConfig {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(['role', 'site', 'fleet', 'sites', 'port', 'bind', 'brokerDir', 'auth', 'bridgePassword', 'fleetCaFile', 'instances', 'autosaveSeconds']);
  const role = r.oneOf('role', ['site', 'fleet'] as const, 'site');
  const auth = r.oneOf('auth', ['password', 'none'] as const, 'password');
  const site = role === 'site' || r.has('site') ? r.string('site', undefined, SITE) : null;
  const port = r.number('port', { min: 1, max: 65_535 }, 1883);
  const bind = r.has('bind') ? r.string('bind', undefined, HOST) : undefined;
  const dir = r.has('brokerDir') ? r.string('brokerDir', undefined, CONF_PATH).replace(/\/+$/, '') || '/' : undefined;
  const autosave = r.number('autosaveSeconds', { min: 1, max: 3555 }, 300);
  const instances = list(r, 'instances', INSTANCE, 'an instance id (a-z 0-9 -, starting with a letter)');
  const sites = role === 'fleet' ? list(r, 'sites', SITE, 'a site name (a-z 0-9 -, at most 32)') : [];
  if (role === 'fleet' && r.has('fleet')) r.fail('fleet', 'absent for the fleet broker (it is what the sites bridge to)', r.raw('fleet'));
  let fleet: { host: string; port: number } | undefined;
  if (role === 'site') {
    const f = r.string('fleet');
    const m = /^(.+):(\d{1,5})$/.exec(f);
    if (!m || !HOST.test(m[1]!) || Number(m[2]) < 1 || Number(m[2]) > 65_535) return r.fail('fleet', 'host:port (a host name or IPv4 address, a port in 1..65535)', f);
    fleet = { host: m[1]!, port: Number(m[2]) };
  }
  const caFile = r.has('fleetCaFile') ? r.string('fleetCaFile', undefined, CONF_PATH) : undefined;
  if (caFile && role !== 'site') r.fail('fleetCaFile', 'given only for a site (it is the bridge to the fleet that uses TLS)', caFile);
  let password: string | undefined;
  if (role === 'site' && auth === 'password') {
    const p = r.raw('bridgePassword');
    // Never echoed: it is a secret.
    if (typeof p !== 'string' || !/^[\x21-\x7e]{1,256}$/.test(p)) {
      throw new FerryError('BAD_OPTION', 'options.bridgePassword must be 1..256 printable ASCII characters without white space (the bridge\'s password at the fleet broker); the value is not shown', { field: 'options.bridgePassword' });
    }
    password = p;
  } else if (r.has('bridgePassword')) r.fail('bridgePassword', 'given only for a site with auth "password"', '(not shown)');

  const paths = {
    acl: dir ? `${dir}/ferry.acl` : '/etc/mosquitto/ferry.acl',
    passwd: dir ? `${dir}/passwd` : '/etc/mosquitto/passwd',
    persistence: dir ? `${dir}/db/` : '/var/lib/mosquitto/',
  };
  const conf = [
    `# Ferry ${role === 'site' ? `site "${site}": a site broker bridged to the fleet broker` : 'fleet broker: every site broker bridges to it'} (ferry broker-config).`,
    '# Ferry needs MQTT 3.1.1, QoS 1, retained messages and persistent sessions (transports/PROTOCOL.md, "Federation").',
    '# Nagle off: with delayed ACKs it adds ~40 ms to every request/response round trip.',
    'set_tcp_nodelay true',
    `listener ${port}${bind ? ` ${bind}` : ''}`,
    ...(auth === 'password' ? ['allow_anonymous false', `password_file ${paths.passwd}`, `acl_file ${paths.acl}`] : ['# auth none: anonymous and no ACL. Only on loopback or a network you trust.', 'allow_anonymous true']),
    '# Mailbox sessions and the bridge queue survive a restart; saved by time, more often than the 1 h replay horizon (PROTOCOL A.1).',
    'persistence true',
    `persistence_location ${paths.persistence}`,
    `autosave_interval ${autosave}`,
    'autosave_on_changes false',
    '# A suspended instance, or a site cut off from the fleet, queues this many messages per session (the bridge is one).',
    'max_queued_messages 10000',
    ...(role === 'site' ? siteBridge(site!, fleet!, password, caFile) : []),
    '',
  ].join('\n');

  const acl =
    auth === 'none'
      ? null
      : [
          ...DEVICE_ACL,
          '# App mailboxes (PROTOCOL A.5): anyone may send requests; a handoff across brokers drains an',
          '# instance\'s old session with a sentinel on ferry/v1/app/<instance>/drain/<nonce> ("Federation").',
          'pattern write ferry/v1/app/+/req',
          'pattern write ferry/v1/app/+/drain/+',
          ...(instances.length > 0
            ? ['# Instances any device may run (a handoff can bring one to any paired device).', ...instances.map((i) => `pattern read ferry/v1/app/${i}/#`)]
            : ['# Each instance: `pattern read ferry/v1/app/<instance>/#` (ferry broker-config --instances a,b).']),
          ...(role === 'fleet'
            ? ['# The site bridges: everything under ferry/v1/, both ways.', ...sites.flatMap((s) => [`user ${bridgeName(s)}`, 'topic readwrite ferry/v1/#'])]
            : []),
          '',
        ].join('\n');

  const next: string[] = [];
  if (auth === 'password') {
    next.push(`write the ACL to ${paths.acl}; add each device with mosquitto_passwd ${paths.passwd} <device id> (its user name is its device id)`);
    if (role === 'fleet') {
      for (const s of sites) next.push(`add site ${s}'s bridge: mosquitto_passwd ${paths.passwd} ${bridgeName(s)} (the password its site's broker-config was given)`);
      if (sites.length === 0) next.push('list the sites with --sites a,b: each gets its bridge user in the ACL');
    }
  }
  next.push(`make ${paths.persistence} writable by the broker's own user (mosquitto)`);
  if (role === 'site') next.push(`start every agent on this broker with --site ${site} (or "site": "${site}" in ferry.config.json): a handoff to a device of another site then forwards the mailbox`);
  else next.push(`agents on this broker directly: give them one site name of their own (--site fleet) that no site uses`);
  return { role, site, conf, acl, paths, next };
}

/** The bridge section of a site's conf (mosquitto.conf(5), "Configuring Bridges"). */
function siteBridge(site: string, fleet: { host: string; port: number }, password: string | undefined, caFile: string | undefined): string[] {
  const name = bridgeName(site);
  return [
    '',
    '# The bridge to the fleet broker. Every Ferry topic crosses both ways at QoS 1: discovery (retained),',
    '# deaths (retained wills), inboxes, leases, calls, spaces, bulk, app mailboxes, pairing and sealed frames.',
    `connection ${name}`,
    `address ${fleet.host}:${fleet.port}`,
    'topic ferry/v1/# both 1',
    'bridge_protocol_version mqttv311',
    '# Tells the fleet broker it is a bridge: messages are not sent back where they came from (no loop),',
    '# and retained messages keep their retain flag across.',
    'try_private true',
    '# A persistent session at the fleet: messages for this site queue there while the link is down.',
    'cleansession false',
    `remote_clientid ${name}`,
    `local_clientid ${name}-local`,
    ...(password !== undefined ? [`remote_username ${name}`, `remote_password ${password}`] : []),
    ...(caFile ? [`bridge_cafile ${caFile}`, 'bridge_insecure false'] : []),
    'start_type automatic',
    'restart_timeout 1 30',
    'keepalive_interval 30',
    '# No $SYS notifications at the fleet (its ACL would refuse them).',
    'notifications false',
  ];
}

/** CLI flag → option, for errors that name the flag. */
const FLAG_OF: Record<string, string> = {
  role: '--role',
  site: '--site',
  fleet: '--fleet',
  sites: '--sites',
  port: '--port',
  bind: '--bind',
  brokerDir: '--broker-dir',
  auth: '--auth',
  bridgePassword: '--bridge-password-file',
  fleetCaFile: '--fleet-ca',
  instances: '--instances',
  autosaveSeconds: '--autosave',
};

const USAGE = 'broker-config [--role site|fleet] [--site <name>] [--fleet <host:port>] [--sites <a,b>] [--port <n>] [--bind <addr>] [--broker-dir <dir>] [--auth password|none] [--bridge-password-file <file>] [--fleet-ca <pem>] [--instances <a,b>] [--autosave <s>] [--print conf|acl]';

function csv(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').map((x) => x.trim()).filter((x) => x !== '');
}

/** The options the flags give; a password file that cannot be read is CLI_USAGE naming its flag. */
export function brokerConfigOptions(f: Flags): BrokerConfigOptions {
  const o: Record<string, unknown> = {};
  const set = (k: keyof BrokerConfigOptions, v: unknown) => {
    if (v !== undefined) o[k] = v;
  };
  set('role', f.str('role'));
  set('site', f.str('site'));
  set('fleet', f.str('fleet'));
  set('sites', csv(f.str('sites')));
  set('port', f.int('port', 1, 65_535));
  set('bind', f.str('bind'));
  set('brokerDir', f.str('broker-dir'));
  set('auth', f.str('auth'));
  set('fleetCaFile', f.str('fleet-ca') !== undefined ? resolve(f.str('fleet-ca')!) : undefined);
  set('instances', csv(f.str('instances')));
  set('autosaveSeconds', f.int('autosave', 1, 3555));
  const pwFile = f.str('bridge-password-file');
  if (pwFile !== undefined) {
    try {
      set('bridgePassword', readFileSync(pwFile, 'utf8').replace(/\r?\n$/, ''));
    } catch (e) {
      throw new FerryError('CLI_USAGE', `--bridge-password-file ${JSON.stringify(pwFile)} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'}); usage: ferry ${USAGE}`, { field: '--bridge-password-file' });
    }
  }
  return o as BrokerConfigOptions;
}

export const BROKER_CONFIG_COMMAND: Command = {
  usage: USAGE,
  summary: "print the Mosquitto config (bridge to the fleet broker) and ACL a fleet over several brokers needs (no agent needed)",
  flags: ['role', 'site', 'fleet', 'sites', 'port', 'bind', 'broker-dir', 'auth', 'bridge-password-file', 'fleet-ca', 'instances', 'autosave', 'print'],
  async run(_c, words, f) {
    noMore(words, 0, USAGE);
    const print = f.str('print');
    if (print !== undefined && print !== 'conf' && print !== 'acl') throw new FerryError('CLI_USAGE', `--print must be conf or acl, got ${JSON.stringify(print)}; usage: ferry ${USAGE}`, { field: '--print' });
    let c: BrokerConfig;
    try {
      c = brokerConfig(brokerConfigOptions(f));
    } catch (e) {
      // The option's name as the flag that gave it.
      const field = isFerryError(e, 'BAD_OPTION') ? /^options\.([A-Za-z]+)(.*)$/.exec(String(e.details.field)) : null;
      if (!field) throw e;
      const flag = FLAG_OF[field[1]!] ?? `--${field[1]}`;
      throw new FerryError('CLI_USAGE', `${e instanceof Error ? e.message.replace(`options.${field[1]}${field[2]}`, flag) : String(e)}; usage: ferry ${USAGE}`, { field: flag });
    }
    if (f.bool('json')) return { result: c };
    if (print === 'conf') return { result: c.conf.trimEnd() };
    if (print === 'acl') {
      if (c.acl === null) throw new FerryError('CLI_USAGE', '--print acl: with --auth none there is no ACL', { field: '--print' });
      return { result: c.acl.trimEnd() };
    }
    return {
      result: [
        `# ==== mosquitto.conf ====`,
        c.conf.trimEnd(),
        ...(c.acl !== null ? ['', `# ==== ${c.paths.acl} ====`, c.acl.trimEnd()] : []),
        '',
        '# ==== then ====',
        ...c.next.map((n) => `# - ${n}`),
      ].join('\n'),
    };
  },
};
