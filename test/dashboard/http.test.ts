/**
 * The dashboard of a real agent process (`ferry start --http-port 0 --dashboard --samples`), over
 * HTTP with node:http and fetch (no browser): its access token file, `ferry dashboard`, the page
 * and its CSP, login and session, every refusal (no session, no or wrong CSRF token, another
 * site's Origin or Sec-Fetch-Site, a foreign Host, bodies that are not a JSON object or too large,
 * commands the page may not run) with its status and error code, after which nothing changed;
 * actions and reads through the control dispatcher, the live event stream and its limit, logout,
 * a restart (the same token, a loosened file tightened, no dashboard without --dashboard), and a
 * corrupt token file that stops `ferry start` without showing what it holds.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';

const ARGS = ['--samples', '--port', '0', '--http-port', '0', '--dashboard', '--profile', 'rpi-4b', '--log-level', 'debug'];
const dirs: string[] = [];
const tempDir = (tag: string) => {
  const d = mkdtempSync(join(tmpdir(), `ferry-dash-${tag}-`));
  dirs.push(d);
  return d;
};

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

/** One request on a connection of its own, every header as given (Host, Origin, Sec-Fetch-Site too); `chunked`: the body without a length. */
function http(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string, chunked = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text, json: /json/.test(res.headers['content-type'] ?? '') ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    if (body !== undefined && chunked) for (let i = 0; i < body.length; i += 16_384) req.write(body.slice(i, i + 16_384));
    else if (body !== undefined) req.write(body);
    req.end();
  });
}

const JSON_TYPE = { 'Content-Type': 'application/json' };
const refusal = (a: Answer) => ({ status: a.status, code: a.json?.error?.code, field: a.json?.error?.field });
const modeOf = (file: string) => statSync(file).mode & 0o777;
/** The same string with its first character changed. */
const differ = (s: string) => `${s.startsWith('W') ? 'X' : 'W'}${s.slice(1)}`;

let agent: AgentProcess;
let dir: string;
let port: number;
let url: string;
let token: string;
let cookie: string;
let csrf: string;

/** The session cookie and the CSRF header an action of the page carries, and any other headers. */
const withSession = (more: Record<string, string> = {}) => ({ Cookie: cookie, 'X-Ferry-CSRF': csrf, ...JSON_TYPE, ...more });
const cmd = (name: string, args: unknown = {}, headers: Record<string, string> = withSession()) => http(port, 'POST', `/api/cmd/${name}`, headers, JSON.stringify(args));

/** What a refused request must not change: each instance's state and the checkpoints. */
async function snapshot() {
  const apps = (await agent.control('apps')) as { instances: Array<{ instance: string; state: string }> };
  const cps = (await agent.control('checkpoints')) as Array<{ instance: string; version: number; current: boolean }>;
  return { states: apps.instances.map((i) => [i.instance, i.state]), checkpoints: cps.map((c) => [c.instance, c.version, c.current]) };
}
const counterState = async () => (await snapshot()).states.find(([i]) => i === 'counter')?.[1];

/** A live stream: its answer, and its events read one at a time from fetch's body reader. */
async function openEvents(headers: Record<string, string>) {
  const ac = new AbortController();
  const r = await fetch(`${url}/api/events`, { headers, signal: ac.signal });
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const decoder = new TextDecoder();
  let buf = '';
  const next = async (): Promise<{ event: string; data: any }> => {
    const deadline = Date.now() + 10_000;
    while (!buf.includes('\n\n')) {
      if (Date.now() > deadline) throw new Error(`no event within 10 s; got ${buf}`);
      reader ??= r.body!.getReader();
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended; got ${buf}`);
      buf += decoder.decode(value, { stream: true });
    }
    const block = buf.slice(0, buf.indexOf('\n\n'));
    buf = buf.slice(block.length + 2);
    const m = /^event: (.+)\ndata: (.*)$/.exec(block);
    if (!m) throw new Error(`not an event: ${block}`);
    return { event: m[1]!, data: JSON.parse(m[2]!) };
  };
  const close = () => {
    ac.abort();
    reader?.cancel().catch(() => undefined);
  };
  return { r, next, close };
}
/** A stream that is accepted (a page closed a moment ago may still be counted: try again). */
async function openAccepted() {
  const end = Date.now() + 5000;
  for (;;) {
    const s = await openEvents({ Cookie: cookie });
    if (s.r.status === 200) return s;
    s.close();
    if (Date.now() > end) throw new Error(`a stream was refused: ${s.r.status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startDashboardAgent(args = ARGS) {
  agent = startAgentProcess(dir, args);
  const status = (await agent.ready) as { httpUrl: string; dashboardUrl?: string };
  url = status.httpUrl;
  port = Number(new URL(url).port);
  return status;
}

beforeAll(async () => {
  dir = tempDir('agent');
  const status = await startDashboardAgent();
  expect(status.dashboardUrl).toBe(`${url}/`);
  // The samples are installed and run once the control socket answers.
  await until(snapshot, (s) => s.states.filter(([, st]) => st === 'running').length === 3, 'the three samples running');
});

afterAll(async () => {
  await agent?.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('the dashboard of ferry start --dashboard', () => {
  it('makes the token at the first start (0600, 43 base64url characters); ferry dashboard prints the address with it', async () => {
    const file = join(dir, 'dashboard.token');
    expect(modeOf(file)).toBe(0o600);
    token = readFileSync(file, 'utf8').trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const out = await runFerry(['dashboard', '--data', dir, '--json']);
    expect(out.code).toBe(0);
    const printed = JSON.parse(out.stdout) as { url: string; tokenFile: string };
    expect(printed.url).toBe(`${url}/#token=${token}`);
    expect(printed.tokenFile).toBe(file);
  });

  it('serves the page with a CSP that allows no inline code, its script and style, and refuses other methods', async () => {
    const page = await http(port, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    const csp = page.headers['content-security-policy']!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(page.headers['x-frame-options']).toBe('DENY');
    // What the CSP would block must not be in the page: an inline script, a handler attribute, a style attribute.
    expect(page.text).toContain('<script src="/app.js"');
    expect(page.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+=|\sstyle=/i);
    expect(page.text).not.toContain(token);
    const js = await http(port, 'GET', '/app.js');
    expect([js.status, js.headers['content-type']]).toEqual([200, 'text/javascript; charset=utf-8']);
    expect(js.text).toBe(readFileSync(join('agent', 'dashboard', 'public', 'app.js'), 'utf8'));
    const css = await http(port, 'GET', '/app.css');
    expect([css.status, css.headers['content-type']]).toEqual([200, 'text/css; charset=utf-8']);
    const head = await http(port, 'HEAD', '/');
    expect([head.status, head.text, head.headers['content-length']]).toEqual([200, '', String(Buffer.byteLength(page.text))]);
    const post = await http(port, 'POST', '/');
    expect([post.status, post.headers.allow]).toEqual([405, 'GET, HEAD']);
    expect((await http(port, 'GET', '/nothing.js')).status).toBe(404);
  });

  it('gives a session only for the right token, and never writes a token in an answer or a log line', async () => {
    expect(refusal(await http(port, 'GET', '/api/session'))).toEqual({ status: 401, code: 'DASHBOARD_AUTH', field: 'token' });
    expect(refusal(await http(port, 'GET', '/api/session', { Cookie: `ferry_session_${port}=${token}` }))).toMatchObject({ status: 401, code: 'DASHBOARD_AUTH' });
    const wrong = differ(token);
    const bad = await http(port, 'POST', '/api/login', JSON_TYPE, JSON.stringify({ token: wrong }));
    expect(refusal(bad)).toEqual({ status: 401, code: 'DASHBOARD_AUTH', field: 'token' });
    expect(bad.headers['set-cookie']).toBeUndefined();
    expect(bad.text).not.toContain(token);
    expect(bad.text).not.toContain(wrong);
    // Another site cannot log a browser in (login CSRF).
    const foreign = await http(port, 'POST', '/api/login', { ...JSON_TYPE, Origin: 'http://evil.example' }, JSON.stringify({ token }));
    expect(refusal(foreign)).toEqual({ status: 403, code: 'DASHBOARD_CSRF', field: 'origin' });
    expect(foreign.headers['set-cookie']).toBeUndefined();

    const ok = await http(port, 'POST', '/api/login', { ...JSON_TYPE, Origin: `http://127.0.0.1:${port}`, 'Sec-Fetch-Site': 'same-origin' }, JSON.stringify({ token }));
    expect([ok.status, ok.json]).toEqual([200, { ok: true }]);
    const set = ok.headers['set-cookie']![0]!;
    expect(set).toMatch(new RegExp(`^ferry_session_${port}=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=/$`));
    cookie = set.split(';')[0]!;
    expect(cookie).not.toContain(token);
    const session = await http(port, 'GET', '/api/session', { Cookie: `other=1; ${cookie}` });
    expect(session.status).toBe(200);
    expect(session.json.result.sampleMs).toBe(1000);
    csrf = session.json.result.csrf as string;
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(csrf).not.toBe(token);

    await until(async () => agent.logs.filter((l) => l.event === 'dashboard.login-refused').length, (n) => n === 1, 'the login-refused line');
    const logged = JSON.stringify(agent.logs);
    expect(logged).not.toContain(token);
    expect(logged).not.toContain(wrong);
  });

  it('refuses an action without the CSRF token, with a wrong one, from another site or Host; the instance still runs', async () => {
    const before = await snapshot();
    expect(await counterState()).toBe('running');
    const { 'X-Ferry-CSRF': _, ...noCsrf } = withSession();
    const cases: Array<[string, Record<string, string>, number, string | undefined, string | undefined]> = [
      ['no session', { ...JSON_TYPE, 'X-Ferry-CSRF': csrf }, 401, 'DASHBOARD_AUTH', 'token'],
      ['no CSRF header', noCsrf, 403, 'DASHBOARD_CSRF', 'csrf'],
      ['a wrong CSRF', withSession({ 'X-Ferry-CSRF': differ(csrf) }), 403, 'DASHBOARD_CSRF', 'csrf'],
      ['the token as CSRF', withSession({ 'X-Ferry-CSRF': token }), 403, 'DASHBOARD_CSRF', 'csrf'],
      ['another Origin', withSession({ Origin: 'http://evil.example' }), 403, 'DASHBOARD_CSRF', 'csrf'],
      ['Origin null', withSession({ Origin: 'null' }), 403, 'DASHBOARD_CSRF', 'csrf'],
      ['Sec-Fetch-Site cross-site', withSession({ 'Sec-Fetch-Site': 'cross-site' }), 403, 'DASHBOARD_CSRF', 'csrf'],
      ['Sec-Fetch-Site same-site', withSession({ 'Sec-Fetch-Site': 'same-site' }), 403, 'DASHBOARD_CSRF', 'csrf'],
      // DNS rebinding: the endpoint answers only to a loopback name (plain text, before the dashboard sees it).
      ['a foreign Host', withSession({ Host: `evil.example:${port}`, Origin: `http://evil.example:${port}` }), 403, undefined, undefined],
    ];
    for (const [what, headers, status, code, field] of cases) {
      const a = await cmd('suspend', { instance: 'counter' }, headers);
      expect(refusal(a), what).toEqual({ status, code, field });
      if (code === 'DASHBOARD_CSRF') expect(a.json.error.message, what).toContain('nothing changed');
    }
    expect(await snapshot()).toEqual(before);
    // A cross-site fetch that sets the header is preflighted: OPTIONS is never allowed, and no CORS header is given.
    const preflight = await http(port, 'OPTIONS', '/api/cmd/suspend', { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-ferry-csrf' });
    expect(preflight.status).toBe(405);
    expect(Object.keys(preflight.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    // The GET side checks the Host too.
    expect((await http(port, 'GET', '/api/session', { Cookie: cookie, Host: `evil.example:${port}` })).status).toBe(403);
    expect((await http(port, 'GET', '/', { Host: 'attacker.test' })).status).toBe(403);
  });

  it('refuses bodies that are not a JSON object of at most 65,536 bytes, and commands the page must not run', async () => {
    const before = await snapshot();
    const suspend = (headers: Record<string, string>, body: string, chunked = false) => http(port, 'POST', '/api/cmd/suspend', headers, body, chunked);
    const args = JSON.stringify({ instance: 'counter' });
    expect(refusal(await suspend(withSession({ 'Content-Type': 'text/plain' }), args))).toEqual({ status: 415, code: 'AGENT_BAD_REQUEST', field: 'Content-Type' });
    expect(refusal(await suspend(withSession({ 'Content-Type': 'application/x-www-form-urlencoded' }), 'instance=counter'))).toMatchObject({ status: 415 });
    const big = JSON.stringify({ instance: 'counter', pad: 'x'.repeat(65_536) });
    expect(refusal(await suspend(withSession(), big))).toEqual({ status: 413, code: 'AGENT_BAD_REQUEST', field: 'body' });
    expect(refusal(await suspend(withSession(), big, true))).toEqual({ status: 413, code: 'AGENT_BAD_REQUEST', field: 'body' });
    expect(refusal(await suspend(withSession(), '{"instance": "counter"'))).toEqual({ status: 400, code: 'AGENT_BAD_REQUEST', field: 'body' });
    for (const notObject of ['["counter"]', '"counter"', 'null', '42']) expect(refusal(await suspend(withSession(), notObject)), notObject).toEqual({ status: 400, code: 'AGENT_BAD_REQUEST', field: 'body' });
    // A body just under the limit is read and the command runs (on an instance that is not there).
    const near = await cmd('suspend', { instance: 'nope', pad: 'x'.repeat(65_000) });
    expect([near.status, near.json.error?.code]).toEqual([200, 'APP_UNKNOWN']);

    for (const name of ['install', 'call', 'remove', 'shutdown', 'peer-ping', 'no-such-command']) {
      const a = await cmd(name, { path: '/tmp/x.mjs', app: 'counter', instance: 'counter', handler: 'increment', peer: 'x' });
      expect(refusal(a), name).toEqual({ status: 404, code: 'AGENT_BAD_REQUEST', field: 'cmd' });
    }
    expect(refusal(await cmd('Shutdown'))).toEqual({ status: 404, code: 'AGENT_BAD_REQUEST', field: 'path' });
    expect(refusal(await http(port, 'GET', '/api/nothing'))).toEqual({ status: 404, code: 'AGENT_BAD_REQUEST', field: 'path' });
    expect((await http(port, 'GET', '/api/cmd/status', { Cookie: cookie })).status).toBe(405);
    // After the refused shutdown the agent still answers, here and on its control socket.
    expect((await cmd('status')).json).toMatchObject({ ok: true, result: { profile: 'rpi-4b', running: 3 } });
    expect(agent.proc.exitCode).toBeNull();
    expect(await snapshot()).toEqual(before);
  });

  it('suspends and resumes through the control commands; an action on an instance that is not there changes nothing', async () => {
    const actionLines = () => agent.logs.filter((l) => l.event === 'dashboard.action');
    const logged = actionLines().length;
    const suspended = await cmd('suspend', { instance: 'counter' });
    expect(suspended.status).toBe(200);
    expect(suspended.json).toMatchObject({ ok: true, result: { instance: 'counter', state: 'suspended' } });
    expect(await counterState()).toBe('suspended');
    const resumed = await cmd('resume', { instance: 'counter' });
    expect(resumed.json).toMatchObject({ ok: true, result: { instance: 'counter', state: 'running' } });
    expect(await counterState()).toBe('running');

    const before = await snapshot();
    const gone = await cmd('suspend', { instance: 'nope' });
    expect(gone.status).toBe(200);
    expect(gone.json).toMatchObject({ ok: false, error: { code: 'APP_UNKNOWN', field: 'app' } });
    const noArgs = await cmd('resume', {});
    expect(noArgs.json).toMatchObject({ ok: false, error: { code: 'AGENT_BAD_REQUEST', field: 'args.instance' } });
    expect(await snapshot()).toEqual(before);
    // Actions are logged with their outcome, never their arguments.
    const actions = (await until(async () => actionLines().slice(logged), (l) => l.length >= 4, 'the action lines')).map((l) => [l.cmd, l.ok, l.code]);
    expect(actions).toEqual([['suspend', true, undefined], ['resume', true, undefined], ['suspend', false, 'APP_UNKNOWN'], ['resume', false, 'AGENT_BAD_REQUEST']]);
    expect(JSON.stringify(actionLines())).not.toContain('nope');
  });

  it('reads the device (version, profile, store) and the grants of its own services', async () => {
    const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
    const device = await cmd('device');
    expect(device.status).toBe(200);
    expect(device.json).toMatchObject({ ok: true, result: { version, profile: { name: 'rpi-4b', services: expect.arrayContaining(['sensor']) } } });
    const store = device.json.result.store as Record<string, number>;
    expect(store.fileBytes).toBeGreaterThan(0);
    expect(store.commits).toBeGreaterThan(0);
    expect(store.wearPercent).toBeGreaterThanOrEqual(0);
    const status = (await agent.control('status')) as { deviceId: string };
    const grants = await cmd('grants');
    expect(grants.json.ok).toBe(true);
    expect(Array.isArray(grants.json.result)).toBe(true);
    // sensor-log holds this device's sensor (as `ferry leases` says).
    const leases = (await agent.control('leases')) as Array<{ instance: string; service: string; provider: string }>;
    expect(leases).toContainEqual(expect.objectContaining({ instance: 'sensor-log', service: 'sensor', provider: status.deviceId }));
    expect(grants.json.result).toContainEqual(expect.objectContaining({ service: `${status.deviceId}/sensor`, type: 'sensor', holders: [expect.objectContaining({ holder: status.deviceId })] }));
  });

  it('streams hello then samples to a page with a session, and answers one stream over maxStreams with 503 DASHBOARD_BUSY', async () => {
    const none = await fetch(`${url}/api/events`);
    expect([none.status, ((await none.json()) as { error: { code: string } }).error.code]).toEqual([401, 'DASHBOARD_AUTH']);

    const s = await openAccepted();
    expect(s.r.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const hello = await s.next();
    expect(hello.event).toBe('hello');
    expect(hello.data.sampleMs).toBe(1000);
    let sample = await s.next();
    while (sample.event !== 'sample') sample = await s.next();
    expect(sample.data.instances.map((i: { instance: string; state: string }) => [i.instance, i.state])).toEqual([
      ['counter', 'running'],
      ['notes', 'running'],
      ['sensor-log', 'running'],
    ]);
    expect(sample.data.instances[0].residentBytes).toBeGreaterThan(0);
    expect(sample.data.moves).toEqual({ active: [], ended: 0 });
    s.close();

    const open = [];
    for (let i = 0; i < 4; i++) open.push(await openAccepted());
    for (const o of open) expect((await o.next()).event).toBe('hello');
    const busy = await openEvents({ Cookie: cookie });
    expect(busy.r.status).toBe(503);
    expect(await busy.r.json()).toMatchObject({ ok: false, error: { code: 'DASHBOARD_BUSY', field: 'dashboard.maxStreams' } });
    open.shift()!.close();
    const again = await openAccepted();
    expect((await again.next()).event).toBe('hello');
    for (const o of [...open, again]) o.close();
  });

  it('logs out by clearing the cookie', async () => {
    const out = await http(port, 'POST', '/api/logout', { Origin: `http://127.0.0.1:${port}` });
    expect([out.status, out.json]).toEqual([200, { ok: true }]);
    expect(out.headers['set-cookie']).toEqual([`ferry_session_${port}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`]);
    expect(refusal(await http(port, 'POST', '/api/logout', { Origin: 'http://evil.example' }))).toEqual({ status: 403, code: 'DASHBOARD_CSRF', field: 'origin' });
  });

  it('keeps the token over restarts, tightens a loosened file, and serves nothing without --dashboard', async () => {
    const file = join(dir, 'dashboard.token');
    await agent.kill('SIGTERM');
    chmodSync(file, 0o644);
    await startDashboardAgent(ARGS.filter((a) => a !== '--dashboard'));
    const usage = await runFerry(['dashboard', '--data', dir, '--json']);
    expect(usage.code).toBe(1);
    const err = (JSON.parse(usage.stdout) as { error: { code: string; field: string; message: string } }).error;
    expect(err).toMatchObject({ code: 'CLI_USAGE', field: '--dashboard' });
    expect(err.message).toContain('--dashboard');
    expect((await http(port, 'GET', '/')).status).toBe(404);
    expect((await http(port, 'GET', '/api/session', { Cookie: cookie })).status).toBe(404);
    expect(modeOf(file)).toBe(0o644); // not even read without the dashboard
    await agent.kill('SIGTERM');

    await startDashboardAgent();
    expect(modeOf(file)).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toBe(token);
    expect(JSON.parse((await runFerry(['dashboard', '--data', dir, '--json'])).stdout).url).toBe(`${url}/#token=${token}`);
    // The session is derived from the token: the same value works on the new port's cookie.
    const session = await http(port, 'GET', '/api/session', { Cookie: `ferry_session_${port}=${cookie.split('=')[1]}` });
    expect([session.status, session.json.result?.csrf]).toEqual([200, csrf]);
  });
});

describe('a corrupt token file', () => {
  it('stops ferry start with DASHBOARD_TOKEN_CORRUPT, without the file\'s contents in the message, and leaves the file as it was', async () => {
    const d = tempDir('corrupt');
    const file = join(d, 'dashboard.token');
    // Too short; and a token pasted in standard base64 (with + and /), which looks like a secret.
    for (const held of ['short\n', `${'Zq9'.repeat(13)}+/x\n`]) {
      writeFileSync(file, held, { mode: 0o600 });
      const out = await runFerry(['start', '--data', d, '--port', '0', '--http-port', '0', '--dashboard', '--json']);
      expect(out.code).toBe(1);
      // stdout: the agent's log lines, then the error.
      const lines = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event?: string; error?: { code: string; field: string; message: string } });
      const err = lines.find((l) => l.event === undefined && l.error !== undefined)!.error!;
      expect(err).toMatchObject({ code: 'DASHBOARD_TOKEN_CORRUPT', field: 'dashboard.token' });
      expect(err.message).toContain('dashboard.token');
      for (const text of [out.stdout.replaceAll(d, ''), out.stderr]) {
        expect(text).not.toContain(held.trim());
        expect(text).not.toContain(held.slice(0, 8));
      }
      expect(readFileSync(file, 'utf8')).toBe(held);
      // No agent was left running.
      expect((await runFerry(['status', '--data', d, '--json'])).code).toBe(1);
    }
  });
});

describe('--dashboard without a port', () => {
  it('takes port 8080; when that is taken, BAD_OPTION names --http-port and says how to choose another', async () => {
    const d = tempDir('busy');
    // Hold 8080 (or find it held already): either way the start must find it taken.
    const holder = createNetServer();
    await new Promise<void>((res) => holder.once('error', () => res()).listen(8080, '127.0.0.1', () => res()));
    try {
      const out = await runFerry(['start', '--data', d, '--port', '0', '--dashboard', '--json']);
      expect(out.code).toBe(1);
      const err = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as { error?: { code: string; field: string; message: string } }).find((l) => l.error)!.error!;
      expect(err).toMatchObject({ code: 'BAD_OPTION', field: '--http-port' });
      expect(err.message).toMatch(/^--http-port: port 8080 on 127\.0\.0\.1 is in use \(the dashboard's default port; choose another with --http-port <n>, 0 for any free one\)$/);
    } finally {
      holder.close();
    }
  });
});
