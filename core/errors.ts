/**
 * Ferry's one error family. Every error a caller can act on is a `FerryError`
 * with a stable `code` (part of the public API: never renamed, never reused)
 * and a message that names the offending field or object.
 */

/** Every stable code, with what it means. Parts add their codes here. */
export const ERROR_CODES = {
  // core: options and input shared by every part
  BAD_OPTION: 'an option passed to a constructor or function is missing, of the wrong type, or out of range',

  // hw-profiles
  PROFILE_UNKNOWN: 'no built-in hardware profile has that name',
  PROFILE_INVALID: 'a hardware profile (built-in or loaded from JSON) has a missing or out-of-range field',

  // store
  STORE_BAD_INPUT: 'a store call got a wrong argument: line id, line size, app id, hash',
  STORE_UNKNOWN_APP: 'the store holds no heap segment for that app',
  STORE_UNKNOWN_VERSION: 'the store holds no committed checkpoint with that version for that app',
  STORE_CORRUPT: 'bytes read back from the store do not match their checksum, or the store metadata is inconsistent',
  STORE_NO_SPACE: 'the device or the configured store size limit is full; the transaction was aborted',
  STORE_CLOSED: 'the store (or the transaction) was used after close',
  STORE_ABORTED: 'the transaction was aborted (explicitly, or by an I/O failure) and can no longer be used',
  STORE_BUSY: 'another write transaction is already open for that app',
  STORE_IO: 'an I/O call on the store files failed; the transaction was aborted and the previous version is intact',

  // transports
  BUS_CLOSED: 'the MQTT connection was closed; pending requests were rejected',
  BUS_TIMEOUT: 'no answer arrived within the request timeout',
  BUS_OFFLINE: 'the broker cannot be reached and the operation cannot be queued',
  ENVELOPE_MALFORMED: 'a message is not valid CBOR or lacks a required envelope field',
  ENVELOPE_VERSION: 'a message carries an envelope version this end does not speak',
  MESSAGE_TOO_LARGE: 'a message exceeds the configured maximum message size',
  BULK_FAILED: 'a chunked bulk transfer could not be completed (missing chunks, bad digest, or aborted)',
  REMOTE_ERROR: 'the other end answered a request with an error it did not classify',
  BUS_TLS: "the broker's TLS certificate failed verification (not signed by options.tls.ca, wrong name, expired; field options.tls.ca), or the broker refused this client's certificate or its lack of one (field options.tls.cert); the connection was refused",
  BUS_AUTH: 'the broker refused the connection (CONNACK: bad user name or password, or not authorized); the error names the option to check, never its value',
  BUS_QUEUE_FULL: 'the outgoing publish queue (flow control) is full; the publish was refused, retry later',
  BROKER_STORE_CORRUPT: "the embedded broker's store file (options.persistenceFile) is not a SQLite file, belongs to another application, has an unknown format version, or fails its integrity check; the broker did not start (it never starts empty in its place)",

  // agent/services
  SERVICE_NOT_FOUND: 'no live service matches the type and attributes asked for',
  LEASE_UNKNOWN: 'no lease with that id exists at the grantor',
  LEASE_DENIED: 'the grantor refused the lease (exclusive lease held, or duration not acceptable)',
  LEASE_EXPIRED: 'the lease expired before the operation',
  LEASE_NOT_HOLDER: 'only the holder of a lease may renew, cancel or hand it over',
  SPACE_NO_MATCH: 'no entry in the space matches the template',
  SPACE_NOT_FOUND: 'the device named by a space topic hosts no space of that name (field topic); it was refused, not left unanswered',
  LEASE_FENCED: "a request carried a fencing token lower than the newest one issued for the resource (a stale holder), or one that is not its lease's; the resource refused it (field body.fence)",
  // agent/heap
  HEAP_BAD_VALUE: 'a value cannot be stored in the heap (function, symbol, class instance, undefined in an array, reserved key); the error names its path',
  HEAP_VALUE_TOO_LARGE: 'one heap object (a string, bytes, or an object with its fields) would exceed the maximum object size',
  HEAP_FOREIGN_OBJECT: 'an object of another heap (another app) was assigned; copy it instead',
  HEAP_NO_MEMORY: 'the in-memory budget is full of lines that cannot leave (dirty lines while checkpoints fail, or pinned lines)',
  HEAP_FULL: 'the virtual heap has no free line left (profile virtualHeapBytes)',
  HEAP_CHECKPOINT_FAILED: 'a checkpoint could not be committed; the previous version stays current',
  HEAP_CLOSED: 'the heap (or an object read from it) was used after close, reload or rollback',
  HEAP_READ_ONLY: 'the heap was opened read-only (an older version) and cannot be changed',
  HEAP_CORRUPT: 'the heap metadata or an object record read from the store is inconsistent',
  HEAP_BAD_IMAGE: 'lines or objects handed to install/import are malformed or do not fit this heap',
  HEAP_BUSY: 'the operation cannot run now (a checkpoint during a collection, or a savepoint already open)',
  SERVICE_BAD_REQUEST: 'a discovery, lease, space or system-service request lacks a field or has one of the wrong type or range',

  // agent/runtime
  APP_BAD_MODULE: 'an app module cannot be loaded: a syntax error, an import, a throwing top level, or no default export',
  APP_BAD_DEFINITION: "an app's exported description lacks a field or has one of the wrong type or range; the error names the field",
  APP_UNKNOWN: 'no app (or app instance) with that name is installed on this agent',
  APP_NO_HANDLER: 'the app has no handler with that name',
  APP_HANDLER_FAILED: "an app's handler (or init, timer, hook) threw; its changes to the heap were rolled back",
  APP_TIMEOUT: "an app's handler ran past its CPU-time limit and was stopped; its changes to the heap were rolled back",
  APP_ASYNC_HANDLER: 'a handler returned a promise; handlers are synchronous transactions, so its changes were rolled back (an async handler is refused at install: APP_BAD_DEFINITION)',
  APP_UPGRADE_FAILED: "an instance's new code could not take over its heap (the module did not load, or onUpgrade failed); the instance runs the code and state it had before",
  APP_NOT_RUNNING: 'the app instance is suspended, stopped or being removed, so it cannot take the operation now',
  APP_EXISTS: 'an app instance with that name is already running, or an app of that name is being installed twice',
  APP_UNSUPPORTED: "the app's requirements name something this device's profile is not (its word size); it was not started here",
  AGENT_FULL: 'the device runs as many instances as its maxInstances allows; the new one was not started (stop or move one, or raise maxInstances)',
  APP_BAD_REQUEST: "a request in an app's mailbox is not an app.call envelope with a handler name; it was acknowledged and answered with this error",
  APP_ALREADY_APPLIED: "a request id the instance applied before came again after its recorded outcome was dropped (past rememberReplies newer ids) but within replayHorizonMs: it was not applied again, and this error stands in for the outcome",
  AGENT_UNREACHABLE: 'no agent answers on the data directory\'s control socket (not started, or started with another --data)',
  AGENT_RUNNING: 'another agent already runs on that data directory',
  AGENT_BAD_REQUEST: 'a control-channel request is malformed or names an unknown command; the error names the field',
  CONFIG_INVALID: 'ferry.config.json cannot be read, is not JSON, or has an unknown or out-of-range field',
  NODE_COMMAND_INVALID: 'the FERRY_NODE environment variable (the command that runs this Node, set by an emulator\'s wrapper) is not the absolute path of an executable file; nothing was started',
  CLI_USAGE: 'the ferry command was given an unknown command, a missing argument, or a bad flag',
  SERVICE_INSTALL_FAILED: "ferry service install or uninstall cannot do its work: not run as root for the system's own files, a file it cannot write or remove (the error names it), a ferry.service it did not write, or a node or ferry the service could not run (under /home, /root or /tmp)",

  // agent/dashboard
  DASHBOARD_AUTH: "a dashboard request came without a session or with a wrong access token (the one in the data directory's dashboard.token); nothing was shown or changed",
  DASHBOARD_CSRF: "a dashboard action came without the page's CSRF token, with a wrong one, or from another site (its Origin or Sec-Fetch-Site); nothing changed",
  DASHBOARD_BUSY: 'as many pages watch the dashboard live as dashboard.maxStreams allows; close one and reload',
  DASHBOARD_TOKEN_CORRUPT: "the data directory's dashboard.token cannot be read or is not a token (32..128 of A-Z a-z 0-9 _ -); the dashboard did not start (remove the file and a new token is made)",

  // agent/bridge
  IDENTITY_CORRUPT: "the device's identity key file is missing (while the device has a peer registry), unreadable, malformed, or not the identity its peers were paired with; no new identity was made",
  PEERS_CORRUPT: 'the paired-peer registry file cannot be read, fails its checksum, or holds a malformed record; it was not replaced by an empty list',
  PAIR_TIMEOUT: 'a pairing attempt got no answer from the peer (or its owner) within the pairing timeout; nothing was stored',
  PAIR_CANCELLED: 'a pairing attempt was cancelled on this device or the peer; nothing was stored',
  PAIR_REFUSED: "the owner (on this device or the peer) refused the pairing, or the codes did not match on the peer's side; nothing was stored",
  PAIR_CODE_MISMATCH: 'the code given with --confirm is not the code this device computed: a man in the middle, or a typo; the attempt ended and nothing was stored',
  PAIR_PROTOCOL: "a pairing message broke the protocol: wrong step, a revealed nonce that does not open the peer's commitment, a bad confirmation MAC, a malformed field; the attempt ended and nothing was stored",
  PAIR_UNKNOWN: 'no pairing attempt with that peer is in progress on this device (nothing to accept, confirm or cancel)',
  PAIR_BUSY: 'a pairing attempt with that peer is already in progress on this device',
  PEER_UNKNOWN: 'no paired peer has that device id',
  BRIDGE_NOT_PAIRED: 'bridge traffic came from (or was addressed to) a device that is not paired with this one, or was unpaired; it was refused and nothing was acted on',
  BRIDGE_HANDSHAKE_FAILED: 'the sealed-channel handshake failed: the peer does not hold the identity key this device paired with, or a handshake message was modified',
  BRIDGE_RECORD_REFUSED: 'a sealed record failed authentication (modified, truncated, or sealed under another session key); it was dropped and nothing was acted on',
  BRIDGE_REPLAY: 'a sealed record arrived with a counter already used (replayed) or out of order; it was dropped and nothing was acted on',
  BRIDGE_RECORD_LOST: 'a genuine sealed record arrived past the next counter: the records before it were lost on the way, so the session ended at both ends and the next message makes a new one',
  BRIDGE_FRAME_MALFORMED: 'a bridge frame is too large, too short, of an unknown version or kind, or names a malformed device id; it was dropped',
  BRIDGE_CLOSED: 'the sealed channel (or the bridge) was closed; the operation did not complete',

  // bridge: live handoff (agent/bridge/DESIGN.md, "Handoff")
  MIGRATE_NO_FIT: "the destination cannot run the instance: its heap budget is below the app's minHeapBytes, or a required service is missing there; nothing moved",
  MIGRATE_BUSY: 'the instance is already moving (or a move of it is undecided after a crash), or the agent is busy with another lifecycle command for it; nothing changed',
  MIGRATE_NO_CONVERGENCE: 'pre-copy rounds did not bring the expected downtime under the limit within the round or time limit (the app dirties its heap faster than the link carries it); the move was aborted and the origin serves on',
  MIGRATE_DOWNTIME_EXCEEDED: 'at the switch the final delta (or a late answer) would have broken the downtime limit; the move was aborted and the origin serves on',
  MIGRATE_ABORTED: 'the move was cancelled, or a step failed or timed out before the decision (the peer unreachable, its disk full); the origin serves on and the destination discarded what it received',
  MIGRATE_MOVED: 'the instance was handed off to a peer and runs there now; it cannot be run, resumed or changed here (move it back, or remove it)',
  MIGRATE_PROTOCOL: 'a handoff message is malformed, out of order, or names a move this device does not know; it was refused and nothing was acted on',
  MIGRATE_CROSS_SITE: 'the origin and the destination cannot tell whether they share a broker (one names a site and the other none, or the destination does not say), so the mailbox could neither be taken over nor forwarded safely; nothing moved (give every device its broker\'s --site)',

  // bridge: offline bundles (agent/bridge/DESIGN.md, "Offline bundles")
  BUNDLE_CORRUPT: 'a bundle file is not a Ferry bundle, is truncated, or has a malformed header, a bad length, a record that fails authentication or a missing end marker; nothing was stored',
  BUNDLE_FORGED: "a bundle's Ed25519 signature does not verify under its origin's paired device key (modified, or not made by that device); nothing was decrypted or stored",
  BUNDLE_NOT_FOR_US: 'a bundle was sealed for another device (or to a key of this device it no longer holds); nothing was stored',
  BUNDLE_TOO_LARGE: "a bundle file is larger than this device's maxBundleBytes; it was not read",
  BUNDLE_IMPORTED: 'the bundle was imported already (on this device, or on the peer a cancel asked): a second import, or a cancel after the import, is refused',
  BUNDLE_REVOKED: "the bundle was revoked by its origin (ferry bundle cancel) before it was imported here; it can never be imported",
  BUNDLE_PEER_UNREACHABLE: 'a bundle cancel could not reach the peer the bundle is for, so it cannot know whether it was imported there; nothing changed (--force takes the instance back anyway)',
  BUNDLE_UNKNOWN: 'no bundle of that instance is outstanding on this device (it was not exported in a bundle, or was taken back)',
  BUNDLE_NO_CODE: "a bundle does not carry its app's code and this device does not hold a module with that code hash; nothing was stored",

  // fleet: peer choice, plans and evacuation (agent/fleet/DESIGN.md)
  FLEET_SUMMARY_MALFORMED: "a peer's region summary (or its device figures) is malformed; it was refused and the summary held before it kept",
  FLEET_NO_CANDIDATE: 'no paired peer can take the instance (each candidate and why it does not fit is in the message); nothing moved',
  PLAN_INVALID: 'a plan file is not valid JSON of the documented schema (ferry.plan/1); the message names the field; nothing ran',

  // the device harness for tests and benches (test/harness/DESIGN.md)
  HARNESS_NO_CGROUPS: "the device harness cannot enforce a profile's CPU share or memory cap: no writable cgroup controller (the message says which and why, and how to run in a container that allows it)",
  HARNESS_NO_FIGURE: 'a profile lacks the figure the device harness needs to emulate it (cpu.singleCoreMips, ramBytes)',
  HARNESS_CALIBRATION: "the device harness could not calibrate the CPU share: the host's rating could not be measured, or the achieved speed stayed outside the tolerance",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The `details` an `error` answer carries on the wire (transports/PROTOCOL.md §4.1), by
 * code: only these keys, and only when the value is plain (a finite number, a string, a
 * boolean). Everything else in a FerryError's details stays on this device: it may name
 * files, topics or foreign input. Add a key here only if it can never be a secret.
 */
export const WIRE_DETAILS: { readonly [C in ErrorCode]?: readonly string[] } = {
  /** `retryAfterMs`: ms (from the answer) after which a grant may succeed; `minDurationMs`: the grantor's minimum term. */
  LEASE_DENIED: ['retryAfterMs', 'minDurationMs'],
  /** `ended`: `"cancelled"` when the lease was cancelled (not one the grantor never issued). */
  LEASE_UNKNOWN: ['ended'],
  /** `limit`: the largest size the receiver takes, bytes. */
  MESSAGE_TOO_LARGE: ['limit'],
};

export interface FerryErrorDetails {
  /** The option, field or path the error is about, e.g. `options.lineSize` or `root.notes[3]`. */
  field?: string;
  [key: string]: unknown;
}

export class FerryError extends Error {
  readonly code: ErrorCode;
  readonly details: FerryErrorDetails;

  constructor(code: ErrorCode, message: string, details: FerryErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FerryError';
    this.code = code;
    this.details = details;
  }

  /** A one-line form for logs and the CLI: `CODE: message`. */
  override toString(): string {
    return `${this.code}: ${this.message}`;
  }

  toJSON(): { code: ErrorCode; message: string; details: FerryErrorDetails } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export function isFerryError(e: unknown, code?: ErrorCode): e is FerryError {
  return e instanceof FerryError && (code === undefined || e.code === code);
}
