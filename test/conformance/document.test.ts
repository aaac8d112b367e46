/**
 * transports/PROTOCOL.md against itself and against the suite's own codec, no broker: its hex
 * examples decode to exactly what they annotate and are written as §3.2 says Ferry writes; its
 * JSON examples are well-formed answers of §3.1/§4.1/A.3; and every table the wire suites are
 * driven by can be read from it. If one of these fails after an edit of the document, the
 * message names the section the suite can no longer read.
 */
import { describe, expect, it } from 'vitest';
import { C, decodeStrict, encode, firstOffence, SubsetError, type Node, type Written } from './cbor.js';
import { assertReadable, fieldCases, step3Cases, subsetCases, type Case, type EnvelopeFn } from './cases.js';
import { ANY, ProtocolDoc, type HexExample } from './protocol-doc.js';

const doc = ProtocolDoc.read();
const plainJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

/** Encodes a plain envelope the way §3.2 says Ferry writes one: keys in §3.1's order, shortest heads. */
function canonical(env: Record<string, unknown>): Buffer {
  const order = doc.envelopeFields().map((f) => f.key);
  const keys = [...order.filter((k) => k in env), ...Object.keys(env).filter((k) => !order.includes(k))];
  return encode(C.map(keys.map((k) => [k, C.of(env[k])])));
}

describe.each(['3.3', '4.1'] as const)('PROTOCOL.md §%s hex example', (id) => {
  let ex: HexExample;
  it('can be read (annotated dump, "In one piece", annotations)', () => {
    ex = doc.hexExample(id);
    expect(Object.keys(ex.annotated).length, `§${id}: map(${ex.mapSize}) but ${Object.keys(ex.annotated).length} annotated keys`).toBe(ex.mapSize);
  });

  it('"In one piece" decodes, with the suite\'s strict codec, to exactly the annotated envelope', () => {
    ex ??= doc.hexExample(id);
    const written = new Map<string, Written>();
    const decoded = decodeStrict(ex.onePiece, doc.maxDepth(), 'envelope', written);
    expect(plainJson(decoded)).toEqual(ex.annotated);
    // §3.2: v, ts (and ttl) are major type 0 on the wire.
    for (const k of ['v', 'ts', 'ttl']) if (written.has(k)) expect(written.get(k)!.major, `§${id}: ${k} must be major type 0`).toBe(0);
  });

  it('"In one piece" is the annotated dump\'s hex column (elisions aside)', () => {
    ex ??= doc.hexExample(id);
    expect(ex.onePiece.toString('hex')).toMatch(ex.dumpPattern);
  });

  it('every "(N chars)" annotation counts its string right', () => {
    ex ??= doc.hexExample(id);
    for (const c of ex.charCounts) expect(c.value.length, `§${id}: "${c.value}"`).toBe(c.chars);
  });

  it('is written as §3.2 says Ferry writes: keys in §3.1\'s order, shortest length heads', () => {
    ex ??= doc.hexExample(id);
    expect(canonical(ex.annotated).toString('hex')).toBe(ex.onePiece.toString('hex'));
  });

  it('its "i.e." JSON (if any) is the same envelope', () => {
    ex ??= doc.hexExample(id);
    if (id === '4.1') expect(ex.json, '§4.1 has no "i.e." JSON block').toBeDefined();
    if (ex.json !== undefined) expect(ex.json).toEqual(ex.annotated);
  });

  it('is a well-formed envelope of §3.1 (and, for §4.1, an error answer of §4.1)', () => {
    ex ??= doc.hexExample(id);
    const env = ex.annotated;
    for (const f of doc.envelopeFields()) {
      if (f.required === 'yes') expect(env, `§${id}: required ${f.key}`).toHaveProperty(f.key);
    }
    if (id === '3.3') expect(env).toHaveProperty('replyTo');
    if (id === '4.1') {
      expect(env.type).toBe('error');
      expect(env).toHaveProperty('corr');
      expect(env).not.toHaveProperty('replyTo');
      const body = env.body as Record<string, unknown>;
      const keys = doc.errorBody();
      for (const k of Object.keys(body)) expect(keys.map((x) => x.key), `§4.1 example body key ${k}`).toContain(k);
      for (const k of keys.filter((x) => !x.optional)) expect(body).toHaveProperty(k.key);
      if (body.details !== undefined) {
        const allowed = doc.detailsTable().filter((d) => d.code === body.code);
        for (const [k, v] of Object.entries(body.details as Record<string, unknown>)) {
          const row = allowed.find((d) => d.key === k);
          expect(row, `§4.1 example: ${body.code} defines no details key ${k}`).toBeDefined();
          if (row?.type === 'uint') expect(Number.isInteger(v) && (v as number) >= 0).toBe(true);
        }
      }
    }
  });
});

describe('PROTOCOL.md App mailbox examples (A.4) and lists (A.3)', () => {
  it('A.3 lists the app codes, each code of the A.4 examples among them', () => {
    const codes = doc.appCodes();
    const ex = doc.mailboxExamples();
    for (const a of [ex.badRequest, ex.alreadyApplied]) {
      const code = (a.body as { code: string }).code;
      expect([...codes.keys()]).toContain(code);
      const field = codes.get(code);
      if (field !== undefined) expect((a.body as { field?: string }).field, `A.3 gives ${code} field ${field}`).toBe(field);
    }
  });

  it('A.4\'s request is a valid app.call of A.2, and its answers answer it (A.3)', () => {
    const ex = doc.mailboxExamples();
    const req = ex.request;
    for (const f of doc.envelopeFields()) if (f.required === 'yes') expect(req, `A.4 request: ${f.key}`).toHaveProperty(f.key);
    expect(req.type).toBe('app.call');
    expect(ex.topic).toMatch(/^ferry\/v1\/app\/[a-z][a-z0-9-]{0,63}\/req$/);
    const body = req.body as { handler: unknown; message: unknown };
    expect(typeof body.handler).toBe('string');
    for (const a of [ex.ok, ex.alreadyApplied]) expect(a.corr).toBe(req.id);
    for (const a of [ex.ok, ex.badRequest, ex.alreadyApplied]) {
      expect(a).not.toHaveProperty('ttl'); // A.3: no ttl
      expect(a.v).toBe(1);
      expect(a.id).toBe(ANY);
    }
    expect((ex.badRequest.body as { field: string }).field).toBe(doc.step3().handlerField);
  });

  it('A.4.1\'s rememberReplies default is the "newer requests" of the APP_ALREADY_APPLIED example', () => {
    const n = doc.rememberRepliesDefault();
    expect(doc.section('A.4').replace(/,/g, '')).toContain(`replayed after ${n} newer requests`);
  });

  it('§1 and A.4 step 1 agree on the maximum payload; §3.2 and A.4 step 3 on the depth', () => {
    expect(doc.maxPayloadBytes()).toBeGreaterThan(0);
    expect(doc.maxDepth()).toBeGreaterThan(1);
  });
});

describe('the hostile-input tables built from the document', () => {
  const maxDepth = (() => {
    try {
      return doc.maxDepth();
    } catch {
      return 64;
    }
  })();
  const tables = {
    '§3.2 subset rules': subsetCases(doc, maxDepth),
    '§3.1 fields': fieldCases(doc, () => ({ inbox: 'ferry/v1/inbox/doc-check' })),
    'A.4 step 3': step3Cases(doc),
  };

  it.each(Object.entries(tables))('%s: every rule of the section is one the suite has inputs for', (_name, t) => {
    assertReadable(t);
    expect(t.cases.length).toBeGreaterThan(0);
  });

  /** A stand-in for Mailbox.envelope: the same fields and order, without a broker. */
  const env: EnvelopeFn = (parts, shape = {}) => {
    const all: Record<string, unknown> = { v: 1, type: 'app.call', id: 'x', from: 'doc-check', replyTo: 'ferry/v1/inbox/doc-check', ts: Date.now(), ...parts };
    const order = shape.order ?? doc.envelopeFields().map((f) => f.key);
    const entries: Array<[Node | string, Node]> = [];
    for (const k of order) if (all[k] !== undefined) entries.push([k, C.of(all[k])]);
    return C.map([...entries, ...(shape.extra ?? [])], shape.indef ?? false);
  };
  const all: Case[] = Object.values(tables).flatMap((t) => t.cases);

  it('the suite\'s own strict decoder agrees with every expectation of the tables (the oracle is checked before the agent)', () => {
    const wrong: string[] = [];
    for (const c of all) {
      const bytes = c.build('AAECAwQFBgcICQoLDA0ODw', env);
      let err: SubsetError | undefined;
      try {
        decodeStrict(bytes, maxDepth);
      } catch (e) {
        if (!(e instanceof SubsetError)) throw e;
        err = e;
      }
      // A key written twice is an offence of the map that holds it: `body` twice is the envelope's.
      const owner = err ? (err.rule === 'dup-key' ? (err.path === 'body' ? 'envelope' : err.path.replace(/(\.[^.[\]]+|\[[^\]]*\])$/, '')) : err.path) : '';
      const inBody = err && (owner === 'body' || owner.startsWith('body.') || owner.startsWith('body['));
      if (c.expect === 'accepted' || c.expect === 'one-way') {
        if (err) wrong.push(`${c.name}: expected inside the subset, the suite's decoder says ${err.message}`);
      } else if (c.expect === 'bad-request' && c.field?.startsWith('body') && (err || !c.rule.includes('A.4'))) {
        // (A.4 step 3's refusals of a body inside the subset, such as no handler, are not subset offences.)
        if (!err || err.path !== c.field) wrong.push(`${c.name}: expected the first offence at ${c.field}, the suite's decoder says ${err?.message ?? 'nothing'}`);
      } else if (c.expect === 'bad-request-or-dropped') {
        if (!inBody) wrong.push(`${c.name}: expected an offence in the body, got ${err?.message ?? 'none'}`);
      } else if (c.expect === 'dropped' && err && inBody && err.rule !== 'not-well-formed') {
        wrong.push(`${c.name}: expected to be dropped, but its only subset offence is in the body (${err.message})`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('the node-tree oracle and the byte decoder find the same first offence', () => {
    const deep = C.map([['x', C.nest(70, C.tag(2, C.bytes([1])))]]);
    const o = firstOffence(deep, 'envelope', 1, maxDepth);
    let path = '';
    try {
      decodeStrict(encode(deep), maxDepth);
    } catch (e) {
      path = (e as SubsetError).path;
    }
    expect(o?.path).toBe(path);
    expect(o?.rule).toBe('depth');
  });
});

describe('a changed document fails the suite, naming the section', () => {
  const edit = (from: string | RegExp, to: string) => {
    const text = doc.text.replace(from, to);
    expect(text, `the edit of ${String(from)} changed nothing: the document moved, update this test`).not.toBe(doc.text);
    return new ProtocolDoc(text);
  };

  it('§3.3 without its "In one piece" block', () => {
    expect(() => edit(/In one piece:\n\n```\na8/, 'All together:\n\n```\na8').hexExample('3.3')).toThrow(/§3\.3 changed/);
  });

  it('§3.2 with a rule the suite has no input for', () => {
    const t = subsetCases(edit('- at most **64 levels**', '- no map may hold more than 8 keys;\n- at most **64 levels**'), 64);
    expect(t.problems.join('\n')).toMatch(/§3\.2 has a rule the suite has no input for: "no map may hold more than 8 keys;"/);
  });

  it('§3.2 without a rule the suite tests', () => {
    const t = subsetCases(edit(/- text strings that are valid UTF-8;\n/, ''), 64);
    expect(t.problems.join('\n')).toMatch(/§3\.2 no longer has the rule the suite calls "utf8"/);
  });

  it('A.3 without the codes list, A.4 without step 3\'s field, §3.1 with an unknown type', () => {
    expect(() => edit("The app's codes:", 'Codes:').appCodes()).toThrow(/§A\.3 changed/);
    expect(() => edit('(field `envelope.type`)', '').step3()).toThrow(/§A\.4 changed/);
    expect(fieldCases(edit('| `ttl` | unsigned int |', '| `ttl` | duration |'), () => ({ inbox: 'x' })).problems.join('\n')).toMatch(/§3\.1's `ttl` has a type the suite has no bad values for/);
  });
});
