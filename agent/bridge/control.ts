import { FerryError } from '../../core/errors.js';
import type { ArgReader, ControlExtension } from '../runtime/control-server.js';
import type { Bridge } from './bridge.js';

/** The control commands the bridge adds (agent/runtime/DESIGN.md, "The control channel"). */
export const BRIDGE_COMMANDS = ['identity', 'pair', 'pair-confirm', 'pair-cancel', 'peers', 'unpair', 'peer-ping', 'migrate', 'migrate-watch', 'migrate-cancel', 'migrations', 'bundle-export', 'bundle-import', 'bundle-cancel'] as const;

/** The longest a `migrate-watch` long poll waits for news, ms. */
const WATCH_MAX_MS = 5000;

/**
 * The bridge's control commands, or, when the bridge could not start from its files
 * (IDENTITY_CORRUPT, PEERS_CORRUPT), the same commands each answering that error, so every
 * `ferry pair`/`peers` says why instead of "unknown command".
 */
export function bridgeControl(bridge: Bridge | FerryError): ControlExtension {
  if (bridge instanceof FerryError) {
    const fail = () => {
      throw bridge;
    };
    return { commands: Object.fromEntries(BRIDGE_COMMANDS.map((c) => [c, fail])), status: () => ({ bridge: bridge.toString() }) };
  }
  const b = bridge;
  const handoff = () => {
    if (!b.migrations) throw new FerryError('BRIDGE_CLOSED', 'this bridge runs without apps (no runtime): it neither sends nor takes moves', { field: 'bridge' });
    return b.migrations;
  };
  const bundles = () => {
    if (!b.bundles) throw new FerryError('BRIDGE_CLOSED', 'this bridge runs without apps (no runtime): it neither writes nor reads bundles', { field: 'bridge' });
    return b.bundles;
  };
  const commands: Record<(typeof BRIDGE_COMMANDS)[number], (a: ArgReader) => unknown> = {
    identity: () => ({ deviceId: b.options.deviceId, fingerprint: b.identity.fingerprint, deviceKey: b.identity.deviceKey.toString('base64url'), staticKey: b.identity.staticKey.publicKey.toString('base64url') }),
    pair: (a) => b.pair(a.str('peer'), a.optBool('accept') ?? false),
    'pair-confirm': (a) => {
      const yes = a.optBool('yes');
      if (yes === undefined) throw new FerryError('AGENT_BAD_REQUEST', 'args.yes must be a boolean (the owner said yes or no)', { field: 'args.yes' });
      return b.confirm(a.str('peer'), yes, a.optStr('code'));
    },
    'pair-cancel': (a) => b.pairing.cancel(a.str('peer'), a.optBool('refuse') ?? false),
    peers: (a) => b.peerList(a.optBool('check') ?? true),
    unpair: (a) => b.unpair(a.str('peer')),
    'peer-ping': (a) => b.ping(a.str('peer')),
    migrate: (a) => {
      const options = a.raw('options') ?? {};
      if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new FerryError('AGENT_BAD_REQUEST', 'args.options must be a map of migrate options', { field: 'args.options' });
      return handoff().start(a.str('instance'), a.str('peer'), options);
    },
    'migrate-watch': (a) => handoff().watch(a.str('id'), a.optNat('after', Number.MAX_SAFE_INTEGER) ?? 0, a.optNat('waitMs', WATCH_MAX_MS) ?? WATCH_MAX_MS),
    'migrate-cancel': (a) => handoff().cancel(a.str('instance')),
    migrations: () => handoff().list(),
    'bundle-export': (a) => bundles().export(a.str('instance'), a.str('file'), a.str('peer')),
    'bundle-import': (a) => bundles().import(a.str('file')),
    'bundle-cancel': (a) => bundles().cancel(a.str('instance'), a.optBool('force') ?? false, a.optNat('waitMs', 120_000)),
  };
  return { commands, status: () => b.status() };
}
