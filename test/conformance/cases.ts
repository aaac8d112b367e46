/**
 * The hostile-input tables, built from the text of transports/PROTOCOL.md:
 *
 * - `subsetCases`: one or more inputs per rule of §3.2 (each bullet and paragraph of the section
 *   is matched to a recogniser; the numbers in it, the tags, the initial bytes, the simple values,
 *   the depth, the fields that must be unsigned, are read from the sentence). Each hostile value
 *   is placed inside the `body` (A.4 step 3: answered APP_BAD_REQUEST naming the offence's path)
 *   and outside it (A.4 step 1: dropped unanswered). What the rule allows is sent too, and must run.
 * - `fieldCases`: §3.1's table, one bad value per column constraint (dropped).
 * - `step3Cases`: A.4 step 3's refusals, with the fields the step names.
 *
 * A bullet or paragraph no recogniser knows is a `problem`: the document grew a rule the suite
 * does not test, and `document.test.ts` fails saying so.
 */
import { C, encode, type Node } from './cbor.js';
import type { ProtocolDoc } from './protocol-doc.js';

/** What an increment sent as a hostile request adds: if it ever shows in the count, something hostile ran. */
export const HOSTILE_BY = 1000;

export type Expect =
  /** Runs: answered app.call.ok, the count grows by `by`. */
  | 'accepted'
  /** Runs one-way (no replyTo): nothing answered, the count grows by `by`. */
  | 'one-way'
  /** A.4 step 3: answered `error` APP_BAD_REQUEST with `field`; nothing runs; the id stays unused. */
  | 'bad-request'
  /** A.4 steps 1–2: acknowledged and dropped: no answer, nothing runs; the id stays unused. */
  | 'dropped'
  /** Not well-formed CBOR inside the body (a stray break, a reserved byte): the document does not say whether that is dropped or answered. Never runs. */
  | 'bad-request-or-dropped'
  /** A.3 / A.4 step 6: runs no handler, answered `error` APP_NO_HANDLER (recorded: final for its id). */
  | 'no-handler';

export interface Case {
  /** Which rule of the document it tests (§, and the rule's words). */
  rule: string;
  name: string;
  expect: Expect;
  /** For accepted and one-way cases: what the increment adds. */
  by: number;
  /** For bad-request: the field the answer must name (`body...` for body offences). */
  field?: string;
  /** False when the request's id itself is unusable (malformed): the follow-up uses a fresh id. */
  idUsable: boolean;
  /** The bytes to publish, given the request id and the envelope builder. */
  build(id: string, env: EnvelopeFn): Buffer;
}

/** Builds an envelope node: the request's fields (defaults: a valid app.call to the inbox), overridden by `parts`. */
export type EnvelopeFn = (parts: Record<string, unknown>, shape?: { order?: string[]; extra?: Array<[Node | string, Node]>; indef?: boolean }) => Node;

const incrementBody = (by: number, extra: Array<[string, Node]> = []) => C.map([['handler', C.text('increment')], ['message', C.map([['by', C.int(by)], ...extra])]]);

/** The body path a value at `message.x` has. */
const X_IN_BODY = 'body.message.x';

/** A hostile value placed in the body (at message.x) and outside it (an unknown envelope key x). */
function both(rule: string, name: string, x: Node, bodyPath: string, opts: { bodyExpect?: Expect } = {}): Case[] {
  return [
    {
      rule,
      name: `${name}, in the body`,
      expect: opts.bodyExpect ?? 'bad-request',
      by: 0,
      field: bodyPath,
      idUsable: true,
      build: (id, env) => encode(env({ id, body: incrementBody(HOSTILE_BY, [['x', x]]) })),
    },
    {
      rule,
      name: `${name}, outside the body (envelope key x)`,
      expect: 'dropped',
      by: 0,
      idUsable: true,
      build: (id, env) => encode(env({ id, body: incrementBody(HOSTILE_BY) }, { extra: [['x', x]] })),
    },
  ];
}

function bodyOnly(rule: string, name: string, body: Node, field: string, expect: Expect = 'bad-request'): Case {
  return { rule, name, expect, by: 0, field, idUsable: true, build: (id, env) => encode(env({ id, body })) };
}

function accepted(rule: string, name: string, by: number, build: Case['build']): Case {
  return { rule, name, expect: 'accepted', by, idUsable: true, build };
}

function dropped(rule: string, name: string, build: Case['build'], idUsable = true): Case {
  return { rule, name, expect: 'dropped', by: 0, idUsable, build };
}

/** The content a tag plausibly wraps (so only the tag is the offence). */
function tagged(tag: number): Node {
  if (tag === 55799 || tag === 28) return C.map([['a', C.uint(1)]]);
  if (tag === 29) return C.uint(0);
  if (tag === 24) return C.bytes(encode(C.uint(1)));
  if (tag === 2 || tag === 3 || (tag >= 64 && tag <= 87)) return C.bytes([0, 1, 2, 3, 4, 5, 6, 7]);
  return C.uint(0);
}

const INVALID_UTF8: Array<[string, number[]]> = [
  ['a lone 0xff byte', [0x61, 0xff]],
  ['an overlong "/" (0xc0 0xaf)', [0xc0, 0xaf]],
  ['a UTF-16 surrogate (0xed 0xa0 0x80)', [0xed, 0xa0, 0x80]],
  ['a cut sequence (0xe2 0x82)', [0x61, 0xe2, 0x82]],
  ['a code point above U+10FFFF (0xf4 0x90 0x80 0x80)', [0xf4, 0x90, 0x80, 0x80]],
];

/** Nested arrays at body.message.x reaching `level` (x is at level 4) around 0. */
const deepInBody = (level: number, kind: 'array' | 'map' = 'array') => C.nest(level - 3, C.uint(0), kind);
/** The path of the container at level `maxDepth + 1` inside `deepInBody`. */
const deepPath = (base: string, baseLevel: number, maxDepth: number, kind: 'array' | 'map' = 'array') => base + (kind === 'array' ? '[0]' : '.a').repeat(maxDepth + 1 - baseLevel);

export interface Table {
  cases: Case[];
  problems: string[];
}

/** §3.2, bullet by bullet. */
export function subsetCases(doc: ProtocolDoc, maxDepth: number): Table {
  const cases: Case[] = [];
  const problems: string[] = [];
  let text: { bullets: string[]; paragraphs: string[] };
  try {
    text = doc.subsetText();
  } catch (e) {
    return { cases, problems: [(e as Error).message] };
  }
  const seen = new Set<string>();
  const recognisers: Array<{ id: string; re: RegExp; make: (s: string) => void }> = [
    {
      id: 'lead',
      re: /is a subset of RFC 8949/,
      make: (s) => {
        if (!/ENVELOPE_MALFORMED/.test(s) || !/first offence/.test(s)) problems.push(`§3.2's first paragraph no longer says offences are ENVELOPE_MALFORMED naming the first offence: ${s}`);
      },
    },
    {
      id: 'one item',
      re: /exactly one data item/,
      make: () => {
        const r = '§3.2 exactly one data item, nothing after it';
        cases.push(dropped(r, 'a byte (0x00) after the envelope', (id, env) => Buffer.concat([encode(env({ id, body: incrementBody(HOSTILE_BY) })), Buffer.of(0x00)])));
        cases.push(dropped(r, 'a null (0xf6) after the envelope', (id, env) => Buffer.concat([encode(env({ id, body: incrementBody(HOSTILE_BY) })), Buffer.of(0xf6)])));
        cases.push(
          dropped(r, 'a second whole envelope after the first', (id, env) =>
            Buffer.concat([encode(env({ id, body: incrementBody(HOSTILE_BY) })), encode(env({ id: `${id}-second`, body: incrementBody(HOSTILE_BY) }))]),
          ),
        );
      },
    },
    {
      id: 'definite',
      re: /definite lengths only/,
      make: (s) => {
        const r = '§3.2 definite lengths only';
        const bytes = [...s.matchAll(/0x([0-9a-f]{2})/g)].map((m) => parseInt(m[1]!, 16));
        if (bytes.length === 0) problems.push(`§3.2's definite-length rule names no initial bytes: ${s}`);
        for (const b of bytes) {
          const x =
            b === 0x5f ? C.chunked(2, [[1, 2], [3]])
            : b === 0x7f ? C.chunked(3, [[0x61, 0x62], [0x63]])
            : b === 0x9f ? C.array([C.uint(1), C.uint(2)], true)
            : b === 0xbf ? C.map([['a', C.uint(1)]], true)
            : b === 0xff ? C.brk()
            : undefined;
          if (!x) {
            problems.push(`§3.2's definite-length rule names initial byte 0x${b.toString(16)}, which the suite has no input for`);
            continue;
          }
          // A stray break is not well-formed CBOR: where the body ends cannot be known.
          cases.push(...both(r, `initial byte 0x${b.toString(16)}`, x, X_IN_BODY, b === 0xff ? { bodyExpect: 'bad-request-or-dropped' } : {}));
        }
        cases.push(dropped(r, 'the envelope itself as an indefinite-length map (0xbf)', (id, env) => encode(env({ id, body: incrementBody(HOSTILE_BY) }, { indef: true }))));
        cases.push(bodyOnly(r, 'the body itself as an indefinite-length map (0xbf)', C.map([['handler', C.text('increment')], ['message', C.map([['by', C.uint(HOSTILE_BY)]])]], true), 'body'));
      },
    },
    {
      id: 'tags',
      re: /no tags/,
      make: (s) => {
        const r = '§3.2 no tags';
        if (!/major type 6/.test(s)) problems.push(`§3.2's tag rule no longer says "major type 6": ${s}`);
        const tags = new Set<number>();
        for (const m of s.matchAll(/not (\d+)(?:\s*([/–-])\s*(\d+))?/g)) {
          const a = Number(m[1]);
          tags.add(a);
          if (m[3] !== undefined) {
            const b = Number(m[3]);
            tags.add(b);
            if (m[2] !== '/') tags.add(Math.floor((a + b) / 2)); // a range: its ends and its middle
          }
        }
        if (tags.size === 0) problems.push(`§3.2's tag rule names no tag numbers: ${s}`);
        for (const t of tags) cases.push(...both(r, `tag ${t}`, C.tag(t, tagged(t)), X_IN_BODY));
        cases.push(dropped(r, 'tag 55799 (self-describe) around the whole envelope', (id, env) => encode(C.tag(55799, env({ id, body: incrementBody(HOSTILE_BY) })))));
        cases.push(bodyOnly(r, 'tag 28 (shareable) around the body', C.tag(28, incrementBody(HOSTILE_BY)), 'body'));
        cases.push(bodyOnly(r, 'the message as tag 29 (a shared reference)', C.map([['handler', C.text('increment')], ['message', C.tag(29, C.uint(0))]]), 'body.message'));
      },
    },
    {
      id: 'utf8',
      re: /valid UTF-8/,
      make: () => {
        const r = '§3.2 text strings that are valid UTF-8';
        for (const [name, b] of INVALID_UTF8) cases.push(...both(r, `text with ${name}`, C.rawText(b), X_IN_BODY));
        cases.push(bodyOnly(r, 'a message key that is not UTF-8', C.map([['handler', C.text('increment')], ['message', C.map([['by', C.uint(HOSTILE_BY)], [C.rawText([0x6b, 0xff]), C.uint(1)]])]]), 'body.message'));
        cases.push(bodyOnly(r, 'a handler name that is not UTF-8', C.map([['handler', C.rawText([0x69, 0x6e, 0xc0, 0xaf])], ['message', C.map([['by', C.uint(HOSTILE_BY)]])]]), 'body.handler'));
        cases.push(dropped(r, '`from` that is not UTF-8', (id, env) => encode(env({ id, from: C.rawText([0x66, 0xff]), body: incrementBody(HOSTILE_BY) }))));
        cases.push(dropped(r, '`id` that is not UTF-8', (id, env) => encode(env({ id: C.rawText([...Buffer.from(id), 0xff]), body: incrementBody(HOSTILE_BY) })), false));
      },
    },
    {
      id: 'keys',
      re: /keys are text strings/,
      make: (s) => {
        const r = '§3.2 map keys are text strings, each at most once';
        if (!/at most once/.test(s)) problems.push(`§3.2's map-key rule no longer says "each key at most once": ${s}`);
        const nonText: Array<[string, Node]> = [
          ['an unsigned-integer key', C.uint(1)],
          ['a negative-integer key', C.nint(0)],
          ['a byte-string key', C.bytes([0x61])],
          ['an array key', C.array([])],
        ];
        for (const [name, k] of nonText) cases.push(...both(r, name, C.map([[k, C.uint(1)]]), X_IN_BODY));
        cases.push(bodyOnly(r, 'the message with `by` twice (1000, then 1)', C.map([['handler', C.text('increment')], ['message', C.map([['by', C.uint(HOSTILE_BY)], ['by', C.uint(1)]])]]), 'body.message.by'));
        cases.push(bodyOnly(r, 'the body with `handler` twice', C.map([['handler', C.text('nope')], ['handler', C.text('increment')], ['message', C.map([['by', C.uint(HOSTILE_BY)]])]]), 'body.handler'));
        for (const k of ['v', 'id', 'ts', 'body']) {
          cases.push(
            dropped(r, `the envelope with \`${k}\` twice`, (id, env) => {
              const again: Record<string, Node> = { v: C.uint(1), id: C.text(id), ts: C.uint(Date.now()), body: incrementBody(HOSTILE_BY) };
              return encode(env({ id, body: incrementBody(HOSTILE_BY) }, { extra: [[k, again[k]!]] }));
            }),
          );
        }
        cases.push(dropped(r, 'the envelope with an integer key', (id, env) => encode(env({ id, body: incrementBody(HOSTILE_BY) }, { extra: [[C.uint(1), C.uint(1)]] }))));
      },
    },
    {
      id: 'simple',
      re: /simple values/,
      make: (s) => {
        const r = '§3.2 simple values false, true, null, undefined only; floats of any width';
        const range = /`0x([0-9a-f]{2})`\s*[–-]\s*`0x([0-9a-f]{2})`/.exec(s);
        if (!range) {
          problems.push(`§3.2's simple-value rule no longer gives a range \`0x..\`–\`0x..\`: ${s}`);
          return;
        }
        const lo = parseInt(range[1]!, 16) & 31;
        const hi = parseInt(range[2]!, 16) & 31;
        for (let n = lo; n <= hi; n++) cases.push(accepted(r, `simple value ${n} (0x${(0xe0 | n).toString(16)}) in the message`, 1, (id, env) => encode(env({ id, body: incrementBody(1, [['x', C.simple(n)]]) }))));
        for (const n of [0, 19, 32, 255].filter((v) => v < lo || v > hi)) cases.push(...both(r, `simple value ${n}`, C.simple(n), X_IN_BODY));
        const floats = [...(/floats of any width \(([^)]*)\)/.exec(s)?.[1] ?? '').matchAll(/0x([0-9a-f]{2})/g)].map((m) => parseInt(m[1]!, 16));
        if (floats.length === 0) problems.push(`§3.2's simple-value rule no longer lists the float initial bytes: ${s}`);
        for (const f of floats) {
          const x = f === 0xf9 ? C.f16bits(0x3e00) : f === 0xfa ? C.f32(1.5) : f === 0xfb ? C.f64(1.5) : undefined;
          if (!x) problems.push(`§3.2 lists float byte 0x${f.toString(16)}, which is no float of RFC 8949`);
          else cases.push(accepted(r, `a float 1.5 written 0x${f.toString(16)} in the message`, 1, (id, env) => encode(env({ id, body: incrementBody(1, [['x', x]]) }))));
        }
        // Additional information 28-30 is reserved: not CBOR at all.
        cases.push(...both(r, 'reserved initial byte 0xfc', C.reserved(0xfc), X_IN_BODY, { bodyExpect: 'bad-request-or-dropped' }));
      },
    },
    {
      id: 'depth',
      re: /levels\*\* of nested arrays and maps/,
      make: () => {
        const r = `§3.2 at most ${maxDepth} levels of nested arrays and maps`;
        cases.push(accepted(r, `arrays nested to level ${maxDepth} exactly`, 1, (id, env) => encode(env({ id, body: incrementBody(1, [['x', deepInBody(maxDepth)]]) }))));
        cases.push(accepted(r, `maps nested to level ${maxDepth} exactly`, 1, (id, env) => encode(env({ id, body: incrementBody(1, [['x', deepInBody(maxDepth, 'map')]]) }))));
        for (const level of [maxDepth + 1, 2000, 3000]) {
          cases.push(bodyOnly(r, `arrays nested ${level} levels deep, in the body`, incrementBody(HOSTILE_BY, [['x', deepInBody(level)]]), deepPath(X_IN_BODY, 4, maxDepth)));
        }
        cases.push(bodyOnly(r, `maps nested ${maxDepth + 1} levels deep, in the body`, incrementBody(HOSTILE_BY, [['x', deepInBody(maxDepth + 1, 'map')]]), deepPath(X_IN_BODY, 4, maxDepth, 'map')));
        for (const level of [maxDepth + 1, 3000]) {
          cases.push(dropped(r, `arrays nested ${level} levels deep, outside the body`, (id, env) => encode(env({ id, body: incrementBody(HOSTILE_BY) }, { extra: [['x', C.nest(level - 1, C.uint(0))]] }))));
        }
      },
    },
    {
      id: 'integers',
      re: /Integers of either sign up to (\d+) bits are allowed/,
      make: (s) => {
        const bits = Number(/up to (\d+) bits/.exec(s)![1]);
        const r = `§3.2 integers of either sign up to ${bits} bits`;
        const max = (1n << BigInt(bits)) - 1n;
        cases.push(accepted(r, `the largest and smallest ${bits}-bit integers in the message`, 1, (id, env) => encode(env({ id, body: incrementBody(1, [['x', C.array([C.uint(max), C.nint(max), C.uint(2n ** 53n + 1n), C.nint(0, 8)])]]) }))));
      },
    },
    {
      id: 'bytes',
      re: /Byte strings are major type 2/,
      make: () => {
        const r = '§3.2 byte strings are major type 2; no packed or record extensions';
        cases.push(accepted(r, 'a byte string in the message', 1, (id, env) => encode(env({ id, body: incrementBody(1, [['x', C.bytes([0, 1, 2, 255])]]) }))));
        // cbor-x's record extension is tag 105; packed CBOR uses tags 51 and 6.
        for (const [t, what] of [
          [105, 'a record (tag 105)'],
          [51, 'packed CBOR (tag 51)'],
          [6, 'a packed reference (tag 6)'],
        ] as const) {
          cases.push(...both(r, what, C.tag(t, C.array([C.uint(0)])), X_IN_BODY));
        }
      },
    },
    {
      id: 'key order',
      re: /accept any key order/,
      make: (s) => {
        const r = '§3.2 receivers accept any key order';
        if (!/shortest length headers/.test(s)) problems.push(`§3.2 no longer says Ferry writes the shortest length headers: ${s}`);
        let reversed: string[] = [];
        try {
          reversed = doc.envelopeFields().map((f) => f.key).reverse();
        } catch (e) {
          problems.push((e as Error).message);
        }
        cases.push(accepted(r, "the envelope keys in the reverse of §3.1's order", 1, (id, env) => encode(env({ id, body: incrementBody(1) }, { order: reversed }))));
        cases.push(accepted(r, 'the body with message before handler', 1, (id, env) => encode(env({ id, body: C.map([['message', C.map([['by', C.uint(1)]])], ['handler', C.text('increment')]]) }))));
        // The document asks the shortest headers of Ferry's writers only; RFC 8949 reads longer ones.
        cases.push(accepted(r, 'longer-than-shortest integer heads (v as 0x18 0x01, by as 0x1a)', 1, (id, env) => encode(env({ id, v: C.uint(1, 1), body: C.map([['handler', C.text('increment')], ['message', C.map([['by', C.uint(1, 4)]])]]) }))));
      },
    },
    {
      id: 'unsigned fields',
      re: /are unsigned integers \(major type 0\)/,
      make: (s) => {
        const fields = (/^((?:`\w+`(?:,\s*|\s+and\s+))+`\w+`) are unsigned integers/.exec(s)?.[1] ?? '').match(/\w+/g)?.filter((w) => w !== 'and') ?? [];
        if (fields.length === 0) problems.push(`§3.2 no longer names the fields that are unsigned integers: ${s}`);
        const r = `§3.2 ${fields.map((f) => `\`${f}\``).join(', ')} are unsigned integers; a float is malformed`;
        for (const f of fields) {
          const value = f === 'v' ? 1 : f === 'ts' ? Date.now() : 60_000;
          cases.push(dropped(r, `\`${f}\` as a float64 with an integral value`, (id, env) => encode(env({ id, [f]: C.f64(f === 'ts' ? Date.now() : value), body: incrementBody(HOSTILE_BY) }))));
          if (value < 65504) cases.push(dropped(r, `\`${f}\` as a float32 with an integral value`, (id, env) => encode(env({ id, [f]: C.f32(value), body: incrementBody(HOSTILE_BY) }))));
        }
        cases.push(dropped(r, '`v` as the half float 1.0 (0xf9 0x3c00)', (id, env) => encode(env({ id, v: C.f16bits(0x3c00), body: incrementBody(HOSTILE_BY) }))));
        if (/SHOULD accept a float64 with an integral value/.test(s)) {
          cases.push(accepted('§3.2 receivers SHOULD accept a float64 with an integral value where a body expects an integer', '`by` as the float64 2.0', 2, (id, env) => encode(env({ id, body: C.map([['handler', C.text('increment')], ['message', C.map([['by', C.f64(2)]])]]) }))));
        } else problems.push(`§3.2 no longer says receivers SHOULD accept an integral float64 in a body: ${s}`);
      },
    },
    {
      id: 'present undefined',
      re: /present as `undefined`/,
      make: (s) => {
        const r = '§3.2 an optional field present as undefined is the wrong type; body is present whatever its value';
        if (!/`body` is\s+present whatever its value/.test(s)) problems.push(`§3.2 no longer says body is present whatever its value: ${s}`);
        for (const f of ['replyTo', 'corr', 'ttl']) cases.push(dropped(r, `\`${f}\` present as undefined (0xf7)`, (id, env) => encode(env({ id, [f]: C.undefined(), body: incrementBody(HOSTILE_BY) }))));
      },
    },
    {
      id: 'not well-formed body',
      re: /A body that is not well-formed CBOR/,
      make: () => {
        const r = '§3.2 a body that is not well-formed CBOR makes the whole payload malformed (dropped)';
        cases.push(dropped(r, 'a stray break (0xff) inside the body', (id, env) => encode(env({ id, body: incrementBody(HOSTILE_BY, [['x', C.brk()]]) }))));
      },
    },
    {
      id: 'utf-16 lengths',
      re: /count UTF-16 code units/,
      make: () => {
        const r = '§3.2 lengths in characters count UTF-16 code units';
        // 128 astral characters: 256 UTF-16 code units (512 bytes of UTF-8) — the longest `from`.
        cases.push(accepted(r, '`from` of 128 astral characters (256 UTF-16 code units)', 1, (id, env) => encode(env({ id, from: C.text('😀'.repeat(128)), body: incrementBody(1) }))));
        cases.push(dropped(r, '`from` of 129 astral characters (258 UTF-16 code units)', (id, env) => encode(env({ id, from: C.text('😀'.repeat(129)), body: incrementBody(HOSTILE_BY) }))));
      },
    },
    {
      id: 'unknown keys',
      re: /Unknown extra keys in an envelope are ignored/,
      make: () => {
        const r = '§3.2 unknown extra keys are ignored';
        cases.push(accepted(r, 'two unknown envelope keys', 1, (id, env) => encode(env({ id, body: incrementBody(1) }, { extra: [['x', C.map([['a', C.array([C.uint(1)])]])], ['zz', C.text('later revision')]] }))));
      },
    },
  ];
  for (const s of [...text.paragraphs, ...text.bullets]) {
    const hits = recognisers.filter((r) => r.re.test(s));
    if (hits.length !== 1) {
      problems.push(hits.length === 0 ? `§3.2 has a rule the suite has no input for: "${s}"` : `§3.2's rule "${s}" matches several of the suite's recognisers (${hits.map((h) => h.id).join(', ')})`);
      continue;
    }
    seen.add(hits[0]!.id);
    hits[0]!.make(s);
  }
  for (const r of recognisers) if (!seen.has(r.id)) problems.push(`§3.2 no longer has the rule the suite calls "${r.id}" (${r.re})`);
  return { cases, problems };
}

/** §3.1's table: a bad value for each constraint of each field; every one is dropped. */
export function fieldCases(doc: ProtocolDoc, me: () => { inbox: string }): Table {
  const cases: Case[] = [];
  const problems: string[] = [];
  let rows;
  try {
    rows = doc.envelopeFields();
  } catch (e) {
    return { cases, problems: [(e as Error).message] };
  }
  const body = incrementBody(HOSTILE_BY);
  const r = (key: string, what: string) => `§3.1 \`${key}\`: ${what}`;
  for (const row of rows) {
    const k = row.key;
    const idUsable = k !== 'id';
    const bad = (name: string, value: Node) => cases.push(dropped(r(k, row.type), `\`${k}\` ${name}`, (id, env) => encode(env({ id, body, [k]: value })), idUsable));
    const missing = () =>
      cases.push(
        dropped(r(k, `required (${row.required})`), `\`${k}\` missing`, (id, env) => {
          const n = env({ id, body });
          return encode(C.map((n as Extract<Node, { k: 'map' }>).entries.filter(([key]) => !(key.k === 'text' && Buffer.from(key.b).toString() === k))));
        }, idUsable),
      );
    if (row.required === 'yes') missing();
    // `undefined` (0xf7) is a plain value of §3.2 but no value of any field's type: present and wrong, not absent.
    if (!/^any plain CBOR data$/.test(row.type)) bad('as undefined (0xf7)', C.undefined());
    let m: RegExpExecArray | null;
    if (/^unsigned int$/.test(row.type)) {
      bad('negative (-1)', C.nint(0));
      bad('as text', C.text('1'));
      const only = /\*\*(\d+)\*\*/.exec(row.meaning);
      if (only) bad(`other than ${only[1]} (ENVELOPE_VERSION, §3.4 step 4)`, C.uint(Number(only[1]) + 1));
    } else if ((m = /^text, 1\.\.(\d+) chars$/.exec(row.type))) {
      const max = Number(m[1]);
      bad('empty', C.text(''));
      bad(`of ${max + 1} characters`, C.text('a'.repeat(max + 1)));
      bad('an integer', C.uint(7));
    } else if ((m = /^text, topic without (.+?), ≤ (\d+) chars$/.exec(row.type))) {
      const max = Number(m[2]);
      const chars = m[1]!.replace(/`/g, '').split(/\s+/).filter(Boolean);
      for (const ch of chars) {
        const c = ch === 'NUL' ? '\u0000' : ch;
        if (c.length !== 1) problems.push(`§3.1 ${k}: the suite cannot read the forbidden character "${ch}"`);
        bad(`with ${ch === 'NUL' ? 'NUL' : `"${c}"`}`, C.text(`${me().inbox}/${c}`));
      }
      bad(`of ${max + 1} characters`, C.text(`${me().inbox}/${'a'.repeat(max)}`));
      bad('empty', C.text(''));
      bad('an integer', C.uint(7));
      if (row.required === 'requests') {
        // A.2: for app.call, replyTo is optional (a one-way request runs and is not answered).
        cases.push({ rule: '§A.2 replyTo optional: one-way', name: 'no `replyTo`: runs one-way, unanswered', expect: 'one-way', by: 1, idUsable: true, build: (id, env) => encode(env({ id, replyTo: undefined, body: incrementBody(1) })) });
      }
    } else if (/^any plain CBOR data$/.test(row.type)) {
      // Present and plain: the absent case is above; what is plain is §3.2's.
    } else {
      problems.push(`§3.1's \`${k}\` has a type the suite has no bad values for: "${row.type}"`);
    }
  }
  return { cases, problems };
}

/** A.4 step 3 (and what of step 1 and 2 the mailbox adds): refusals with the fields the document names. */
export function step3Cases(doc: ProtocolDoc): Table {
  const cases: Case[] = [];
  const problems: string[] = [];
  let s;
  try {
    s = doc.step3();
  } catch (e) {
    return { cases, problems: [(e as Error).message] };
  }
  const r = '§A.4 step 3';
  cases.push({ rule: r, name: '`type` other than app.call (app.calls)', expect: 'bad-request', by: 0, field: s.typeField, idUsable: true, build: (id, env) => encode(env({ id, type: 'app.calls', body: incrementBody(HOSTILE_BY) })) });
  const noHandler: Array<[string, Node]> = [
    ['body null', C.null()],
    ['body undefined (0xf7, a plain value of §3.2)', C.undefined()],
    ['body an array', C.array([C.text('increment')])],
    ['body an integer', C.uint(HOSTILE_BY)],
    ['body a map without handler', C.map([['message', C.map([['by', C.uint(HOSTILE_BY)]])]])],
    ['handler an integer', C.map([['handler', C.uint(1)], ['message', C.map([['by', C.uint(HOSTILE_BY)]])]])],
    ['handler null', C.map([['handler', C.null()], ['message', C.map([['by', C.uint(HOSTILE_BY)]])]])],
    ['handler as bytes', C.map([['handler', C.bytes(Buffer.from('increment'))], ['message', C.map([['by', C.uint(HOSTILE_BY)]])]])],
    ['the handler only under a "__proto__" key', C.map([['__proto__', C.map([['handler', C.text('increment')], ['message', C.map([['by', C.uint(HOSTILE_BY)]])]])]])],
  ];
  for (const [name, body] of noHandler) cases.push(bodyOnly(r, name, body, s.handlerField));
  // The document's own example path of a body offence: build a body whose first offence is exactly there.
  const ex = s.offenceExample;
  const built = bodyAt(ex);
  if (!built) problems.push(`§A.4 step 3's example path "${ex}" is not one the suite can build (body.<key>...[<n>])`);
  else cases.push(bodyOnly(r, `a tag at the document's example path ${ex}`, built, ex));
  const s32 = /\(`(body[.[][^`]*)`/.exec(doc.section('3.2'))?.[1];
  if (!s32) problems.push('§3.2 no longer gives an example path of the first offence (`body...`)');
  else {
    const b = bodyAt(s32);
    if (!b) problems.push(`§3.2's example path "${s32}" is not one the suite can build`);
    else cases.push(bodyOnly('§3.2 field names the path of the first offence', `a tag at §3.2's example path ${s32}`, b, s32));
  }
  // A.2: `message` is any plain CBOR data, handed to the handler as it is: keys that JavaScript
  // treats specially are keys like any other (the counter sees no `by`, so it adds 1).
  const a2 = '§A.2 message: any plain CBOR data';
  for (const key of ['__proto__', 'constructor']) {
    cases.push(accepted(a2, `the message {"${key}": {"by": 1000}} (no \`by\` of its own: +1)`, 1, (id, env) => encode(env({ id, body: C.map([['handler', C.text('increment')], ['message', C.map([[key, C.map([['by', C.uint(HOSTILE_BY)]])]])]]) }))));
  }
  // A.3: the app has no handler of these names, whatever JavaScript objects have.
  for (const h of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
    cases.push({ rule: '§A.3 APP_NO_HANDLER', name: `handler "${h}"`, expect: 'no-handler', by: 0, idUsable: true, build: (id, env) => encode(env({ id, body: C.map([['handler', C.text(h)], ['message', C.map([['by', C.uint(HOSTILE_BY)]])]]) })) });
  }
  return { cases, problems };
}

/**
 * A body (a valid increment by HOSTILE_BY) with a tag at `path` (`body.message.tags[2]`):
 * arrays are filled with zeros before the index, maps get the key.
 */
function bodyAt(path: string): Node | undefined {
  if (!path.startsWith('body')) return undefined;
  const steps = [...path.slice('body'.length).matchAll(/\.([A-Za-z_$][\w$]*)|\[(\d+)\]/g)];
  if (steps.map((m) => m[0]).join('') !== path.slice('body'.length) || steps.length === 0) return undefined;
  const build = (i: number): Node => {
    if (i === steps.length) return C.tag(2, C.bytes([1]));
    const m = steps[i]!;
    if (m[2] !== undefined) return C.array([...Array.from({ length: Number(m[2]) }, () => C.uint(0)), build(i + 1)]);
    return C.map([[m[1]!, build(i + 1)]]);
  };
  // Merge into the increment body: the first step is a body key.
  const first = steps[0]!;
  if (first[1] === undefined) return undefined;
  const inner = build(1);
  if (first[1] === 'message') {
    const rest = inner.k === 'map' ? inner.entries : [];
    return C.map([['handler', C.text('increment')], ['message', C.map([['by', C.uint(HOSTILE_BY)], ...rest])]]);
  }
  return C.map([['handler', C.text('increment')], ['message', C.map([['by', C.uint(HOSTILE_BY)]])], [first[1], inner]]);
}

/** Throws if the document had something the table could not be built from (each problem names its section). */
export function assertReadable(t: Table): void {
  if (t.problems.length > 0) {
    throw new Error(`transports/PROTOCOL.md changed and the conformance tables no longer cover it; update test/conformance/cases.ts:\n- ${t.problems.join('\n- ')}`);
  }
}
