/**
 * Reads transports/PROTOCOL.md, the document the conformance suite is driven by: its sections,
 * its hex and JSON examples, its tables and lists. Every reader throws a `DocError` naming the
 * section when the text no longer has the shape it reads, so a change to the document fails the
 * suite loudly (and says where) instead of quietly testing less.
 */
import { readFileSync } from 'node:fs';

export const PROTOCOL_FILE = new URL('../../transports/PROTOCOL.md', import.meta.url);

export class DocError extends Error {
  constructor(
    readonly section: string,
    what: string,
  ) {
    super(`transports/PROTOCOL.md ${section} changed and the conformance suite can no longer read it: ${what}. Update test/conformance/protocol-doc.ts (and the cases built from it) to the new text.`);
  }
}

/** The value a `...` stands for in the document's examples ("any value of this field's type"). */
export const ANY = '\u2026any';

export interface FieldRow {
  key: string;
  /** The "CBOR type" column, as written. */
  type: string;
  /** The "required" column: `yes`, `no`, `requests`, `answers`. */
  required: string;
  meaning: string;
}

export interface HexExample {
  section: string;
  /** The envelope the annotated dump describes, rebuilt from its annotations. */
  annotated: Record<string, unknown>;
  /** `map(N)` of the dump's first line. */
  mapSize: number;
  /** `(N chars)` annotations: the string annotated just before it, and N. */
  charCounts: Array<{ value: string; chars: number }>;
  /** The dump's hex column, with `...` elisions as wildcards. */
  dumpPattern: RegExp;
  /** The "In one piece" bytes. */
  onePiece: Buffer;
  /** The `i.e.` JSON block, if the section has one. */
  json?: unknown;
}

export interface DetailsRow {
  code: string;
  key: string;
  type: string;
}

export interface MailboxExamples {
  /** The `app.call` request, and the topic it is published to. */
  request: Record<string, unknown>;
  topic: string;
  ok: Record<string, unknown>;
  badRequest: Record<string, unknown>;
  alreadyApplied: Record<string, unknown>;
}

interface Heading {
  level: number;
  id: string;
  line: number;
}

export class ProtocolDoc {
  readonly lines: string[];
  private readonly headings: Heading[] = [];

  constructor(readonly text: string) {
    this.lines = text.split('\n');
    let fenced = false;
    for (const [i, l] of this.lines.entries()) {
      if (/^\s*```/.test(l)) fenced = !fenced;
      if (fenced) continue;
      const m = /^(#{1,6})\s+(\S+)/.exec(l);
      if (m) this.headings.push({ level: m[1]!.length, id: m[2]!.replace(/\.$/, ''), line: i });
    }
  }

  static read(): ProtocolDoc {
    return new ProtocolDoc(readFileSync(PROTOCOL_FILE, 'utf8'));
  }

  /** A section's text (its subsections included), by its number: `1`, `3.2`, `4.1`, `A.4`. */
  section(id: string): string {
    const i = this.headings.findIndex((h) => h.id === id);
    if (i < 0) throw new DocError(`§${id}`, `no heading numbered ${id}`);
    const h = this.headings[i]!;
    const next = this.headings.slice(i + 1).find((n) => n.level <= h.level);
    return this.lines.slice(h.line + 1, next ? next.line : undefined).join('\n');
  }

  /** The fenced code blocks of a section, with the line of prose just before each. */
  private blocks(id: string): Array<{ before: string; body: string }> {
    const lines = this.section(id).split('\n');
    const out: Array<{ before: string; body: string }> = [];
    let prose = '';
    for (let i = 0; i < lines.length; i++) {
      if (/^\s*```/.test(lines[i]!)) {
        const start = i + 1;
        let end = start;
        while (end < lines.length && !/^\s*```/.test(lines[end]!)) end++;
        out.push({ before: prose, body: lines.slice(start, end).join('\n') });
        i = end;
        prose = '';
      } else if (lines[i]!.trim() !== '') prose += ` ${lines[i]!.trim()}`;
    }
    return out;
  }

  /** §1: the default maximum payload, bytes. */
  maxPayloadBytes(): number {
    const m = /Maximum payload:\s*(\d+)\s*KiB/.exec(this.section('1'));
    if (!m) throw new DocError('§1', 'no "Maximum payload: <n> KiB" bullet');
    const bytes = Number(m[1]) * 1024;
    const a4 = /maximum\s+payload\s*\(§1:\s*(\d+)\s*KiB\)/.exec(this.section('A.4'));
    if (!a4) throw new DocError('§A.4', 'step 1 no longer cites "the maximum payload (§1: <n> KiB)"');
    if (Number(a4[1]) * 1024 !== bytes) throw new DocError('§A.4', `step 1 says ${a4[1]} KiB, §1 says ${m[1]} KiB`);
    return bytes;
  }

  /** §3.1's table, in its order (the order Ferry writes the keys in, §3.2). */
  envelopeFields(): FieldRow[] {
    const rows = tableRows(this.section('3.1'));
    const out = rows
      .filter((r) => r.length >= 3 && /^`[A-Za-z]+`$/.test(r[0]!))
      .map((r) => ({ key: r[0]!.slice(1, -1), type: r[1]!, required: r[2]!, meaning: r[3] ?? '' }));
    const keys = out.map((r) => r.key);
    for (const k of ['v', 'type', 'id', 'from', 'replyTo', 'corr', 'ts', 'ttl', 'body']) {
      if (!keys.includes(k)) throw new DocError('§3.1', `the fields table has no row for \`${k}\``);
    }
    return out;
  }

  /** §3.2: the bullets (each joined into one line), and the paragraphs between them. */
  subsetText(): { bullets: string[]; paragraphs: string[] } {
    const bullets: string[] = [];
    const paragraphs: string[] = [];
    let cur: { kind: 'b' | 'p'; text: string } | undefined;
    const flush = () => {
      if (cur) (cur.kind === 'b' ? bullets : paragraphs).push(cur.text.trim());
      cur = undefined;
    };
    for (const l of this.section('3.2').split('\n')) {
      if (/^- /.test(l)) {
        flush();
        cur = { kind: 'b', text: l.slice(2) };
      } else if (l.trim() === '') flush();
      else if (cur) cur.text += ` ${l.trim()}`;
      else cur = { kind: 'p', text: l.trim() };
    }
    flush();
    if (bullets.length < 5) throw new DocError('§3.2', `expected a list of subset rules, found ${bullets.length} bullets`);
    return { bullets, paragraphs };
  }

  /** §3.2: the most levels of nested arrays and maps. */
  maxDepth(): number {
    const m = /at most \*\*(\d+) levels\*\*/.exec(this.section('3.2'));
    if (!m) throw new DocError('§3.2', 'no "at most **<n> levels**" rule');
    const a4 = /nesting past (\d+) levels/.exec(this.section('A.4'));
    if (!a4) throw new DocError('§A.4', 'step 3 no longer names "nesting past <n> levels"');
    if (a4[1] !== m[1]) throw new DocError('§A.4', `step 3 says ${a4[1]} levels, §3.2 says ${m[1]}`);
    return Number(m[1]);
  }

  /** §3.3 or §4.1: the annotated dump, the "In one piece" hex and the `i.e.` JSON. */
  hexExample(id: '3.3' | '4.1'): HexExample {
    const where = `§${id}`;
    const blocks = this.blocks(id);
    const dumpBlock = blocks.find((b) => /^\s*[0-9a-f]{2}\s+map\(\d+\)/.test(b.body));
    if (!dumpBlock) throw new DocError(where, 'no annotated hex dump starting with "<hex> map(<n>)"');
    const pieceBlock = blocks.find((b) => /In one piece:?$/.test(b.before.trim()));
    if (!pieceBlock) throw new DocError(where, 'no "In one piece:" hex block');
    const piece = pieceBlock.body.replace(/\s+/g, '');
    if (!/^([0-9a-f]{2})+$/.test(piece)) throw new DocError(where, 'the "In one piece" block is not plain hex');
    const hexTokens: string[] = [];
    const notes: string[] = [];
    for (const line of dumpBlock.body.split('\n')) {
      const words = line.trim().split(/\s+/).filter(Boolean);
      // Leading words are the hex column while they are hex (an even count of digits, elisions aside).
      let i = 0;
      while (i < words.length && isHexToken(words[i]!)) i++;
      hexTokens.push(...words.slice(0, i));
      notes.push(words.slice(i).join(' '));
    }
    const pattern = hexTokens.join('').split('...').join('(?:[0-9a-f]{2})*?');
    const dumpPattern = new RegExp(`^${pattern}$`);
    const { value, mapSize, charCounts } = parseAnnotations(notes.join(' '), where);
    let json: unknown;
    const ie = blocks.find((b) => /i\.e\.?:?$/.test(b.before.trim()) && b.body.trim().startsWith('{'));
    if (ie) {
      try {
        json = JSON.parse(ie.body);
      } catch (e) {
        throw new DocError(where, `the "i.e." JSON does not parse: ${(e as Error).message}`);
      }
    } else if (id === '4.1') {
      const inline = /i\.e\.\s*`(\{.*?\})`\./s.exec(this.section(id));
      if (inline) json = JSON.parse(inline[1]!);
    }
    return { section: where, annotated: value, mapSize, charCounts, dumpPattern, onePiece: Buffer.from(piece, 'hex'), ...(json !== undefined ? { json } : {}) };
  }

  /** §4.1: the keys of an error answer's body (`body = { "code": text, ... }`) and which are optional. */
  errorBody(): Array<{ key: string; type: string; optional: boolean }> {
    const m = /body\s*=\s*\{([^}]*)\}/.exec(this.section('4.1'));
    if (!m) throw new DocError('§4.1', 'no "body = { ... }" line for error answers');
    const out = [...m[1]!.matchAll(/"(\w+)"\s*:\s*([a-z]+)(\s*\(optional\))?/g)].map((x) => ({ key: x[1]!, type: x[2]!, optional: !!x[3] }));
    if (!out.some((k) => k.key === 'code') || !out.some((k) => k.key === 'message')) throw new DocError('§4.1', 'the error body line no longer has "code" and "message"');
    return out;
  }

  /** §4.1: the details table (code, key, type); empty if the section has none. */
  detailsTable(): DetailsRow[] {
    return tableRows(this.section('4.1'))
      .filter((r) => r.length >= 3 && /^`[A-Z_]+`$/.test(r[0]!) && /^`\w+`$/.test(r[1]!))
      .map((r) => ({ code: r[0]!.slice(1, -1), key: r[1]!.slice(1, -1), type: r[2]! }));
  }

  /** A.3: the app's error codes, each with the `field` the document gives it (if any). */
  appCodes(): Map<string, string | undefined> {
    const a3 = this.section('A.3');
    const m = /The app's codes:([\s\S]*?)(?:\n\s*\n|A failed call)/.exec(a3);
    if (!m) throw new DocError('§A.3', 'no "The app\'s codes:" list');
    const list = m[1]!.replace(/\s+/g, ' ');
    const out = new Map<string, string | undefined>();
    const re = /`([A-Z][A-Z0-9_]+)`(\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\))?/g;
    for (const x of list.matchAll(re)) {
      const field = x[3] ? /field `([^`]+)`/.exec(x[3])?.[1] : undefined;
      out.set(x[1]!, field);
    }
    if (!out.has('APP_BAD_REQUEST') || !out.has('APP_NO_HANDLER')) throw new DocError('§A.3', `the codes list lost APP_BAD_REQUEST or APP_NO_HANDLER (read: ${[...out.keys()].join(', ')})`);
    return out;
  }

  /** A.4 step 3: the field named for a wrong `type`, for a body without a text handler, and the example path of a body offence. */
  step3(): { typeField: string; handlerField: string; offenceExample: string } {
    const a4 = this.section('A.4');
    const step = /\n3\. answers it with `error` `APP_BAD_REQUEST`([\s\S]*?)\n4\. /.exec(a4);
    if (!step) throw new DocError('§A.4', 'step 3 no longer starts "answers it with `error` `APP_BAD_REQUEST`"');
    const s = step[1]!.replace(/\s+/g, ' ');
    const typeField = /`type` is not `app\.call` \(field `([^`]+)`\)/.exec(s)?.[1];
    const handlerField = /not a map with a text `handler` \(field `([^`]+)`\)/.exec(s)?.[1];
    const offenceExample = /first offence, e\.g\. `([^`]+)`/.exec(s)?.[1];
    if (!typeField || !handlerField || !offenceExample) throw new DocError('§A.4', `step 3 lost one of: the type field, the handler field, the offence example (read: ${typeField}, ${handlerField}, ${offenceExample})`);
    if (!/not recorded|nothing is recorded/.test(s) || !/same `id` sent again with a valid request runs/.test(s)) {
      throw new DocError('§A.4', 'step 3 no longer says nothing is recorded and the same id sent again with a valid request runs');
    }
    return { typeField, handlerField, offenceExample };
  }

  /** A.4.1: the default `rememberReplies`. */
  rememberRepliesDefault(): number {
    const m = /`rememberReplies` newer ids \(([\d,]+) by default/.exec(this.section('A.4'));
    if (!m) throw new DocError('§A.4.1', 'no "`rememberReplies` newer ids (<n> by default" text');
    return Number(m[1]!.replace(/,/g, ''));
  }

  /** A.4's JSON examples: the request, its answer, the answer to a request without handler, the replay's answer. */
  mailboxExamples(): MailboxExamples {
    const blocks = this.blocks('A.4').filter((b) => b.body.trim().startsWith('{'));
    const parsed = blocks.map((b) => ({ before: b.before, value: parseExampleJson(b.body, '§A.4') }));
    const find = (what: string, pred: (v: Record<string, unknown>) => boolean) => {
      const found = parsed.filter((p) => pred(p.value));
      if (found.length !== 1) throw new DocError('§A.4', `expected one JSON example of ${what}, found ${found.length}`);
      return found[0]!;
    };
    const req = find('an app.call request', (v) => v.type === 'app.call');
    const topic = /published to\s+`([^`]+)`/.exec(req.before)?.[1];
    if (!topic) throw new DocError('§A.4', 'the request example no longer says "published to `<topic>`"');
    const code = (v: Record<string, unknown>) => (v.body as { code?: unknown } | null)?.code;
    return {
      request: req.value,
      topic,
      ok: find('an app.call.ok answer', (v) => v.type === 'app.call.ok').value,
      badRequest: find('an APP_BAD_REQUEST answer', (v) => v.type === 'error' && code(v) === 'APP_BAD_REQUEST').value,
      alreadyApplied: find('an APP_ALREADY_APPLIED answer', (v) => v.type === 'error' && code(v) === 'APP_ALREADY_APPLIED').value,
    };
  }
}

function isHexToken(w: string): boolean {
  const digits = w.replace('...', '');
  return /^[0-9a-f]+(\.\.\.[0-9a-f]*)?$/.test(w) && (w.includes('...') || digits.length % 2 === 0);
}

/** Rows of the markdown tables in `text`, cells trimmed (header and rule rows included). */
function tableRows(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => /^\|.*\|\s*$/.test(l))
    .map((l) => splitRow(l));
}

function splitRow(l: string): string[] {
  // `|` inside backticks (`"cancelled" \| "expired"`) is escaped in the document.
  return l
    .trim()
    .slice(1, -1)
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());
}

/** JSON with the document's placeholders: a bare `...` value is ANY, and `"..."` is ANY too. */
export function parseExampleJson(text: string, where: string): Record<string, unknown> {
  const src = text.replace(/:\s*\.\.\.(?=\s*[,}\]])/g, `:${JSON.stringify(ANY)}`);
  let v: unknown;
  try {
    v = JSON.parse(src, (_k, x) => (x === '...' ? ANY : x));
  } catch (e) {
    throw new DocError(where, `a JSON example does not parse: ${(e as Error).message}: ${text.slice(0, 80)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DocError(where, 'a JSON example is not an object');
  return v as Record<string, unknown>;
}

/**
 * The annotation column of a hex dump: `map(8) "v": 1 "type": "echo" "id": "AA..." (22 chars) ...
 * "body": map(2) "code": ... ` (a nested `map(n)` takes the next n entries), also inline JSON
 * objects (`"body": {"n": 1}`). Parenthesised remarks are skipped, `(N chars)` is kept.
 */
function parseAnnotations(notes: string, where: string): { value: Record<string, unknown>; mapSize: number; charCounts: Array<{ value: string; chars: number }> } {
  const re = /map\((\d+)\)|("(?:[^"\\]|\\.)*")\s*:|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?)|(\{(?:[^{}]|\{[^{}]*\})*\})|\(([^)]*)\)|(true|false|null)|(\S+)/g;
  type Tok = { kind: 'map'; n: number } | { kind: 'key'; key: string } | { kind: 'value'; v: unknown } | { kind: 'note'; text: string };
  const toks: Tok[] = [];
  for (const m of notes.matchAll(re)) {
    if (m[1] !== undefined) toks.push({ kind: 'map', n: Number(m[1]) });
    else if (m[2] !== undefined) toks.push({ kind: 'key', key: JSON.parse(m[2]) as string });
    else if (m[3] !== undefined) toks.push({ kind: 'value', v: JSON.parse(m[3]) });
    else if (m[4] !== undefined) toks.push({ kind: 'value', v: Number(m[4]) });
    else if (m[5] !== undefined) toks.push({ kind: 'value', v: JSON.parse(m[5]) });
    else if (m[6] !== undefined) toks.push({ kind: 'note', text: m[6] });
    else if (m[7] !== undefined) toks.push({ kind: 'value', v: JSON.parse(m[7]) });
    else throw new DocError(where, `the hex dump's annotations have a word the suite cannot read: ${JSON.stringify(m[8])}`);
  }
  const charCounts: Array<{ value: string; chars: number }> = [];
  let i = 0;
  let last: unknown;
  const skipNotes = () => {
    while (toks[i]?.kind === 'note') {
      const t = toks[i] as { text: string };
      const c = /^(\d+) chars$/.exec(t.text);
      if (c && typeof last === 'string') charCounts.push({ value: last, chars: Number(c[1]) });
      i++;
    }
  };
  const readMap = (n: number): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    for (let e = 0; e < n; e++) {
      skipNotes();
      const k = toks[i++];
      if (k?.kind !== 'key') throw new DocError(where, `the hex dump's annotations: expected "<key>": as entry ${e + 1} of a map(${n})`);
      const v = toks[i++];
      if (v?.kind === 'map') o[k.key] = readMap(v.n);
      else if (v?.kind === 'value') o[k.key] = last = v.v;
      else throw new DocError(where, `the hex dump's annotations: no value for "${k.key}"`);
      skipNotes();
    }
    return o;
  };
  const first = toks[i++];
  if (first?.kind !== 'map') throw new DocError(where, 'the hex dump does not start with map(<n>)');
  const value = readMap(first.n);
  skipNotes();
  if (i !== toks.length) throw new DocError(where, "the hex dump's annotations have more entries than its map(<n>) headers announce");
  return { value, mapSize: first.n, charCounts };
}
