/**
 * Bad input to the pairing commands, against a real agent: each `ferry` command fails in one
 * line with its code, and each control request answers ok:false with a stable code and field;
 * the agent serves on and holds no attempt afterwards.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { BROKERS } from '../helpers/brokers.js';
import { devicePair, Device, rawControl } from './helpers.js';

/** [name, command words given the device and its peer, code, field]. */
const CLI_CASES: Array<[string, (self: string, peer: string) => string[], string, string]> = [
  ['pair without a peer', () => ['pair'], 'CLI_USAGE', 'peer'],
  ['pair with two peers', () => ['pair', 'a', 'b'], 'CLI_USAGE', 'arguments'],
  ['pair --accept with a positional too', (_s, p) => ['pair', '--accept', p, 'b'], 'CLI_USAGE', 'arguments'],
  ['a code that is not 6 digits', (_s, p) => ['pair', '--confirm', '12ab', p], 'CLI_USAGE', '--confirm'],
  ['--confirm with 5 digits', (_s, p) => ['pair', '--accept', p, '--confirm', '12345'], 'CLI_USAGE', '--confirm'],
  ['--cancel and --refuse at once', () => ['pair', '--cancel', 'x', '--refuse', 'y'], 'CLI_USAGE', '--refuse'],
  ['--cancel with a positional too', (_s, p) => ['pair', '--cancel', p, 'extra'], 'CLI_USAGE', 'arguments'],
  ['--accept with no value', () => ['pair', '--accept'], 'CLI_USAGE', '--accept'],
  ['an unknown flag', (_s, p) => ['pair', p, '--force'], 'CLI_USAGE', '--force'],
  ['pairing with itself', (s) => ['pair', s], 'BAD_OPTION', 'peer'],
  ['a malformed device id', () => ['pair', 'bad id!'], 'BAD_OPTION', 'peer'],
  ['accepting a request nobody sent', () => ['pair', '--accept', 'nobody'], 'PAIR_UNKNOWN', 'peer'],
  ['cancelling no attempt', () => ['pair', '--cancel', 'nobody'], 'PAIR_UNKNOWN', 'peer'],
  ['refusing no request', () => ['pair', '--refuse', 'nobody'], 'PAIR_UNKNOWN', 'peer'],
  ['confirming no attempt', (_s, p) => ['pair', '--accept', p, '--confirm', '123456'], 'PAIR_UNKNOWN', 'peer'],
  ['unpair without a peer', () => ['unpair'], 'CLI_USAGE', 'peer'],
  ['unpair with two peers', () => ['unpair', 'a', 'b'], 'CLI_USAGE', 'arguments'],
  ['unpairing a device never paired', () => ['unpair', 'nobody'], 'PEER_UNKNOWN', 'peer'],
  ['peers with an argument', () => ['peers', 'extra'], 'CLI_USAGE', 'arguments'],
  ['peers with an unknown flag', () => ['peers', '--ping'], 'CLI_USAGE', '--ping'],
];

/** [name, request args given the device and its peer, code, field]. */
const CONTROL_CASES: Array<[string, string, (self: string, peer: string) => unknown, string, string]> = [
  ['pair without a peer', 'pair', () => ({}), 'AGENT_BAD_REQUEST', 'args.peer'],
  ['pair with a number for peer', 'pair', () => ({ peer: 5 }), 'AGENT_BAD_REQUEST', 'args.peer'],
  ['pair with a string for accept', 'pair', (_s, p) => ({ peer: p, accept: 'yes' }), 'AGENT_BAD_REQUEST', 'args.accept'],
  ['pair with a malformed device id', 'pair', () => ({ peer: 'bad id!' }), 'BAD_OPTION', 'peer'],
  ['pair with itself', 'pair', (s) => ({ peer: s }), 'BAD_OPTION', 'peer'],
  ['pair-confirm without yes', 'pair-confirm', (_s, p) => ({ peer: p }), 'AGENT_BAD_REQUEST', 'args.yes'],
  ['pair-confirm with yes as a string', 'pair-confirm', (_s, p) => ({ peer: p, yes: 'true' }), 'AGENT_BAD_REQUEST', 'args.yes'],
  ['pair-confirm with code abc', 'pair-confirm', (_s, p) => ({ peer: p, yes: true, code: 'abc' }), 'BAD_OPTION', 'code'],
  ['pair-confirm with a number for code', 'pair-confirm', (_s, p) => ({ peer: p, yes: true, code: 123456 }), 'AGENT_BAD_REQUEST', 'args.code'],
  ['pair-confirm with no attempt', 'pair-confirm', (_s, p) => ({ peer: p, yes: true, code: '123456' }), 'PAIR_UNKNOWN', 'peer'],
  ['pair-cancel of an unknown peer', 'pair-cancel', () => ({ peer: 'nobody' }), 'PAIR_UNKNOWN', 'peer'],
  ['pair-cancel with a number for refuse', 'pair-cancel', (_s, p) => ({ peer: p, refuse: 1 }), 'AGENT_BAD_REQUEST', 'args.refuse'],
  ['peers with a string for check', 'peers', () => ({ check: 'no' }), 'AGENT_BAD_REQUEST', 'args.check'],
  ['unpair with an object for peer', 'unpair', () => ({ peer: {} }), 'AGENT_BAD_REQUEST', 'args.peer'],
  ['unpair of an unknown peer', 'unpair', () => ({ peer: 'nobody' }), 'PEER_UNKNOWN', 'peer'],
  ['peer-ping of an unknown peer', 'peer-ping', () => ({ peer: 'nobody' }), 'PEER_UNKNOWN', 'peer'],
  ['peer-ping of a device known but not paired', 'peer-ping', (_s, p) => ({ peer: p }), 'PEER_UNKNOWN', 'peer'],
  ['peer-ping without a peer', 'peer-ping', () => ({}), 'AGENT_BAD_REQUEST', 'args.peer'],
];

describe.each(BROKERS)('bad input to the pairing commands (%s)', (_name, startBroker) => {
  const set = devicePair(startBroker);
  let pi: Device;
  let phone: Device;
  beforeAll(() => {
    ({ pi, phone } = set);
  });

  it.each(CLI_CASES)('ferry: %s fails in one line with %s naming %s', async (_what, words, code, field) => {
    const args = words(pi.id, phone.id);
    const r = await pi.cli(args);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')).toEqual([expect.stringMatching(new RegExp(`^ferry: .+ \\[${code}\\]$`)), '']);
    const j = await pi.json(args);
    expect(j.code).toBe(1);
    expect(j.error).toMatchObject({ code, field });
  });

  it.each(CONTROL_CASES)('control: %s (%s) answers ok:false with %s naming %s', async (_what, cmd, args, code, field) => {
    const a = await rawControl(pi.dataDir, { id: 7, cmd, args: args(pi.id, phone.id) });
    expect(a).toMatchObject({ id: 7, ok: false, error: { code, field } });
    expect(a.ok === false && a.error.message.length > 0).toBe(true);
  });

  it('after all that the agents serve on, with no attempt, peer or warning line left behind', async () => {
    const status = await rawControl(pi.dataDir, { id: 1, cmd: 'status', args: {} });
    expect(status).toMatchObject({ id: 1, ok: true, result: { deviceId: pi.id, paired: 0, pairing: 0 } });
    for (const d of [pi, phone]) {
      const v = await d.peers();
      expect(v.paired).toEqual([]);
      expect(v.pending).toEqual([]);
    }
    expect(phone.logs.filter((l) => typeof l.event === 'string' && l.event.startsWith('pair.'))).toEqual([]);
    expect(pi.logs.filter((l) => l.level === 'error' || l.event === 'control.failed')).toEqual([]);
  });
});
