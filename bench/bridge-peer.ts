/**
 * The receiving device of bench/bridge.ts's throughput rounds, in a process of its own: in Ferry
 * the two ends of a transfer are two devices, and in one process the receiver's AEAD, copies and
 * garbage collections would add to the sender's (bench/lib/bench-process.ts says the same of the
 * latency benchmarks). Driven over IPC:
 *   parent → { start: { url, id, root } }          child → { ready: true }
 *   parent → { op: 'accept', peer }                 child → { code }   (once the request is in)
 *   parent → { op: 'confirm', peer, code }          child → { ok: true }
 *   parent → { op: 'cpu' }                          child → { cpuUs }  (user + system so far)
 *   parent → { op: 'close' }                        child exits
 * It receives plain transfers (a BulkReceiver on its bus) and sealed ones (its Bridge).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BulkReceiver } from '../transports/bulk-transfer.js';
import { startDevice, type Device } from './bridge-setup.js';

type ToPeer = { start: { url: string; id: string; root: string; maxBytes: number } } | { op: 'accept'; peer: string } | { op: 'confirm'; peer: string; code: string } | { op: 'cpu' } | { op: 'close' };
type FromPeer = { ready: true } | { code: string } | { ok: true } | { cpuUs: number } | { error: string };

/** The parent's handle on the peer process. */
export interface BenchPeer {
  id: string;
  ask(m: ToPeer): Promise<FromPeer>;
  close(): Promise<void>;
}

/** Forks the peer (with the parent's Node flags, so tsx loads it) and waits until its device is up. */
export async function startBenchPeer(url: string, id: string, root: string, maxBytes: number): Promise<BenchPeer> {
  const child = fork(fileURLToPath(import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // One question at a time: each answer is the next message.
  let chain: Promise<unknown> = Promise.resolve();
  const ask = (m: ToPeer): Promise<FromPeer> => {
    const next = chain.then(
      () =>
        new Promise<FromPeer>((resolve, reject) => {
          const onExit = () => reject(new Error('bench peer exited'));
          child.once('exit', onExit);
          child.once('message', (a: FromPeer) => {
            child.off('exit', onExit);
            if ('error' in a) reject(new Error(`bench peer: ${a.error}`));
            else resolve(a);
          });
          child.send(m);
        }),
    );
    chain = next.catch(() => undefined);
    return next;
  };
  await ask({ start: { url, id, root, maxBytes } });
  return {
    id,
    ask,
    async close() {
      if (child.connected) child.send({ op: 'close' } satisfies ToPeer);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

async function serve(): Promise<void> {
  let device: Device | undefined;
  let receiver: BulkReceiver | undefined;
  const incoming = new Set<string>();
  const reply = (m: FromPeer) => process.send!(m);
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m: ToPeer) => {
    void (async () => {
      try {
        if ('start' in m) {
          device = await startDevice(m.start.url, m.start.id, m.start.root);
          device.events.on('pair.incoming', (f: { peer?: unknown }) => incoming.add(String(f.peer)));
          receiver = await BulkReceiver.start(device.bus, () => undefined, { maxTransferBytes: m.start.maxBytes });
          return reply({ ready: true });
        }
        if (m.op === 'accept') {
          while (!incoming.has(m.peer)) await new Promise((r) => setTimeout(r, 5));
          incoming.delete(m.peer);
          return reply({ code: (await device!.bridge.pair(m.peer, true)).code });
        }
        if (m.op === 'confirm') {
          await device!.bridge.confirm(m.peer, true, m.code);
          return reply({ ok: true });
        }
        if (m.op === 'cpu') {
          const c = process.cpuUsage();
          return reply({ cpuUs: c.user + c.system });
        }
        await receiver?.stop();
        await device?.close();
        process.exit(0);
      } catch (e) {
        reply({ error: e instanceof Error ? e.message : String(e) });
      }
    })();
  });
}

if (process.send !== undefined && process.argv[1] === fileURLToPath(import.meta.url)) void serve();
