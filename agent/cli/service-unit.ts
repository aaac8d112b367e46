import { posix } from 'node:path';
import { FerryError } from '../../core/errors.js';
import { AGENT_NODE_FLAGS } from '../runtime/sandbox.js';

/** The systemd unit and the starter config `ferry service install` writes (agent/cli/DESIGN.md, "The systemd service"). */

/** The unit's file name, in `/etc/systemd/system/`. */
export const UNIT_NAME = 'ferry.service';
/** The line that marks a unit file as ours: install rewrites only such a file, uninstall removes only such a file. */
export const UNIT_MARK = 'Written by `ferry service install`';

export const SERVICE_DEFAULTS = { user: 'ferry', dataDir: '/var/lib/ferry', configDir: '/etc/ferry' } as const;

/** What the unit is made from. */
export interface ServiceSettings {
  user: string;
  /** The agent's data directory, absolute. */
  dataDir: string;
  /** Folder of `ferry.config.json`, absolute. */
  configDir: string;
  /** The command that runs the agent's Node: the installing command's `process.execPath`, or its FERRY_NODE (agent/runtime/node-command.ts). */
  execPath: string;
  /** This installed command's `main.js`. */
  mainJs: string;
  /** The package version, for the unit's header. */
  version: string;
}


/** `path` below `/var/lib/` or `/etc/`: the relative name systemd's StateDirectory=/ConfigurationDirectory= take. */
export function below(base: string, path: string): string | undefined {
  return path.startsWith(`${base}/`) && path.length > base.length + 1 ? path.slice(base.length + 1) : undefined;
}

/** One ExecStart word: bare when plain, else double-quoted; `%` and `$` escaped for systemd. */
function execWord(s: string): string {
  if (/[\n\r]/.test(s)) throw new FerryError('SERVICE_INSTALL_FAILED', `${JSON.stringify(s)} holds a line break; a systemd unit cannot run it`, { field: 'ExecStart' });
  const q = /^[A-Za-z0-9._/+@:=,-]+$/.test(s) ? s : `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  return q.replace(/%/g, '%%').replace(/\$/g, '$$$$');
}

/** The unit file's text. Every setting is explained in a comment above it (systemd takes comments only on lines of their own). */
export function serviceUnit(s: ServiceSettings): string {
  const configFile = posix.join(s.configDir, 'ferry.config.json');
  const state = below('/var/lib', s.dataDir);
  const conf = below('/etc', s.configDir);
  // Node gets the agent's flags here, so the agent is the unit's main and only process (no wrapper re-running Node).
  const exec = [s.execPath, ...AGENT_NODE_FLAGS, s.mainJs, 'start', '--config', configFile].map(execWord).join(' ');
  return [
    `# The Ferry edge agent as a systemd service. ${UNIT_MARK} (ferry ${s.version}):`,
    '# running it again rewrites this file, so change settings with `systemctl edit ferry`',
    '# (a drop-in, which survives that). Each setting is explained above it.',
    '',
    '[Unit]',
    'Description=Ferry edge agent',
    '# An external broker may be on the network (the embedded one needs only loopback).',
    'Wants=network-online.target',
    'After=network-online.target',
    '# Restart=on-failure gives up after 5 starts within 120 s (a bad config fails every start):',
    '# fix the cause, then `systemctl reset-failed ferry` and `systemctl start ferry`.',
    'StartLimitIntervalSec=120',
    'StartLimitBurst=5',
    '',
    '[Service]',
    '# Type=exec: started once Node is executed (a missing node fails the start). Not Type=notify:',
    "# Node cannot send sd_notify's datagram itself, and `systemd-notify --ready` run by the agent",
    '# would need NotifyAccess=all and a start timeout longer than the slowest recovery of every',
    '# heap. Nothing is ordered after this unit; `ferry status` answers once the agent is up.',
    'Type=exec',
    "# Node with the agent's flags (the words of main.js's #! line): the agent is the unit's only",
    '# process (no wrapper re-running Node), so every signal systemd sends reaches it once.',
    `ExecStart=${exec}`,
    '# JSON log lines (stdout) and the banner (stderr) go to the journal: journalctl -u ferry',
    'SyslogIdentifier=ferry',
    '# A system user of its own, without a login (useradd --system); it owns the data directory.',
    `User=${s.user}`,
    `Group=${s.user}`,
    ...(state !== undefined
      ? [`# ${s.dataDir}, made before each start if missing, owned by User=, mode 0750.`, `StateDirectory=${state}`, 'StateDirectoryMode=0750']
      : [`# ${s.dataDir} is made by the operator (install -d -o ${s.user} -g ${s.user} -m 0750 ${s.dataDir}).`]),
    ...(conf !== undefined ? [`# ${s.configDir}, made if missing: root's, read-only to the service.`, `ConfigurationDirectory=${conf}`] : []),
    '# New files, and the control socket <data>/ferry.sock, are the user\'s alone (its group may read).',
    'UMask=0027',
    '# A crash (a non-zero exit, a signal, the OOM killer) restarts the agent 5 s later; a stop by',
    '# `ferry shutdown` (exit 0) does not.',
    'Restart=on-failure',
    'RestartSec=5s',
    '# Stop: SIGTERM to every process of the unit at once (control-group, the default); the agent',
    '# checkpoints every running app, one synced commit each, and exits 0. Past TimeoutStopSec the',
    '# rest get SIGKILL: the store is crash-safe, so the next start resumes from the last committed',
    '# checkpoint either way, only later calls are lost.',
    'KillMode=control-group',
    'KillSignal=SIGTERM',
    'TimeoutStopSec=120s',
    '',
    "# Hardening (`systemd-analyze security ferry` rates it), chosen to leave Node, V8's JIT and",
    '# better-sqlite3 working.',
    '# The agent, and anything it runs, never gains privileges (setuid files, file capabilities).',
    'NoNewPrivileges=yes',
    '# No capabilities: it binds no port below 1024 and touches only files it owns.',
    'CapabilityBoundingSet=',
    '# The whole file system read-only, but the data directory.',
    'ProtectSystem=strict',
    `ReadWritePaths=${s.dataDir}`,
    '# /home, /root and /run/user are invisible: keep app modules to install elsewhere (/opt, /usr/local/share).',
    'ProtectHome=yes',
    "# A private /tmp and /var/tmp (SQLite's temporary files), emptied at each stop.",
    'PrivateTmp=yes',
    '# A /dev of pseudo devices only (null, zero, urandom, ...): a sensor read through /dev/i2c-* or',
    '# /dev/gpiomem needs a drop-in with DeviceAllow= and PrivateDevices=no.',
    'PrivateDevices=yes',
    '# No writes to /proc/sys or /sys, no kernel modules, kernel log, cgroup tree, clock or host name.',
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    "# Other users' processes are hidden in /proc.",
    'ProtectProc=invisible',
    '# Sockets: Unix (the control socket), IPv4 and IPv6 (MQTT), netlink (name resolution lists interfaces).',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    '# No namespaces, real-time scheduling, setuid/setgid files, personality changes, or SysV IPC left behind.',
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'RemoveIPC=yes',
    '# Native system calls only (no compat ABI).',
    'SystemCallArchitectures=native',
    "# Left out on purpose: MemoryDenyWriteExecute=yes (V8's JIT makes written memory executable: Node",
    '# aborts); SystemCallFilter= (a call left out kills the agent with SIGSYS, and V8, libuv and',
    "# better-sqlite3 were not checked against a list); ProcSubset=pid (hides /proc/cpuinfo and",
    "# /proc/meminfo, which V8 and Node's os module read).",
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** The hardware profile for a device-tree model string (`/proc/device-tree/model`), if it is a Raspberry Pi Ferry knows. */
export function profileForModel(model: string): string | undefined {
  if (/Raspberry Pi 5|Raspberry Pi Compute Module 5|Raspberry Pi 500/.test(model)) return 'rpi-5';
  if (/Raspberry Pi 4|Raspberry Pi Compute Module 4|Raspberry Pi 400/.test(model)) return 'rpi-4b';
  if (/Raspberry Pi Zero 2/.test(model)) return 'rpi-zero-2w';
  return undefined;
}

/** The starter `ferry.config.json`: no secrets, only where the data goes and the profile. */
export function starterConfig(dataDir: string, profile: string): string {
  return `${JSON.stringify({ data: dataDir, profile, logLevel: 'info' }, null, 2)}\n`;
}
