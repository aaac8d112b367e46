/**
 * Dashboard benchmark: `npm run bench:dashboard -- [--json] [--quick]` (the npm script builds
 * `dist/` first: the agents run from the built code, as `ferry start` does).
 *
 * Agents run as the installed `ferry` command runs them (dist/agent/cli/main.js through its `#!`
 * line, which gives Node the agent's flags: one process), each on a temp data directory of its own:
 * `start --profile rpi-zero-2w --port 0 --http-port 0 [--dashboard] --samples` (embedded broker on a
 * free port, the sample apps running). The page is opened at the address `ferry dashboard --json`
 * prints (`#token=` and all). ROUNDS rounds (1 with --quick, 3 without), each with PAIRS fresh
 * agents without and PAIRS with the dashboard (1 and 3), all started together; in the same run:
 * - pageWeightBytes: the bodies of the page's files (`/`, `/app.js`, `/app.css`) as the agent
 *   serves them; it does not compress (compressedByServer), so these are the bytes that count.
 *   pageWireBytes adds the response headers (raw HTTP/1.1 GETs); pageGzipBytes: gzip level 6 of the
 *   bodies, for reference; pageTransferMsAtLink: pageWireBytes at the profile link's bandwidth;
 * - firstLoadRequests / firstLoadRequestList: the HTTP requests of a first load, from navigation
 *   until the page is complete (Device page rendered, the header's status shown);
 * - loadMs / loadMaxMs: a real headless Chromium (Debian's, driven by playwright-core; one browser
 *   on a fresh user-data dir; each load in a new browser context: no cookie, no cache, no open
 *   connection) loads the page THROUGH the link emulator (transports/link-emulator.ts with the
 *   rpi-zero-2w profile's link: bandwidth, latency ± jitter; no random cuts; it delays data, not
 *   the TCP handshake), a TCP proxy in front of the agent's HTTP port: from navigation (the page's
 *   time origin) until `[data-page="device"] .card` is in the document (a MutationObserver in the
 *   page); median and max over LOADS loads per round (target: median < 1000 ms). directLoadMs: the
 *   same loads straight to the port, alternated with them (order swapped every load);
 *   loadOverDirectRatio = loadMs / directLoadMs: what the link adds. coldLoadMs: the first load
 *   of each dashboard (through the link, its HTTP paths never run yet), not in the medians.
 *   linkBytesPerLoad: bytes the emulator carried down and up per load (median);
 * - idleRssAddedMB: VmRSS (/proc/<pid>/status, summed over the agent's process tree) of the agents
 *   with the dashboard minus that of those without, idle and unlooked-at: each agent sampled
 *   RSS_SAMPLES times in a rotating order (its median), then the median over the run's agents of
 *   each kind (target ≤ 10). plainAgentsSpreadMB: how far apart identical agents are (the noise;
 *   null with --quick's single pair);
 *   idleRssRatio: with / without. idleRssAddedAfterPageMB: the same once the loads are over, every
 *   page closed (openConnectionsAfterClose: connections left to the HTTP ports, must be 0) and the
 *   live sampler given time to stop (target ≤ 10); idleCpuMsAfterPage: each agent's CPU time over
 *   the idle window before that sampling (a sampler left running would show).
 * `targets` says which targets were met; loadAverage1m: how busy the machine was. Progress on
 * stderr; prints one JSON object as its last line.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { controlRequest } from '../agent/cli/control-client.js';
import { AGENT_NODE_FLAGS } from '../agent/runtime/sandbox.js';
import { getProfile } from '../hw-profiles/index.js';
import { startLinkEmulator, type LinkEmulator } from '../transports/link-emulator.js';
import { parseBenchArgs, report, round } from './lib/args.js';
import { processTree } from './lib/proc-io.js';

const args = parseBenchArgs();
const PROFILE = 'rpi-zero-2w';
const LINK = getProfile(PROFILE).link;
const ROUNDS = args.quick ? 1 : 3;
/** Agents without and with the dashboard per round. Identical agents differ by a few MB of RSS: --quick's one pair reads the difference within that noise. */
const PAIRS = args.quick ? 1 : 3;
/** Measured loads per path (through the link, direct) per round, spread over the round's dashboards. */
const LOADS = args.quick ? 3 : 6;
const RSS_SAMPLES = args.quick ? 5 : 9;
const RSS_GAP_MS = 200;
const IDLE_MS = args.quick ? 1000 : 4000;
/** The dashboard's default sampleMs: a sampler still running after the last page would tick within it. */
const SAMPLE_MS = 1000;
const TARGETS = { loadMs: 1000, idleRssAddedMB: 10 };
const SELECTOR = '[data-page="device"] .card';
const ASSETS = ['/', '/app.js', '/app.css'];
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = join(ROOT, 'dist', 'agent', 'cli', 'main.js');

/** The middle value (the mean of the two middle ones for an even count: two agents of a kind weigh alike). */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const T0 = performance.now();
const LOAD_AVG_START = loadavg()[0]!;
const say = (text: string) => process.stderr.write(`[bench:dashboard ${((performance.now() - T0) / 1000).toFixed(1)} s] ${text}\n`);

// Whatever happens, no agent outlives the bench and no temp dir stays.
const live = new Set<ChildProcess>();
const temps: string[] = [];
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

/** main.js must be executable with the agent's flags on its `#!` line (the build does both), or the bench would measure a re-executing agent. */
function checkInstalledCommand(): void {
  accessSync(MAIN, constants.X_OK);
  const shebang = readFileSync(MAIN, 'utf8').split('\n', 1)[0]!;
  for (const f of AGENT_NODE_FLAGS) if (!shebang.includes(f)) throw new Error(`${MAIN}'s #! line lacks ${f}: ${shebang}`);
}

// ---- the agents ----

interface AgentProc {
  dataDir: string;
  child: ChildProcess;
  pid: number;
  ready: Promise<void>;
  exited: Promise<void>;
  stderrTail(): string;
}

function spawnAgent(name: string, dashboard: boolean): AgentProc {
  const dataDir = tempDir(`ferry-bench-dash-${name}-`);
  const argv = ['start', '--data', dataDir, '--profile', PROFILE, '--port', '0', '--http-port', '0', ...(dashboard ? ['--dashboard'] : []), '--samples'];
  const child = spawn(MAIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  let err = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => (live.delete(child), resolve())));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent ${name}: not ready within 30 s; stderr: ${err.trim()}`)), 30_000);
    void exited.then(() => reject(new Error(`agent ${name} exited before agent.ready; stderr: ${err.trim()}`)));
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const lines = (out + chunk).split('\n');
      out = lines.pop()!; // a line not yet complete
      if (!lines.some((l) => l.includes('"event":"agent.ready"'))) return;
      clearTimeout(timer);
      resolve();
    });
  });
  ready.catch(() => undefined); // awaited by the caller: another agent's later failure must not be an unhandled rejection
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (err = (err + c).slice(-4000)));
  return { dataDir, child, pid: child.pid ?? -1, ready, exited, stderrTail: () => err };
}

/** Asks the agent to shut down (it checkpoints its instances) and waits for its exit. */
async function shutdown(a: AgentProc): Promise<void> {
  if (a.child.exitCode !== null || a.child.signalCode !== null) return;
  await controlRequest(a.dataDir, 'shutdown').catch(() => a.child.kill('SIGTERM'));
  const t = setTimeout(() => a.child.kill('SIGKILL'), 10_000);
  await a.exited;
  clearTimeout(t);
}

/** The control channel must answer from the process spawned (no re-exec), and say whether a dashboard is served. */
async function checkStatus(a: AgentProc, dashboard: boolean): Promise<void> {
  const s = (await controlRequest(a.dataDir, 'status')) as { pid: number; dashboardUrl?: string };
  if (s.pid !== a.pid) throw new Error(`the control channel answers from pid ${s.pid}, the agent spawned is ${a.pid} (did it re-execute?)`);
  if ((s.dashboardUrl !== undefined) !== dashboard) throw new Error(`status.dashboardUrl is ${String(s.dashboardUrl)} on an agent started ${dashboard ? 'with' : 'without'} --dashboard`);
}

/** The address `ferry dashboard --json` prints, `#token=` and all (the installed command, run as a user would). */
async function dashboardUrl(a: AgentProc): Promise<URL> {
  const { stdout } = await promisify(execFile)(MAIN, ['dashboard', '--json', '--data', a.dataDir]);
  const r = JSON.parse(stdout) as { url?: string; error?: unknown };
  if (!r.url?.includes('#token=')) throw new Error(`ferry dashboard --json printed ${stdout.trim()}`);
  return new URL(r.url);
}

const vmRssKB = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);


const treeRssMB = (pid: number) => processTree(pid).reduce((s, p) => s + vmRssKB(p), 0) / 1024;

/** CPU time (user + system) the process used so far, ms (/proc/<pid>/stat, clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** Established TCP connections whose local end is `port` (the agent's side of a browser's or the emulator's connection). */
function establishedTo(port: number): number {
  const local = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const rows = ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((f) => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').slice(1) : []));
  return rows.map((l) => l.trim().split(/\s+/)).filter((f) => f[1]?.endsWith(local) && f[3] === '01').length;
}

/** Every agent's RSS, MB, sampled RSS_SAMPLES times in a rotating order (no agent always first): the median of each. */
async function sampleRss(agents: AgentProc[]): Promise<number[]> {
  const xs: number[][] = agents.map(() => []);
  for (let i = 0; i < RSS_SAMPLES; i++) {
    for (let k = 0; k < agents.length; k++) {
      const j = (i + k) % agents.length;
      xs[j]!.push(treeRssMB(agents[j]!.pid));
    }
    await sleep(RSS_GAP_MS);
  }
  return xs.map(median);
}

// ---- the page ----

/** One raw HTTP/1.1 GET: the bytes on the wire, the body, and the headers. */
function rawGet(port: number, path: string): Promise<{ wire: number; body: Buffer; head: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('end', () => {
      const all = Buffer.concat(chunks);
      const sep = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, sep).toString('latin1');
      if (!/^HTTP\/1\.1 200 /.test(head)) return reject(new Error(`GET ${path}: ${head.split('\r\n', 1)[0]}`));
      resolve({ wire: all.length, body: all.subarray(sep + 4), head });
    });
    s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n`);
  });
}

async function pageWeight(port: number) {
  const files: Record<string, { bytes: number; wireBytes: number; gzipBytes: number }> = {};
  let compressed = false;
  for (const path of ASSETS) {
    const r = await rawGet(port, path);
    const length = Number(/^content-length:\s*(\d+)/im.exec(r.head)?.[1]);
    if (length !== r.body.length) throw new Error(`GET ${path}: Content-Length ${length}, body ${r.body.length} bytes`);
    compressed ||= /^content-encoding:/im.test(r.head);
    files[path] = { bytes: r.body.length, wireBytes: r.wire, gzipBytes: gzipSync(r.body, { level: 6 }).length };
  }
  const sum = (k: 'bytes' | 'wireBytes' | 'gzipBytes') => Object.values(files).reduce((s, f) => s + f[k], 0);
  return { pageWeightBytes: sum('bytes'), pageWireBytes: sum('wireBytes'), pageGzipBytes: sum('gzipBytes'), pageFiles: files, compressedByServer: compressed };
}

/** Runs in the page before its own script: notes when the Device page's figures are in the document. */
const MARK_RENDERED = `new MutationObserver((_, o) => { if (document.querySelector(${JSON.stringify(SELECTOR)})) { window.__ferryRendered = performance.now(); o.disconnect(); } }).observe(document, { childList: true, subtree: true });`;

interface Load {
  /** Navigation to the figures in the document, in the page's clock. */
  ms: number;
  requests: string[];
  linkDown: number;
  linkUp: number;
  errors: string[];
}

/** One first load in a fresh browser context (no cookie, no cache, no connection): until the page is complete. */
async function loadOnce(browser: Browser, url: URL, emu?: LinkEmulator): Promise<Load> {
  const context: BrowserContext = await browser.newContext({ viewport: { width: 1200, height: 850 } });
  try {
    await context.addInitScript(MARK_RENDERED);
    const page = await context.newPage();
    const requests: string[] = [];
    const errors: string[] = [];
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.protocol === 'http:') requests.push(`${r.method()} ${u.pathname}`);
    });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    const down0 = emu?.stats.bytesDown ?? 0;
    const up0 = emu?.stats.bytesUp ?? 0;
    await page.goto(url.href, { waitUntil: 'commit', timeout: 30_000 });
    await page.waitForSelector(SELECTOR, { timeout: 30_000 });
    await page.waitForSelector('#device-name:not(:empty)', { timeout: 30_000 }); // the header's status: the load's last request
    const ms = await page.evaluate(() => (globalThis as { __ferryRendered?: number }).__ferryRendered ?? NaN);
    if (!Number.isFinite(ms)) throw new Error('the page rendered but its render time was not noted');
    return { ms, requests, linkDown: (emu?.stats.bytesDown ?? 0) - down0, linkUp: (emu?.stats.bytesUp ?? 0) - up0, errors };
  } finally {
    await context.close();
  }
}

const signed = (x: number) => (x >= 0 ? `+${x}` : String(x));
const spread = (xs: number[]) => ({ median: round(median(xs), 1), min: round(Math.min(...xs), 1), max: round(Math.max(...xs), 1) });

// ---- the run ----

interface Round {
  /** Median RSS of each agent without and with the dashboard, MB: before any page, and after the pages closed. */
  before: { plain: number[]; dash: number[] };
  after: { plain: number[]; dash: number[] };
  processes: number;
  cold: Load[];
  linked: Load[];
  direct: Load[];
  openAfterClose: number;
  idleCpuMs: { plain: number[]; dash: number[]; windowMs: number };
  weight?: Awaited<ReturnType<typeof pageWeight>>;
}

async function runRound(r: number, browser: Browser): Promise<Round> {
  const plain = Array.from({ length: PAIRS }, (_, i) => spawnAgent(`r${r}-plain${i}`, false));
  const dash = Array.from({ length: PAIRS }, (_, i) => spawnAgent(`r${r}-dash${i}`, true));
  const emus: LinkEmulator[] = [];
  try {
    await Promise.all([...plain, ...dash].map((a) => a.ready));
    await Promise.all([...plain.map((a) => checkStatus(a, false)), ...dash.map((a) => checkStatus(a, true))]);
    const urls = await Promise.all(dash.map(dashboardUrl));
    const ports = urls.map((u) => Number(u.port));
    say(`round ${r + 1}/${ROUNDS}: ${PAIRS} agent(s) without and ${PAIRS} with the dashboard (ports ${ports.join(', ')}) ready; idling ${IDLE_MS} ms`);
    await sleep(IDLE_MS);
    const rss = await sampleRss([...plain, ...dash]);
    const before = { plain: rss.slice(0, PAIRS), dash: rss.slice(PAIRS) };
    say(`  idle RSS, MB: without ${before.plain.map((x) => round(x, 1)).join(' ')}; with ${before.dash.map((x) => round(x, 1)).join(' ')}`);

    for (const port of ports) emus.push(await startLinkEmulator({ targetPort: port, link: LINK }));
    const linkedUrls = urls.map((u, i) => Object.assign(new URL(u.href), { port: String(emus[i]!.port) }));
    const weight = r === 0 ? await pageWeight(ports[0]!) : undefined;
    // The first page each agent serves (through the link): its HTTP paths still cold. Not in the medians.
    const cold: Load[] = [];
    for (let i = 0; i < PAIRS; i++) cold.push(await loadOnce(browser, linkedUrls[i]!, emus[i]));
    const linked: Load[] = [];
    const direct: Load[] = [];
    for (let i = 0; i < LOADS; i++) {
      const a = i % PAIRS;
      for (const through of i % 2 === 0 ? [true, false] : [false, true]) {
        if (through) linked.push(await loadOnce(browser, linkedUrls[a]!, emus[a]));
        else direct.push(await loadOnce(browser, urls[a]!));
      }
    }
    say(`  loads, ms: through the link ${linked.map((l) => Math.round(l.ms)).join(' ')}; direct ${direct.map((l) => Math.round(l.ms)).join(' ')}; cold ${cold.map((l) => Math.round(l.ms)).join(' ')}`);
    for (const e of emus.splice(0)) await e.close();

    // Every page is closed (its context with it): the agents' streams must end, then their samplers stop.
    const open = () => ports.reduce((n, p) => n + establishedTo(p), 0);
    let openAfterClose = open();
    for (let waited = 0; openAfterClose > 0 && waited < 5000; waited += 100) {
      await sleep(100);
      openAfterClose = open();
    }
    await sleep(SAMPLE_MS + 500);
    const c0 = [...plain, ...dash].map((a) => cpuMs(a.pid));
    const at = performance.now();
    await sleep(IDLE_MS);
    const cpu = [...plain, ...dash].map((a, i) => cpuMs(a.pid) - c0[i]!);
    const idleCpuMs = { plain: cpu.slice(0, PAIRS), dash: cpu.slice(PAIRS), windowMs: Math.round(performance.now() - at) };
    const rss2 = await sampleRss([...plain, ...dash]);
    const after = { plain: rss2.slice(0, PAIRS), dash: rss2.slice(PAIRS) };
    say(`  after the pages, RSS MB: without ${after.plain.map((x) => round(x, 1)).join(' ')}; with ${after.dash.map((x) => round(x, 1)).join(' ')}; ${openAfterClose} connection(s) left; idle CPU ms ${cpu.join(' ')}`);
    const processes = Math.max(...[...plain, ...dash].map((a) => processTree(a.pid).length));
    return { before, after, processes, cold, linked, direct, openAfterClose, idleCpuMs, ...(weight ? { weight } : {}) };
  } catch (e) {
    for (const a of [...plain, ...dash]) say(`agent ${a.dataDir} stderr: ${a.stderrTail().trim()}`);
    throw e;
  } finally {
    for (const e of emus) await e.close();
    await Promise.all([...plain, ...dash].map(shutdown));
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  checkInstalledCommand();
  const userDataDir = tempDir('ferry-bench-dash-chromium-');
  const persistent = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const browser = persistent.browser();
  if (!browser) throw new Error('playwright gave no Browser for the persistent context');
  const rounds: Round[] = [];
  try {
    say(`chromium ${browser.version()} up; ${ROUNDS} round(s) of ${PAIRS} + ${PAIRS} agents, ${LOADS} loads per path per round, link ${LINK.bandwidthBps / 1e6} Mbit/s, ${LINK.latencyMs} ± ${LINK.jitterMs} ms one way`);
    const warm = await browser.newContext(); // the browser's own first-page costs stay out of the figures
    await (await warm.newPage()).goto('about:blank');
    await warm.close();
    for (let r = 0; r < ROUNDS; r++) rounds.push(await runRound(r, browser));
  } finally {
    await persistent.close().catch(() => undefined);
  }

  const w = rounds[0]!.weight!;
  const linked = rounds.flatMap((r) => r.linked);
  const direct = rounds.flatMap((r) => r.direct);
  const cold = rounds.flatMap((r) => r.cold);
  const loadMs = round(median(linked.map((l) => l.ms)), 1);
  const directLoadMs = round(median(direct.map((l) => l.ms)), 1);
  // RSS: the medians over every agent of the run, without and with the dashboard.
  const rssOf = (phase: 'before' | 'after', kind: 'plain' | 'dash') => median(rounds.flatMap((r) => r[phase][kind]));
  const idleRssAddedMB = round(rssOf('before', 'dash') - rssOf('before', 'plain'), 1);
  const idleRssAddedAfterPageMB = round(rssOf('after', 'dash') - rssOf('after', 'plain'), 1);
  const plainAll = rounds.flatMap((r) => r.before.plain);
  const requests = cold[0]!.requests;
  const pageErrors = [...new Set([...cold, ...linked, ...direct].flatMap((l) => l.errors))];
  const openConnectionsAfterClose = Math.max(...rounds.map((r) => r.openAfterClose));
  const result = {
    bench: 'dashboard',
    quick: args.quick,
    profile: PROFILE,
    link: { bandwidthBps: LINK.bandwidthBps, latencyMs: LINK.latencyMs, jitterMs: LINK.jitterMs },
    layout: 'agents: their own processes from dist/ (main.js through its #! line), embedded brokers; browser: Debian chromium (headless, playwright-core); link emulator: in this process, a TCP proxy in front of each HTTP port',
    rounds: ROUNDS,
    agentsPerKindPerRound: PAIRS,
    loadAverage1m: { start: round(LOAD_AVG_START, 2), end: round(loadavg()[0]!, 2), cpus: cpus().length },
    ...w,
    pageTransferMsAtLink: round((w.pageWireBytes * 8 * 1000) / LINK.bandwidthBps, 1),
    firstLoadRequests: requests.length,
    firstLoadRequestList: requests,
    loads: linked.length,
    loadMs,
    loadMaxMs: round(Math.max(...linked.map((l) => l.ms)), 1),
    loadSamplesMs: linked.map((l) => round(l.ms, 1)),
    directLoadMs,
    directLoadMaxMs: round(Math.max(...direct.map((l) => l.ms)), 1),
    loadOverDirectRatio: round(loadMs / directLoadMs, 2),
    coldLoadMs: spread(cold.map((l) => l.ms)),
    linkBytesPerLoad: { down: Math.round(median(linked.map((l) => l.linkDown))), up: Math.round(median(linked.map((l) => l.linkUp))) },
    pageErrors,
    idleRssPlainMB: round(rssOf('before', 'plain'), 1),
    idleRssDashboardMB: round(rssOf('before', 'dash'), 1),
    idleRssAddedMB,
    idleRssRatio: round(rssOf('before', 'dash') / rssOf('before', 'plain'), 3),
    idleRssAfterPagePlainMB: round(rssOf('after', 'plain'), 1),
    idleRssAfterPageDashboardMB: round(rssOf('after', 'dash'), 1),
    idleRssAddedAfterPageMB,
    // How far apart identical agents (without the dashboard) are: the noise the difference is read against.
    plainAgentsSpreadMB: plainAll.length > 1 ? round(Math.max(...plainAll) - Math.min(...plainAll), 1) : null,
    rssByAgentMB: rounds.map((r) => ({ plain: r.before.plain.map((x) => round(x, 1)), dash: r.before.dash.map((x) => round(x, 1)), plainAfterPage: r.after.plain.map((x) => round(x, 1)), dashAfterPage: r.after.dash.map((x) => round(x, 1)) })),
    agentProcesses: Math.max(...rounds.map((r) => r.processes)),
    rssSamples: RSS_SAMPLES,
    openConnectionsAfterClose,
    idleCpuMsAfterPage: rounds.map((r) => r.idleCpuMs),
    targets: {
      loadMs: loadMs < TARGETS.loadMs,
      idleRssAddedMB: idleRssAddedMB <= TARGETS.idleRssAddedMB,
      idleRssAddedAfterPageMB: idleRssAddedAfterPageMB <= TARGETS.idleRssAddedMB && openConnectionsAfterClose === 0,
    },
    targetValues: TARGETS,
    seconds: round((performance.now() - t0) / 1000, 1),
  };
  report(args, result, [
    `page: ${result.pageWeightBytes} bytes served (${result.pageWireBytes} with headers, ${result.pageGzipBytes} gzipped; ${w.compressedByServer ? 'compressed' : 'not compressed'} by the server), ${result.firstLoadRequests} requests on a first load`,
    `load through the ${PROFILE} link: median ${loadMs} ms, max ${result.loadMaxMs} ms over ${result.loads} (target < ${TARGETS.loadMs}); direct ${directLoadMs} ms: ratio ${result.loadOverDirectRatio}; cold ${result.coldLoadMs.median} ms`,
    `idle RSS: ${result.idleRssPlainMB} MB without, ${result.idleRssDashboardMB} MB with the dashboard: ${signed(idleRssAddedMB)} MB (target ≤ ${TARGETS.idleRssAddedMB}; identical agents ${result.plainAgentsSpreadMB ?? '?'} MB apart); after a page: ${signed(idleRssAddedAfterPageMB)} MB, ${openConnectionsAfterClose} connection(s) left`,
  ]);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
