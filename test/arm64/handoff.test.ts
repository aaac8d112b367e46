/**
 * Handoff across CPU architectures (issue "Emulated devices for real"): an x86-64 agent (this
 * machine's Node) and an ARM64 agent (the Pi's architecture: the registry's arm64 Node and an
 * arm64 build of better-sqlite3, run by qemu-user; scripts/arm64-tree.mjs) on one broker,
 * paired; a client streams numbered requests into an instance while it moves x86 → ARM64 and
 * back, twice: none lost, none applied twice, in order, and it ends on exactly one device.
 *
 * Needs the tree: FERRY_ARM64_TREE names the directory `node scripts/arm64-tree.mjs <dir>`
 * prepared (scripts/test-arm64.mjs prepares it and runs this file). Without it the test fails
 * saying so: it is not skipped.
 */
import { existsSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../../agent/runtime/sandbox.js';
import { Device, Dirs, pairViaControl } from '../bridge/helpers.js';
import { startAgentProcess } from '../helpers/agent-process.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { migrate } from '../handoff/helpers.js';
import { LoadClient, ledgerSource, readLedger, writeApp } from '../handoff/load-client.js';

const TREE = process.env.FERRY_ARM64_TREE ?? '';
const INSTANCE = 'ledger';
/** Round trips: x86 → ARM64 → x86, twice. */
const TRIPS = 2;
/**
 * The emulated Node runs ~10× slower than native: its side of the switch (the final delta
 * installed, the commit made durable, its mailbox session connected) took 130–260 ms here on a
 * quiet machine; a busy one can make that several times longer.
 */
const LIMIT_MS = 1500;

/** A device whose agent runs on the ARM64 tree's Node (the `ferry` CLI driving it stays the x86 one). */
class Arm64Device extends Device {
  constructor(id: string, dataDir: string, private readonly startArgs: string[]) {
    super(id, 'rpi-4b', dataDir, startArgs);
  }

  override async start(): Promise<this> {
    const argv = [join(TREE, 'bin', 'node'), ...AGENT_NODE_FLAGS, join(TREE, 'ferry', 'dist', 'agent', 'cli', 'main.js'), 'start', '--data', this.dataDir, '--device-id', this.id, '--profile', this.profile, ...this.startArgs];
    this.agent = startAgentProcess(this.dataDir, [], { argv });
    await this.agent.ready;
    return this;
  }
}

describe('handoff between an x86-64 agent and an ARM64 agent', () => {
  const dirs = new Dirs();
  let broker: TestBroker;
  let x86: Device;
  let arm: Arm64Device;

  beforeAll(async () => {
    if (!TREE || !existsSync(join(TREE, 'bin', 'node'))) {
      throw new Error(`FERRY_ARM64_TREE must name an ARM64 tree (got "${TREE}"): prepare one with \`node scripts/arm64-tree.mjs <dir>\`, or run \`node scripts/test-arm64.mjs\`, which does`);
    }
    broker = await startAedes({ persistent: true });
    const tag = `${process.pid}-${Date.now() % 100_000}`;
    x86 = new Device(`x86-${tag}`, 'rpi-4b', dirs.make('x86'), ['--broker', broker.url]);
    arm = new Arm64Device(`arm64-${tag}`, dirs.make('arm64'), ['--broker', broker.url]);
    await Promise.all([x86.start(), arm.start()]);
    await pairViaControl(x86, arm);
  }, 300_000);

  afterAll(async () => {
    await Promise.all([x86?.stop(), arm?.stop()]);
    await broker?.stop();
    dirs.cleanup();
  });

  it('the ARM64 agent is the emulated arm64 Node, and reports its memory', async () => {
    const status = (await arm.control('status')) as { pid: number; rssBytes: number };
    expect(readlinkSync(`/proc/${status.pid}/exe`)).toMatch(/qemu-aarch64/);
    expect(status.rssBytes).toBeGreaterThan(0);
  });

  it(`${2 * TRIPS} moves x86 ⇄ ARM64 while a client streams: none lost, none applied twice, in order`, async () => {
    const installed = await x86.cli(['install', writeApp(dirs.make('app'), INSTANCE, ledgerSource(INSTANCE))]);
    expect(installed.code, installed.stderr).toBe(0);
    const ran = await x86.cli(['run', INSTANCE]);
    expect(ran.code, ran.stderr).toBe(0);
    const client = await LoadClient.connect({ url: broker.url, instance: INSTANCE, handler: 'apply', tag: `arch${Date.now() % 100_000}`, window: 4, gapMs: 20 });
    let holder: Device = x86;
    try {
      client.start();
      expect(await client.waitAnswered(10, 60_000)).toBe(true);
      for (let i = 0; i < 2 * TRIPS; i++) {
        const to = holder === x86 ? arm : x86;
        let arrived = false;
        for (let t = 0; t < 3 && !arrived; t++) {
          const m = await migrate(holder, INSTANCE, to.id, ['--downtime-limit', String(LIMIT_MS)]);
          const r = m.report;
          expect(r, `no report: ${JSON.stringify(m.error)} ${m.stderr}`).toBeDefined();
          console.log(`${holder === x86 ? 'x86-64 → arm64' : 'arm64 → x86-64'}: ${r!.outcome}${r!.code ? ` ${r!.code}` : ''} path ${r!.path} downtime ${r!.downtimeMs} ms, rounds ${r!.rounds}, total ${r!.totalMs} ms`);
          if (m.code === 0) {
            expect(r!.path).toBe('lines'); // same profile, same line and word size on both architectures
            holder = to;
            arrived = true;
          } else {
            expect(m.error?.code).toMatch(/^MIGRATE_/);
          }
        }
        expect(arrived, `move ${i + 1}: three tries, all aborted`).toBe(true);
        const now = client.first.size;
        expect(await client.waitAnswered(now + 10, 60_000), `serves on ${holder.id}`).toBe(true);
      }
      await client.stop();
      expect(await client.waitAnswered(client.sent, 120_000), `unanswered: ${client.missing().slice(0, 20).join(', ')}`).toBe(true);
    } finally {
      await client.close();
    }
    expect(holder).toBe(x86);
    expect(client.missing()).toEqual([]);
    for (let n = 0; n < client.sent; n++) expect(client.first.get(n)!.body, `answer to ${n}`).toEqual({ n, length: n + 1 });
    expect(client.oddAnswers()).toEqual([]);
    expect(await readLedger(x86, INSTANCE)).toEqual([...Array(client.sent).keys()]);
    const onArm = ((await arm.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])).value.instances.find((x) => x.instance === INSTANCE))?.state;
    expect(onArm === undefined || onArm === 'moved').toBe(true);
  }, 900_000);
});
