import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { FerryError, isFerryError } from '../../core/errors.js';
import { getProfile, profileNames } from '../../hw-profiles/index.js';
import { Flags, type ParsedArgs } from './args.js';
import { agent, need, noMore, type Command, type CommandResult } from './command.js';
import { readConfig, type FerryConfig } from './config.js';
import { DASHBOARD_COMMAND, DASHBOARD_DEFAULT_PORT } from './dashboard-command.js';
import { LOGS_COMMAND } from './logs-command.js';
import { BROKER_CONFIG_COMMAND } from './broker-config.js';
import { PAIR_COMMANDS } from './pair-commands.js';
import { MIGRATE_COMMANDS } from './migrate-commands.js';
import { FLEET_COMMANDS } from './fleet-commands.js';
import { BUNDLE_COMMANDS } from './bundle-commands.js';
import { SERVICE_COMMANDS } from './service-command.js';
import { packageDir } from './package-dir.js';

export type { CommandContext, CommandResult } from './command.js';

/** The broker credential flags over the config file's fields (flag paths are taken from the working directory). */
function brokerCredentials(f: Flags, c: FerryConfig): Record<string, string> {
  const pick = (flag: string, key: keyof FerryConfig, path: boolean): [string, string] | undefined => {
    const v = f.str(flag);
    if (v !== undefined) return [key, path ? resolve(v) : v];
    const w = c[key];
    return typeof w === 'string' ? [key, w] : undefined;
  };
  return Object.fromEntries(
    [
      pick('broker-user', 'brokerUsername', false),
      pick('broker-password-file', 'brokerPasswordFile', true),
      pick('broker-ca', 'brokerCaFile', true),
      pick('broker-cert', 'brokerCertFile', true),
      pick('broker-key', 'brokerKeyFile', true),
    ].filter((x): x is [string, string] => x !== undefined),
  );
}

function version(v: string, usage: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new FerryError('CLI_USAGE', `<version> must be a positive integer, got ${JSON.stringify(v)}; usage: ferry ${usage}`, { field: 'version' });
  return Number(v);
}

/** Every `ferry` command. The agent's own commands go over the control socket. */
export const COMMANDS: Record<string, Command> = {
  start: {
    usage:
      'start [--profile <name>] [--broker <url> [--broker-user <name>] [--broker-password-file <file>] [--broker-ca <pem>] [--broker-cert <pem> --broker-key <pem>]] [--port <n>] [--device-id <id>] [--label <text>] [--site <name>] [--log-level <l>] [--http-port <n> [--http-host <addr>]] [--dashboard] [--samples]',
    summary: 'run the agent in the foreground (embedded broker without --broker)',
    flags: ['profile', 'broker', 'port', 'samples', 'log-level', 'device-id', 'label', 'site', 'broker-user', 'broker-password-file', 'broker-ca', 'broker-cert', 'broker-key', 'http-port', 'http-host', 'dashboard'],
    async run(ctx, words, f, config, dataDir) {
      noMore(words, 0, this.usage);
      const { runAgent } = await import('./start.js');
      const broker = f.str('broker') ?? config.broker;
      const port = f.int('port', 0, 65_535) ?? config.brokerPort;
      const deviceId = f.str('device-id') ?? config.deviceId;
      const logLevel = f.str('log-level') ?? config.logLevel;
      // The ops endpoint (/healthz, /metrics): only with a port; its option errors name the flag or the config field.
      // The dashboard is served on that endpoint; asked for without a port, it takes the usual one.
      const dashboard = f.bool('dashboard') || config.dashboard === true;
      const httpPort = f.int('http-port', 0, 65_535) ?? config.httpPort ?? (dashboard ? DASHBOARD_DEFAULT_PORT : undefined);
      const httpHost = f.str('http-host') ?? config.httpHost;
      if (httpHost !== undefined && httpPort === undefined) throw new FerryError('CLI_USAGE', '--http-host needs --http-port <n> (or httpPort in the config file)', { field: '--http-host' });
      const httpField = (k: string) => (f.str(`http-${k}`) !== undefined ? `--http-${k}` : `http${k[0]!.toUpperCase()}${k.slice(1)}`);
      const exitCode = await runAgent(
        {
          dataDir,
          profile: f.str('profile') ?? config.profile ?? 'rpi-4b',
          ...(broker !== undefined ? { brokerUrl: broker } : {}),
          ...(port !== undefined ? { brokerPort: port } : {}),
          ...(deviceId !== undefined ? { deviceId } : {}),
          ...(logLevel !== undefined ? { logLevel: logLevel as 'info' } : {}),
          ...(config.handlerTimeoutMs !== undefined ? { handlerTimeoutMs: config.handlerTimeoutMs } : {}),
          ...(config.rememberReplies !== undefined ? { rememberReplies: config.rememberReplies } : {}),
          ...(config.replayHorizonMs !== undefined ? { replayHorizonMs: config.replayHorizonMs } : {}),
          ...(config.maxBatch !== undefined ? { maxBatch: config.maxBatch } : {}),
          ...(config.keepVersions !== undefined ? { keepVersions: config.keepVersions } : {}),
          ...(config.maxInstances !== undefined ? { maxInstances: config.maxInstances } : {}),
          ...brokerCredentials(f, config),
          ...(config.durability !== undefined ? { durability: config.durability as 'full' } : {}),
        },
        f.bool('samples'),
        ctx.say,
        {
          ...((f.str('label') ?? config.label) !== undefined ? { label: f.str('label') ?? config.label } : {}),
          ...(config.pairTimeoutMs !== undefined ? { pairTimeoutMs: config.pairTimeoutMs } : {}),
          // The broker's site in a fleet over several brokers (ferry broker-config): a handoff to another site forwards the mailbox.
          ...((f.str('site') ?? config.site) !== undefined ? { site: f.str('site') ?? config.site } : {}),
        },
        httpPort !== undefined ? { port: httpPort, ...(httpHost !== undefined ? { host: httpHost as 'localhost' } : {}) } : undefined,
        dashboard ? {} : undefined,
        config.summaryRefreshMs !== undefined ? { summaryRefreshMs: config.summaryRefreshMs } : {},
      ).catch((e: unknown) => {
        const http = isFerryError(e, 'BAD_OPTION') ? /^http\.(port|host)$/.exec(String(e.details.field)) : null;
        if (http) {
          // A port the dashboard took by default: say so, and how to choose another.
          const defaulted = http[1] === 'port' && f.int('http-port', 0, 65_535) === undefined && config.httpPort === undefined;
          const field = defaulted ? '--http-port' : httpField(http[1]!);
          const hint = defaulted ? ` (the dashboard's default port; choose another with --http-port <n>, 0 for any free one)` : '';
          throw new FerryError('BAD_OPTION', `${(e as Error).message.replace(`http.${http[1]!}`, field)}${hint}`, { field });
        }
        // The usual cause: a broker (Mosquitto as a service, another agent) already holds 1883.
        if (isFerryError(e) && e.details.field === 'options.port' && broker === undefined) {
          throw new FerryError('BAD_OPTION', `${e.message}; is a broker already running there? Use it with --broker mqtt://127.0.0.1:${port ?? 1883}, or give the embedded broker another port (--port 0: any free one)`, { field: '--port' });
        }
        throw e;
      });
      return { exitCode };
    },
  },
  status: { usage: 'status', summary: "the agent's device, profile, broker and memory", flags: [], run: async (_c, w, _f, _cfg, d) => (noMore(w, 0, 'status'), agent(d, 'status')) },
  profiles: {
    usage: 'profiles',
    summary: 'the built-in hardware profiles (no agent needed)',
    flags: [],
    async run(_c, w) {
      noMore(w, 0, this.usage);
      return {
        result: profileNames().map((n) => {
          const p = getProfile(n);
          return { name: p.name, class: p.deviceClass, wordBits: p.wordBits, heapBudgetBytes: p.heapBudgetBytes, lineBytes: p.cacheLineBytes, services: p.services.join(',') };
        }),
      };
    },
  },
  apps: { usage: 'apps', summary: 'installed apps and their instances', flags: [], run: async (_c, w, _f, _cfg, d) => (noMore(w, 0, 'apps'), agent(d, 'apps')) },
  install: {
    usage: 'install <path>',
    summary: 'check and install an app module (.mjs, .js, or .ts compiled here)',
    flags: [],
    async run(c, w, f, _cfg, d) {
      const path = need(w, 0, 'path', this.usage);
      noMore(w, 1, this.usage);
      const out = await agent(d, 'install', { path: resolve(path) });
      const old = (out.result as { oldCodeRunning?: string[] }).oldCodeRunning ?? [];
      // Installing does not change what runs: say so, and how to move each instance.
      if (old.length > 0 && !f.bool('json')) c.say(`still running the code installed before: ${old.join(', ')}; move each with ferry upgrade <instance> (or it moves at its next resume or agent start)`);
      return out;
    },
  },
  run: {
    usage: 'run <app> [--instance <id>]',
    summary: 'start an instance of an installed app (default id: the app name)',
    flags: ['instance'],
    async run(_c, w, f, _cfg, d) {
      const app = need(w, 0, 'app', this.usage);
      noMore(w, 1, this.usage);
      const instance = f.str('instance');
      return agent(d, 'run', { app, ...(instance !== undefined ? { instance } : {}) });
    },
  },
  upgrade: {
    usage: 'upgrade <instance>',
    summary: "move a running instance to its app's installed code on the same heap (runs onUpgrade; rolls back if it fails)",
    flags: [],
    async run(_c, w, _f, _cfg, d) {
      const instance = need(w, 0, 'instance', this.usage);
      noMore(w, 1, this.usage);
      return agent(d, 'upgrade', { instance });
    },
  },
  call: {
    usage: 'call <instance> <handler> [json]',
    summary: 'run a handler; prints its result once committed',
    flags: [],
    async run(_c, w, _f, _cfg, d) {
      const instance = need(w, 0, 'instance', this.usage);
      const handler = need(w, 1, 'handler', this.usage);
      noMore(w, 3, this.usage);
      let message: unknown = null;
      if (w[2] !== undefined) {
        try {
          message = JSON.parse(w[2]);
        } catch (e) {
          throw new FerryError('CLI_USAGE', `[json] is not JSON (${(e as Error).message}); quote it, e.g. '{"by":2}'`, { field: 'json' });
        }
      }
      return agent(d, 'call', { instance, handler, message });
    },
  },
  suspend: instanceCommand('suspend', 'checkpoint an instance and free its memory; requests queue until resume'),
  stop: instanceCommand('stop', 'checkpoint and stop an instance you are done with for now (resume or run starts it)'),
  resume: {
    usage: 'resume <instance> [--version <n>]',
    summary: 'resume from the newest checkpoint, or from version n',
    flags: ['version'],
    async run(_c, w, f, _cfg, d) {
      const instance = need(w, 0, 'instance', this.usage);
      noMore(w, 1, this.usage);
      const v = f.int('version', 1, Number.MAX_SAFE_INTEGER);
      return agent(d, 'resume', { instance, ...(v !== undefined ? { version: v } : {}) });
    },
  },
  remove: {
    usage: 'remove <app>',
    summary: 'remove an app with its instances, heaps and checkpoints',
    flags: [],
    async run(_c, w, _f, _cfg, d) {
      const app = need(w, 0, 'app', this.usage);
      noMore(w, 1, this.usage);
      return agent(d, 'remove', { app });
    },
  },
  checkpoints: {
    usage: 'checkpoints [instance]',
    summary: 'browse the store: checkpoint versions, sizes, times',
    flags: [],
    async run(_c, w, _f, _cfg, d) {
      noMore(w, 1, this.usage);
      // createdAt comes as ISO 8601 (UTC) from the agent, as every time on the control channel.
      return agent(d, 'checkpoints', w[0] !== undefined ? { instance: w[0] } : {});
    },
  },
  restore: {
    usage: 'restore <instance> --version <n>',
    summary: 'make checkpoint n the newest (and resume there if running)',
    flags: ['version'],
    async run(_c, w, f, _cfg, d) {
      const instance = need(w, 0, 'instance', this.usage);
      noMore(w, 1, this.usage);
      const v = f.int('version', 1, Number.MAX_SAFE_INTEGER);
      if (v === undefined) throw new FerryError('CLI_USAGE', `missing --version <n>; usage: ferry ${this.usage}`, { field: '--version' });
      return agent(d, 'restore', { instance, version: v });
    },
  },
  checkpoint: {
    usage: 'checkpoint rm <instance> <version>',
    summary: 'delete one checkpoint version (not the newest)',
    flags: [],
    async run(_c, w, _f, _cfg, d) {
      if (w[0] !== 'rm') throw new FerryError('CLI_USAGE', `unknown subcommand ${JSON.stringify(w[0] ?? '')}; usage: ferry ${this.usage}`, { field: 'subcommand' });
      const instance = need(w, 1, 'instance', this.usage);
      const v = version(need(w, 2, 'version', this.usage), this.usage);
      noMore(w, 3, this.usage);
      return agent(d, 'checkpoint-rm', { instance, version: v });
    },
  },
  services: { usage: 'services', summary: 'services discovered on the broker', flags: [], run: async (_c, w, _f, _cfg, d) => (noMore(w, 0, 'services'), agent(d, 'services')) },
  leases: { usage: 'leases', summary: "leases held by this agent's apps", flags: [], run: async (_c, w, _f, _cfg, d) => (noMore(w, 0, 'leases'), agent(d, 'leases')) },
  logs: LOGS_COMMAND,
  'broker-config': BROKER_CONFIG_COMMAND,
  dashboard: DASHBOARD_COMMAND,
  ...PAIR_COMMANDS,
  ...MIGRATE_COMMANDS,
  ...FLEET_COMMANDS,
  ...BUNDLE_COMMANDS,
  ...SERVICE_COMMANDS,
  shutdown: { usage: 'shutdown', summary: 'stop the agent (apps are checkpointed and resume at the next start)', flags: [], run: async (_c, w, _f, _cfg, d) => (noMore(w, 0, 'shutdown'), agent(d, 'shutdown')) },
};

function instanceCommand(name: string, summary: string): Command {
  const usage = `${name} <instance>`;
  return {
    usage,
    summary,
    flags: [],
    async run(_c, w, _f, _cfg, d) {
      const instance = need(w, 0, 'instance', usage);
      noMore(w, 1, usage);
      return agent(d, name, { instance });
    },
  };
}

/** One command's help: its usage, what it does, the flags it takes. */
function commandHelp(name: string, c: Command): string {
  const common = ['--data <dir>', '--config <file>', '--json'];
  return [`usage: ferry ${c.usage}`, '', `  ${c.summary}`, '', `flags: ${[...c.flags.map((f) => `--${f}`), ...common].join(', ')}`, `(ferry help lists every command; this is ferry ${name})`].join('\n');
}

/** `ferry --version`: the package's version. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageDir(), 'package.json'), 'utf8')) as { version?: unknown };
  return `ferry ${String(pkg.version)}`;
}

export function helpText(): string {
  const width = Math.max(...Object.values(COMMANDS).map((c) => c.usage.length));
  return [
    'usage: ferry <command> [arguments] [--data <dir>] [--config <file>] [--json]   (ferry <command> --help, ferry --version)',
    '',
    ...Object.values(COMMANDS).map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`),
    '',
    'The data directory is --data, else $FERRY_DATA, else "data" in ferry.config.json, else ./ferry-data.',
  ].join('\n');
}

/** Runs one command line. */
export async function runCommand(parsed: ParsedArgs, say: (t: string) => void): Promise<CommandResult> {
  const [name, ...words] = parsed.positionals;
  if (parsed.flags.has('version') && name === undefined) return { result: packageVersion() };
  if (name === undefined || (name === 'help' && words.length === 0)) return { result: helpText() };
  // `ferry help <command>` and `ferry <command> --help`: that command's usage.
  const about = name === 'help' ? words[0]! : name;
  const cmd = Object.prototype.hasOwnProperty.call(COMMANDS, about) ? COMMANDS[about] : undefined;
  if (!cmd) throw new FerryError('CLI_USAGE', `unknown command ${JSON.stringify(about)} (ferry help lists them)`, { field: 'command' });
  if (name === 'help' || parsed.flags.has('help')) return { result: commandHelp(about, cmd) };
  const f = new Flags(parsed, name);
  f.allow(cmd.flags);
  const config = readConfig(f.str('config'));
  const dataDir = resolve(f.str('data') ?? process.env.FERRY_DATA ?? config.data ?? 'ferry-data');
  return cmd.run({ parsed, say }, words, f, config, dataDir);
}
