import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { appMailboxTopic, connectBus, decodeEnvelope, DurableSession, ENVELOPE_VERSION, inboxTopic } from '../../transports/index.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { Temp } from '../heap/graph.js';
import { until } from '../services/helpers.js';

const temp = new Temp();
const running: AgentProcess[] = [];
afterEach(async () => {
  for (const a of running.splice(0)) await a.kill();
  temp.cleanup();
});

const LEDGER = new URL('../runtime/fixtures/ledger.mjs', import.meta.url).pathname;

async function agentProcess(dataDir: string, args: string[]): Promise<AgentProcess> {
  const a = startAgentProcess(dataDir, args);
  running.push(a);
  await a.ready;
  return a;
}

/** A loopback port free now, so each agent of the test listens where the clients reconnect. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * The embedded broker runs inside the agent and dies with it. Its store (`<data>/broker.db`)
 * is what keeps the requests it acknowledged: with aedes's in-memory persistence the
 * restarted broker has no session for the instance, and step 1's requests never arrive.
 */
describe('the embedded broker across an agent SIGKILL', () => {
  it('requests acknowledged to their sender and queued for a suspended instance, or in flight to a running one, are applied once, in order, and answered', async () => {
    const dataDir = temp.dir('embedded-kill');
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const args = ['--port', String(port), '--log-level', 'warn'];
    let agent = await agentProcess(dataDir, args);
    await agent.control('install', { path: LEDGER });
    await agent.control('run', { app: 'ledger' });
    await agent.control('suspend', { instance: 'ledger' });

    // The requester's inbox is a persistent session at the same broker: answers wait there too.
    const me = `embedded-kill-${process.pid}`;
    const tag = `e${Date.now()}`;
    const answers = new Map<number, unknown[]>();
    const inbox = await DurableSession.connect({ url, clientId: me, filter: inboxTopic(me) }, (m) => {
      const env = decodeEnvelope(m.payload);
      if (env.corr?.startsWith(`${tag}-`)) {
        const i = Number(env.corr.slice(tag.length + 1));
        answers.set(i, [...(answers.get(i) ?? []), env.type === 'app.call.ok' ? env.body : env]);
      }
      m.ack();
    });
    const pub = await connectBus({ url, deviceId: `${me}-pub`, maxInFlight: 64 });
    // Resolves at the broker's PUBACK.
    const send = (i: number) =>
      pub.publishEnvelope(appMailboxTopic('ledger'), { v: ENVELOPE_VERSION, type: 'app.call', id: `${tag}-${i}`, from: me, replyTo: inboxTopic(me), ts: Date.now(), body: { handler: 'apply', message: { n: i } } });
    const answered = (to: number) => {
      for (let i = 0; i < to; i++) if (!answers.has(i)) return false;
      return true;
    };
    const QUEUED = 100;
    const TOTAL = 400;
    try {
      // 1. The instance is suspended: the broker acknowledges each request and queues it in the instance's session.
      for (let i = 0; i < QUEUED; i++) await send(i);
      await agent.kill('SIGKILL');
      agent = await agentProcess(dataDir, args);
      expect(answers.size).toBe(0);
      await agent.control('resume', { instance: 'ledger' });
      await until(() => answered(QUEUED), 30_000, 'the requests queued before the crash answered');

      // 2. The instance runs: the agent dies right after the last PUBACK, with requests applied and
      // unacknowledged, delivered and not yet applied, and still queued at the broker.
      await Promise.all([...Array(TOTAL - QUEUED).keys()].map((k) => send(QUEUED + k)));
      await agent.kill('SIGKILL');
      // Recorded running: resumed at the start, its mailbox reconnects and the broker redelivers.
      agent = await agentProcess(dataDir, args);
      await until(() => answered(TOTAL), 30_000, 'every request answered');

      const seen = (await agent.control('call', { instance: 'ledger', handler: 'list', message: null })) as number[];
      expect(seen).toEqual([...Array(TOTAL).keys()]);
      // Answered at least once (twice when the crash fell between an answer and its PUBACK), always with the one outcome.
      for (let i = 0; i < TOTAL; i++) for (const a of answers.get(i)!) expect(a).toEqual({ n: i, length: i + 1 });
    } finally {
      await pub.close();
      await inbox.close();
    }
  });
});
