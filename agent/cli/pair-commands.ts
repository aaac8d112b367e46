import { createInterface } from 'node:readline';
import { FerryError, isFerryError } from '../../core/errors.js';
import { checkPairPeer } from '../bridge/pairing.js';
import { peersFor } from './fleet-commands.js';
import { agent, need, noMore, type Command } from './command.js';
import { controlRequest } from './control-client.js';

/** The CLI waits this long for an agent's pairing step; the agent's own timeout ends the attempt first. */
const PAIR_WAIT_MS = 11 * 60_000;

interface CodeView {
  peer: string;
  role: string;
  code: string;
  fingerprint: string;
  profile: string;
  label: string;
  repair: boolean;
}

/** Asks yes/no at the terminal; Ctrl-C or end of input is "no answer" (undefined). */
function ask(question: string): Promise<boolean | undefined> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    let answered = false;
    rl.on('SIGINT', () => rl.close());
    rl.on('close', () => {
      if (!answered) resolve(undefined);
    });
    rl.question(question, (a) => {
      answered = true;
      rl.close();
      resolve(/^y(es)?$/i.test(a.trim()));
    });
  });
}

/** `123456` → `123 456`, as both devices print it. */
const spaced = (code: string) => `${code.slice(0, 3)} ${code.slice(3)}`;

export const PAIR_COMMANDS: Record<string, Command> = {
  pair: {
    usage: 'pair <peer> | pair --accept <peer> | pair --cancel|--refuse <peer>  [--confirm <code>]',
    summary: 'pair with another device: both show a 6-digit code, confirm on both',
    flags: ['accept', 'confirm', 'cancel', 'refuse'],
    async run(ctx, w, f, _cfg, d) {
      const stop = f.str('cancel') ?? f.str('refuse');
      if (stop !== undefined) {
        noMore(w, 0, this.usage);
        if (f.str('cancel') !== undefined && f.str('refuse') !== undefined) throw new FerryError('CLI_USAGE', 'give --cancel or --refuse, not both', { field: '--refuse' });
        return agent(d, 'pair-cancel', { peer: stop, refuse: f.str('refuse') !== undefined });
      }
      const accepting = f.str('accept');
      const peer = accepting ?? need(w, 0, 'peer', this.usage);
      noMore(w, accepting !== undefined ? 0 : 1, this.usage);
      const code = f.str('confirm');
      if (code !== undefined && !/^\d{3} ?\d{3}$/.test(code)) throw new FerryError('CLI_USAGE', `--confirm takes the 6-digit code the other device shows, got ${JSON.stringify(code)}`, { field: '--confirm' });
      const me = (await controlRequest(d, 'identity')) as { deviceId: string; fingerprint: string };
      // Checked before the line below: a bad peer is one line of error, not an instruction then an error.
      checkPairPeer(peer, me.deviceId);
      if (accepting === undefined) ctx.say(`asking ${peer} to pair; on ${peer} run: ferry pair --accept ${me.deviceId}`);
      const view = (await controlRequest(d, 'pair', { peer, accept: accepting !== undefined }, PAIR_WAIT_MS)) as CodeView;
      ctx.say(
        [
          `${view.repair ? 're-pairing' : 'pairing'} ${me.deviceId} (fingerprint ${me.fingerprint}) with ${view.peer} "${view.label}" (${view.profile}, fingerprint ${view.fingerprint})`,
          `code: ${spaced(view.code)}   (the other device must show the same code)`,
        ].join('\n'),
      );
      let yes: boolean;
      if (code !== undefined) yes = true;
      else if (process.stdin.isTTY) {
        const a = await ask(`Does ${view.peer} show ${spaced(view.code)}? [y/N] `);
        if (a === undefined) {
          await controlRequest(d, 'pair-cancel', { peer }).catch(() => undefined);
          throw new FerryError('PAIR_CANCELLED', `pairing with ${peer} cancelled here; nothing was stored`, { field: 'peer' });
        }
        yes = a;
      } else {
        // A script: the attempt waits in the agent (until its timeout) for a second call with the code.
        return { result: { peer: view.peer, code: view.code, fingerprint: view.fingerprint, next: `ferry pair ${accepting !== undefined ? `--accept ${peer}` : peer} --confirm <code shown on ${peer}>` } };
      }
      if (yes) ctx.say(`waiting for the owner of ${peer} to confirm...`);
      try {
        return await agent(d, 'pair-confirm', { peer, yes, ...(code !== undefined ? { code: code.replace(' ', '') } : {}) }, PAIR_WAIT_MS);
      } catch (e) {
        // "no" at the prompt is the owner's refusal: say it plainly.
        if (!yes && isFerryError(e, 'PAIR_REFUSED')) throw new FerryError('PAIR_REFUSED', `pairing with ${peer} refused here; nothing was stored`, { field: 'peer' });
        throw e;
      }
    },
  },
  peers: {
    usage: 'peers [--no-check] | peers --for <instance> [--refresh]',
    summary: 'paired devices (reachable now, last seen) and pairing requests waiting; --for: each as a destination for an instance (fits or why not, bytes it would need, rank)',
    flags: ['no-check', 'for', 'refresh'],
    async run(c, w, f, _cfg, d) {
      noMore(w, 0, this.usage);
      const instance = f.str('for');
      if (instance !== undefined) return peersFor(instance, f.bool('refresh'), c.parsed.flags.has('json'), d);
      return agent(d, 'peers', { check: !f.bool('no-check') });
    },
  },
  unpair: {
    usage: 'unpair <peer>',
    summary: "forget a paired device (it is told when reachable; its channel is refused at once)",
    flags: [],
    async run(_c, w, _f, _cfg, d) {
      const peer = need(w, 0, 'peer', this.usage);
      noMore(w, 1, this.usage);
      return agent(d, 'unpair', { peer });
    },
  },
};
