import { closeSync, existsSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FerryError, isFerryError } from '../../core/errors.js';
import { syncDirectory } from '../runtime/registry.js';
import { nodeCommand } from '../runtime/node-command.js';
import type { Flags } from './args.js';
import { noMore, type Command } from './command.js';
import { packageDir } from './package-dir.js';
import { below, profileForModel, SERVICE_DEFAULTS, serviceUnit, starterConfig, UNIT_MARK, UNIT_NAME, type ServiceSettings } from './service-unit.js';

export { profileForModel, UNIT_MARK } from './service-unit.js';

/**
 * `ferry service install|uninstall`: the systemd unit that runs the agent as a service on a
 * board (agent/cli/DESIGN.md, "The systemd service"), and a starter config. It writes files
 * only; the commands that change the running system (useradd, systemctl) are printed for the
 * operator. `--root <dir>` writes into a system image (and the tests' temporary folders).
 */

const USAGE = 'service install|uninstall [--user <name>] [--data <dir>] [--config-dir <dir>] [--root <dir>] [--dry-run]';

/** This installed command's `main.js` (from `dist/`; from the sources, the built one beside them). */
function installedMain(): string {
  const here = fileURLToPath(new URL('./main.js', import.meta.url));
  const main = existsSync(here) ? here : join(packageDir(), 'dist', 'agent', 'cli', 'main.js');
  if (!existsSync(main)) throw new FerryError('SERVICE_INSTALL_FAILED', `${main} does not exist: build the command first (npm run build)`, { field: 'ExecStart' });
  return realpathSync(main);
}

function packageVersion(): string {
  try {
    return String((JSON.parse(readFileSync(join(packageDir(), 'package.json'), 'utf8')) as { version?: unknown }).version);
  } catch {
    return 'unknown';
  }
}

/** Folders a service cannot use for its data or config: hidden by ProtectHome/PrivateTmp, or not kept across a reboot. */
const UNUSABLE: Array<[string, string]> = [
  ['/home', 'ProtectHome= hides it from the service'],
  ['/root', 'ProtectHome= hides it from the service'],
  ['/run', 'it is emptied at every boot (and /run/user is hidden by ProtectHome=)'],
  ['/tmp', "the service has a private /tmp (PrivateTmp=), emptied at every stop"],
  ['/var/tmp', "the service has a private /var/tmp (PrivateTmp=), emptied at every stop"],
  ['/proc', 'it is not a place for files'],
  ['/sys', 'it is not a place for files'],
  ['/dev', 'it is not a place for files'],
];

const inside = (dir: string, path: string) => path === dir || path.startsWith(`${dir}/`);

/** A folder flag of the service: absolute, plain characters (it goes into the unit), not one a service cannot use. */
function serviceDir(f: Flags, flag: string, fallback: string): string {
  const v = f.str(flag);
  if (v === undefined) return fallback;
  const bad = (why: string) => new FerryError('CLI_USAGE', `--${flag} ${JSON.stringify(v)}: ${why}; usage: ferry ${USAGE}`, { field: `--${flag}` });
  if (!v.startsWith('/')) throw bad('must be an absolute path (it is the path on the system the service runs on)');
  if (!/^[A-Za-z0-9._/+@-]+$/.test(v)) throw bad('may hold only letters, digits and . _ / + @ - (it is written into the unit file)');
  if (v.split('/').includes('..')) throw bad('must not hold ".."');
  const p = posix.normalize(v).replace(/\/+$/, '');
  if (p === '') throw bad('must not be /');
  for (const [dir, why] of UNUSABLE) if (inside(dir, p)) throw bad(`a service cannot keep files there: ${why}`);
  return p;
}

function serviceUser(f: Flags): string {
  const v = f.str('user');
  if (v === undefined) return SERVICE_DEFAULTS.user;
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(v) || v === 'root') {
    throw new FerryError('CLI_USAGE', `--user ${JSON.stringify(v)}: must be a system user name (lower-case letters, digits, _ and -, at most 32, not root); usage: ferry ${USAGE}`, { field: '--user' });
  }
  return v;
}

/** The folder the files go under: `--root`, else `/`; it must exist. */
function rootDir(f: Flags): string {
  const v = f.str('root');
  if (v === undefined) return '/';
  const r = posix.resolve(v);
  let dir = false;
  try {
    dir = statSync(r).isDirectory();
  } catch {
    // reported below
  }
  if (!dir) throw new FerryError('CLI_USAGE', `--root ${JSON.stringify(v)} is not an existing folder; usage: ferry ${USAGE}`, { field: '--root' });
  return r;
}

/** A path on the target system, as a file under `root`. */
const under = (root: string, p: string) => (root === '/' ? p : join(root, p));

/** A file system error as SERVICE_INSTALL_FAILED naming the file (not root: says to run it as root). */
function fileError(e: unknown, path: string, doing: string): FerryError {
  if (isFerryError(e)) return e;
  const code = (e as NodeJS.ErrnoException).code ?? 'error';
  const hint = code === 'EACCES' || code === 'EPERM' ? ' (run it as root: sudo ferry service ...)' : code === 'EROFS' ? ' (a read-only file system)' : '';
  return new FerryError('SERVICE_INSTALL_FAILED', `cannot ${doing} ${path}: ${code}${hint}`, { field: path }, { cause: e });
}

/** Writes a file whole or not at all: a temporary file, synced, renamed over it (or, `exclusive`, linked: never over an existing one). */
function writeFileDurably(path: string, content: string, exclusive: boolean): boolean {
  const tmp = `${path}.ferry-tmp-${process.pid}`;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    let written = true;
    if (exclusive) {
      try {
        linkSync(tmp, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        written = false;
      }
      unlinkSync(tmp);
    } else {
      renameSync(tmp, path);
    }
    syncDirectory(dirname(path));
    return written;
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // not there
    }
    throw fileError(e, path, 'write');
  }
}

function readIfThere(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileError(e, path, 'read');
  }
}

function userExists(root: string, user: string): boolean {
  try {
    return readFileSync(under(root, '/etc/passwd'), 'utf8')
      .split('\n')
      .some((l) => l.startsWith(`${user}:`));
  } catch {
    return false;
  }
}

/** The Raspberry Pi model of this machine, if it is one (only when installing into `/`: an image is for another board). */
function detectedProfile(root: string): string | undefined {
  if (root !== '/') return undefined;
  for (const p of ['/proc/device-tree/model', '/sys/firmware/devicetree/base/model']) {
    try {
      return profileForModel(readFileSync(p, 'utf8').replace(/\0/g, ''));
    } catch {
      // not a device-tree board
    }
  }
  return undefined;
}

/** A file the command wrote, kept, or removed (or, with --dry-run, would). */
interface FileAction {
  file: string;
  path: string;
  action: 'written' | 'replaced' | 'unchanged' | 'kept' | 'removed' | 'absent';
  content?: string;
}

interface ServiceResult {
  command: 'install' | 'uninstall';
  dryRun: boolean;
  root: string;
  files: FileAction[];
  user: string;
  dataDir?: string;
  configFile?: string;
  profile?: string;
  warnings: string[];
  next: string[];
}

/** Paths where a service's Node or ferry cannot be run from (ProtectHome=, PrivateTmp=). */
function unreachable(path: string): string | undefined {
  const hidden = ['/home', '/root', '/run/user', '/tmp', '/var/tmp'].find((d) => inside(d, path));
  return hidden === undefined ? undefined : `${path} is under ${hidden}, which the service cannot see (ProtectHome=, PrivateTmp=): install Node and ferry system-wide (sudo npm install -g ferry-<version>.tgz)`;
}

function install(f: Flags, root: string, dryRun: boolean): ServiceResult {
  const user = serviceUser(f);
  const dataDir = serviceDir(f, 'data', SERVICE_DEFAULTS.dataDir);
  const configDir = serviceDir(f, 'config-dir', SERVICE_DEFAULTS.configDir);
  const settings: ServiceSettings = { user, dataDir, configDir, execPath: nodeCommand(), mainJs: installedMain(), version: packageVersion() };
  if (root === '/' && !dryRun && process.getuid?.() !== 0) {
    throw new FerryError('SERVICE_INSTALL_FAILED', `ferry service install writes /etc/systemd/system/${UNIT_NAME} and ${configDir}/ferry.config.json: run it as root (sudo ferry service install), or give --root <dir> to write into a system image`, { field: '--root' });
  }
  // A Node or ferry the service cannot see: an error when installing here, a warning for an image or a dry run.
  const warnings: string[] = [];
  for (const p of [settings.execPath, settings.mainJs]) {
    const why = unreachable(p);
    if (why === undefined) continue;
    if (root === '/' && !dryRun) throw new FerryError('SERVICE_INSTALL_FAILED', why, { field: 'ExecStart' });
    warnings.push(why);
  }
  const unitPath = under(root, posix.join('/etc/systemd/system', UNIT_NAME));
  const configFile = posix.join(configDir, 'ferry.config.json');
  const configPath = under(root, configFile);
  const unit = serviceUnit(settings);
  const oldUnit = readIfThere(unitPath);
  if (oldUnit !== undefined && !oldUnit.includes(UNIT_MARK)) {
    throw new FerryError('SERVICE_INSTALL_FAILED', `${unitPath} exists and was not written by ferry service install; move it away (or keep it and change it with systemctl edit ferry)`, { field: unitPath });
  }
  const profile = detectedProfile(root) ?? 'rpi-4b';
  const config = starterConfig(dataDir, profile);
  const configThere = existsSync(configPath);
  // The config first: a unit whose --config is missing would fail every start.
  let configAction: FileAction['action'] = configThere ? 'kept' : 'written';
  if (!dryRun && !configThere && !writeFileDurably(configPath, config, true)) configAction = 'kept';
  const unitAction: FileAction['action'] = oldUnit === undefined ? 'written' : oldUnit === unit ? 'unchanged' : 'replaced';
  if (!dryRun && unitAction !== 'unchanged') writeFileDurably(unitPath, unit, false);

  const sudo = 'sudo ';
  const live = root === '/';
  const next: string[] = [];
  if (!userExists(root, user)) {
    next.push(`${sudo}useradd${live ? '' : ` --root ${root}`} --system --user-group --home-dir ${dataDir} --no-create-home --shell /usr/sbin/nologin ${user}`);
  }
  if (below('/var/lib', dataDir) === undefined) next.push(`${sudo}${live ? '' : `chroot ${root} `}install -d -o ${user} -g ${user} -m 0750 ${dataDir}`);
  if (live) {
    next.push(`${sudo}systemctl daemon-reload`, `${sudo}systemctl enable --now ferry`, `${sudo}journalctl -u ferry -f`, `${sudo}-u ${user} ferry status --data ${dataDir}`);
  } else {
    next.push(`${sudo}systemctl --root=${root} enable ferry`);
  }
  return {
    command: 'install',
    dryRun,
    root,
    files: [
      { file: 'config', path: configPath, action: configAction, ...(dryRun && configAction === 'written' ? { content: config } : {}) },
      { file: 'unit', path: unitPath, action: unitAction, ...(dryRun && unitAction !== 'unchanged' ? { content: unit } : {}) },
    ],
    user,
    dataDir,
    configFile,
    profile: configAction === 'written' ? profile : readProfile(configPath),
    warnings,
    next,
  };
}

/** The profile an existing config names, for the report (undefined if it names none or is unreadable). */
function readProfile(path: string): string | undefined {
  try {
    const p = (JSON.parse(readFileSync(path, 'utf8')) as { profile?: unknown }).profile;
    return typeof p === 'string' ? p : undefined;
  } catch {
    return undefined;
  }
}

function uninstall(f: Flags, root: string, dryRun: boolean): ServiceResult {
  for (const flag of ['user', 'data', 'config-dir']) {
    if (f.str(flag) !== undefined) throw new FerryError('CLI_USAGE', `ferry service uninstall takes no --${flag} (it reads them from the unit; it takes --root and --dry-run)`, { field: `--${flag}` });
  }
  if (root === '/' && !dryRun && process.getuid?.() !== 0) {
    throw new FerryError('SERVICE_INSTALL_FAILED', `ferry service uninstall removes /etc/systemd/system/${UNIT_NAME}: run it as root (sudo ferry service uninstall)`, { field: '--root' });
  }
  const unitDir = under(root, '/etc/systemd/system');
  const unitPath = join(unitDir, UNIT_NAME);
  const unit = readIfThere(unitPath);
  if (unit !== undefined && !unit.includes(UNIT_MARK)) {
    throw new FerryError('SERVICE_INSTALL_FAILED', `${unitPath} was not written by ferry service install; it is left as it is`, { field: unitPath });
  }
  const setting = (key: string) => unit?.split('\n').find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1);
  const files: FileAction[] = [];
  // What `systemctl disable` removes: the links that enable the unit.
  let wants: string[] = [];
  try {
    wants = readdirSync(unitDir)
      .filter((d) => d.endsWith('.wants'))
      .map((d) => join(unitDir, d, UNIT_NAME))
      .filter((p) => {
        try {
          return lstatSync(p).isSymbolicLink();
        } catch {
          return false;
        }
      });
  } catch {
    // no unit folder: nothing enabled
  }
  for (const p of [...wants, unitPath]) {
    if (p === unitPath && unit === undefined) {
      files.push({ file: 'unit', path: p, action: 'absent' });
      continue;
    }
    if (!dryRun) {
      try {
        unlinkSync(p);
      } catch (e) {
        throw fileError(e, p, 'remove');
      }
    }
    files.push({ file: p === unitPath ? 'unit' : 'enable link', path: p, action: 'removed' });
  }
  const dataDir = setting('ReadWritePaths');
  const configFile = /--config (\S+)$/.exec(setting('ExecStart') ?? '')?.[1];
  if (configFile !== undefined) files.push({ file: 'config', path: under(root, configFile), action: 'kept' });
  const next = unit === undefined ? [] : root === '/' ? ['sudo systemctl stop ferry', 'sudo systemctl daemon-reload'] : [];
  return {
    command: 'uninstall',
    dryRun,
    root,
    files,
    user: setting('User') ?? SERVICE_DEFAULTS.user,
    ...(dataDir !== undefined ? { dataDir } : {}),
    ...(configFile !== undefined ? { configFile } : {}),
    warnings: [],
    next,
  };
}

/** The report for people: what was (or would be) written, then the commands to run. */
function human(r: ServiceResult): string {
  const verb: Record<FileAction['action'], string> = r.dryRun
    ? { written: 'would write', replaced: 'would replace', unchanged: 'unchanged:', kept: 'would keep', removed: 'would remove', absent: 'not there:' }
    : { written: 'wrote', replaced: 'replaced', unchanged: 'unchanged:', kept: 'kept', removed: 'removed', absent: 'not there:' };
  const lines: string[] = [];
  for (const a of r.files) {
    let why = '';
    if (a.file === 'config' && a.action === 'kept') why = r.command === 'install' ? ' (it exists: never overwritten)' : `, the data${r.dataDir !== undefined ? ` in ${r.dataDir}` : ''} and the user ${r.user}`;
    else if (a.file === 'config' && r.profile !== undefined) why = ` (profile ${r.profile})`;
    lines.push(`${verb[a.action]} ${a.path}${why}${a.content !== undefined ? ':' : ''}`);
    if (a.content !== undefined) lines.push(...a.content.trimEnd().split('\n').map((l) => `    ${l}`));
  }
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  if (r.next.length > 0) lines.push(r.dryRun ? 'then:' : 'next:', ...r.next.map((c) => `  ${c}`));
  else if (r.command === 'uninstall' && r.files.every((a) => a.action === 'absent')) lines.push('nothing to remove');
  if (r.command === 'install' && r.root !== '/') lines.push(`(the service starts at the next boot of the system at ${r.root})`);
  return lines.join('\n');
}

export const SERVICE_COMMANDS: Record<string, Command> = {
  service: {
    usage: USAGE,
    summary: `write (or remove) the systemd unit that runs the agent as a service, and a starter ${SERVICE_DEFAULTS.configDir}/ferry.config.json`,
    flags: ['user', 'config-dir', 'root', 'dry-run'],
    async run(ctx, words, f) {
      const sub = words[0];
      if (sub !== 'install' && sub !== 'uninstall') {
        throw new FerryError('CLI_USAGE', `${sub === undefined ? 'missing subcommand' : `unknown subcommand ${JSON.stringify(sub)}`}; usage: ferry ${USAGE}`, { field: 'subcommand' });
      }
      noMore(words, 1, USAGE);
      if (f.str('config') !== undefined) throw new FerryError('CLI_USAGE', `ferry service takes --config-dir <dir> (the folder of ferry.config.json), not --config; usage: ferry ${USAGE}`, { field: '--config' });
      const root = rootDir(f);
      const dryRun = f.bool('dry-run');
      const r = sub === 'install' ? install(f, root, dryRun) : uninstall(f, root, dryRun);
      return { result: ctx.parsed.flags.has('json') ? r : human(r) };
    },
  },
};
