import { isUtf8 } from "node:buffer";

/**
 * The records of one OData page: byte ranges of one buffer, each the UTF-8 text of one JSON object on one
 * line, exactly as the API sent it (a record sent over several lines without the whitespace between tokens). Ranges, not one Buffer view per record: a million-record hour would
 * otherwise allocate a million small objects for the garbage collector.
 */
export class PageRecords {
  constructor(
    private readonly bytes: Buffer,
    /** start0, end0, start1, end1, … */
    private readonly bounds: readonly number[],
  ) {}

  get length(): number {
    return this.bounds.length / 2;
  }

  byteLength(index: number): number {
    return (this.bounds[2 * index + 1] ?? 0) - (this.bounds[2 * index] ?? 0);
  }

  /** Copies record `index` into `target` at `offset` (which must have room); returns its length. */
  copy(index: number, target: Buffer, offset: number): number {
    return this.bytes.copy(target, offset, this.bounds[2 * index], this.bounds[2 * index + 1]);
  }

  /** Each record's bytes, as views. */
  *[Symbol.iterator](): IterableIterator<Buffer> {
    for (let i = 0; i < this.bounds.length; i += 2)
      yield this.bytes.subarray(this.bounds[i], this.bounds[i + 1]);
  }
}

export interface ODataPageContent {
  records: PageRecords;
  /** `@odata.nextLink` as sent (not yet checked to be a string). */
  nextLink: unknown;
}

/** Why a body is not an OData page, worded to follow "response from <url> …". */
export class ODataPageRejected extends Error {
  override readonly name = "ODataPageRejected";
}

/**
 * Splits an OData page body into its records without decoding it into one string. A page of a thousand
 * records is over half a megabyte: as one string it lands in V8's large-object space, whose fresh memory
 * faults in on every page, and decoding, parsing, re-serialising and re-encoding it cost more CPU than
 * everything else the collector does. Instead one pass checks the page against the JSON grammar (UTF-8 is
 * checked natively), notes where each record starts and ends, and the record bytes are passed through as
 * sent: "the OData record, unchanged", big numbers and escapes exactly as the API wrote them.
 *
 * A record spread over several lines (a pretty-printed page) loses the whitespace between its tokens and
 * nothing else, so the other records of its page pass through untouched. Anything else the fast pass does not
 * expect (invalid UTF-8, a record nested deeper than MAX_DEPTH, any error) goes to a full
 * parse, which either names what is wrong or re-serialises the records.
 */
export function readODataPage(body: Buffer): ODataPageContent {
  return (isUtf8(body) && new PageScanner(body).page()) || parseWholePage(UTF8.decode(body));
}

/** Decodes as fetch's text() does: a byte order mark dropped, invalid bytes replaced. */
const UTF8 = new TextDecoder();

/** The slow path: one JSON.parse of the whole page, as a generic client would do it. */
function parseWholePage(text: string): ODataPageContent {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ODataPageRejected("is not JSON");
  }
  if (!isObject(parsed) || !Array.isArray(parsed.value)) {
    throw new ODataPageRejected('has no "value" array');
  }
  if (!parsed.value.every(isObject)) {
    throw new ODataPageRejected('has a "value" that is not a list of objects');
  }
  const lines = parsed.value.map((record) => Buffer.from(JSON.stringify(record)));
  const bounds: number[] = [];
  let at = 0;
  for (const line of lines) {
    bounds.push(at, at + line.length);
    at += line.length;
  }
  return { records: new PageRecords(Buffer.concat(lines), bounds), nextLink: parsed["@odata.nextLink"] };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const QUOTE = 0x22;
const PLUS = 0x2b;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const SLASH = 0x2f;
const ZERO = 0x30;
const NINE = 0x39;
const COLON = 0x3a;
const UPPER_E = 0x45;
const OPEN_ARRAY = 0x5b;
const BACKSLASH = 0x5c;
const CLOSE_ARRAY = 0x5d;
const LOWER_E = 0x65;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
/** The letters after "\" that JSON allows (b f n r t u, plus " \ /). */
const ESCAPES = new Set([QUOTE, BACKSLASH, SLASH, 0x62, 0x66, 0x6e, 0x72, 0x74, 0x75]);
const LITERALS = ["true", "false", "null"].map((word) => Buffer.from(word));
// Deeper records are left to JSON.parse rather than to this scanner's recursion.
const MAX_DEPTH = 256;
const FAILED = -1;

/**
 * The fast pass over `{ "key": value, …, "value": [ {record}, … ], … }` (RFC 8259 grammar; the body is
 * known to be valid UTF-8). Every method takes the index where its token starts and returns the index
 * after it, or FAILED.
 */
class PageScanner {
  /** Set when whitespace inside a record holds a line break: the record would not fit an NDJSON line. */
  private lineBreak = false;
  /** The page with multi-line records compacted in place; a copy of the body, made for the first one. */
  private compacted: Buffer | undefined;

  constructor(private readonly body: Buffer) {}

  /** The page, or undefined when the fast pass cannot vouch for it. */
  page(): ODataPageContent | undefined {
    const { body } = this;
    // A UTF-8 byte order mark, which fetch's text() would have dropped too.
    let i = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
    i = this.whitespace(i);
    if (body[i] !== OPEN_OBJECT) return undefined;
    let bounds: number[] | undefined;
    let nextLink: unknown;
    i = this.whitespace(i + 1);
    for (;;) {
      const keyStart = i;
      i = this.string(i);
      if (i === FAILED) return undefined;
      const key = JSON.parse(body.toString("utf8", keyStart, i)) as string;
      i = this.whitespace(i);
      if (body[i] !== COLON) return undefined;
      const valueStart = this.whitespace(i + 1);
      if (key === "value") {
        // A repeated "value" replaces the earlier one, as in JSON.parse.
        bounds = [];
        i = this.records(valueStart, bounds);
      } else {
        i = this.value(valueStart, 0);
        if (i !== FAILED && key === "@odata.nextLink")
          nextLink = JSON.parse(body.toString("utf8", valueStart, i));
      }
      if (i === FAILED) return undefined;
      i = this.whitespace(i);
      if (body[i] === CLOSE_OBJECT) break;
      if (body[i] !== COMMA) return undefined;
      i = this.whitespace(i + 1);
    }
    if (this.whitespace(i + 1) !== body.length || bounds === undefined) return undefined;
    return { records: new PageRecords(this.compacted ?? body, bounds), nextLink };
  }

  /**
   * Drops the whitespace between the tokens of the record at `start`…`end` (known to be valid JSON), moving
   * the rest to the front of its range; returns where the record now ends. Strings, numbers and escapes
   * keep their bytes: only this record changes, and only in whitespace JSON ignores.
   */
  private compact(start: number, end: number): number {
    const { body } = this;
    this.compacted ??= Buffer.from(body);
    const target = this.compacted;
    let at = start;
    let inString = false;
    for (let i = start; i < end; i++) {
      const b = body[i] as number;
      if (inString) {
        if (b === BACKSLASH) target[at++] = body[i++] as number;
        else if (b === QUOTE) inString = false;
      } else if (b === QUOTE) inString = true;
      else if (b === SPACE || b === LF || b === CR || b === TAB) continue;
      target[at++] = body[i] as number;
    }
    return at;
  }

  /** `[ {…}, … ]`, noting each record's bounds. */
  private records(start: number, bounds: number[]): number {
    const { body } = this;
    if (body[start] !== OPEN_ARRAY) return FAILED;
    let i = this.whitespace(start + 1);
    if (body[i] === CLOSE_ARRAY) return i + 1;
    for (;;) {
      if (body[i] !== OPEN_OBJECT) return FAILED;
      this.lineBreak = false;
      const end = this.object(i, 1);
      if (end === FAILED) return FAILED;
      bounds.push(i, this.lineBreak ? this.compact(i, end) : end);
      i = this.whitespace(end);
      if (body[i] === CLOSE_ARRAY) return i + 1;
      if (body[i] !== COMMA) return FAILED;
      i = this.whitespace(i + 1);
    }
  }

  private value(start: number, depth: number): number {
    const b = this.body[start];
    if (b === QUOTE) return this.string(start);
    if (b === OPEN_OBJECT) return this.object(start, depth + 1);
    if (b === OPEN_ARRAY) return this.array(start, depth + 1);
    if (b === MINUS || (b !== undefined && b >= ZERO && b <= NINE)) return this.number(start);
    for (const word of LITERALS) if (this.matches(word, start)) return start + word.length;
    return FAILED;
  }

  private matches(word: Buffer, start: number): boolean {
    for (let k = 0; k < word.length; k++) if (this.body[start + k] !== word[k]) return false;
    return true;
  }

  private object(start: number, depth: number): number {
    if (depth > MAX_DEPTH) return FAILED;
    const { body } = this;
    let i = this.whitespace(start + 1);
    if (body[i] === CLOSE_OBJECT) return i + 1;
    for (;;) {
      i = this.string(i);
      if (i === FAILED) return FAILED;
      i = this.whitespace(i);
      if (body[i] !== COLON) return FAILED;
      i = this.value(this.whitespace(i + 1), depth);
      if (i === FAILED) return FAILED;
      i = this.whitespace(i);
      if (body[i] === CLOSE_OBJECT) return i + 1;
      if (body[i] !== COMMA) return FAILED;
      i = this.whitespace(i + 1);
    }
  }

  private array(start: number, depth: number): number {
    if (depth > MAX_DEPTH) return FAILED;
    const { body } = this;
    let i = this.whitespace(start + 1);
    if (body[i] === CLOSE_ARRAY) return i + 1;
    for (;;) {
      i = this.value(i, depth);
      if (i === FAILED) return FAILED;
      i = this.whitespace(i);
      if (body[i] === CLOSE_ARRAY) return i + 1;
      if (body[i] !== COMMA) return FAILED;
      i = this.whitespace(i + 1);
    }
  }

  private string(start: number): number {
    const { body } = this;
    if (body[start] !== QUOTE) return FAILED;
    for (let i = start + 1; i < body.length; i++) {
      const b = body[i] as number;
      if (b === QUOTE) return i + 1;
      if (b < SPACE) return FAILED;
      if (b === BACKSLASH) {
        const escaped = body[++i] as number;
        if (!ESCAPES.has(escaped)) return FAILED;
        if (escaped === 0x75 && !/^[0-9a-fA-F]{4}$/.test(body.toString("latin1", i + 1, i + 5)))
          return FAILED;
      }
    }
    return FAILED;
  }

  /** `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` */
  private number(start: number): number {
    const { body } = this;
    let i = body[start] === MINUS ? start + 1 : start;
    if (body[i] === ZERO) i++;
    else if (!isDigit(body[i])) return FAILED;
    else i = this.digits(i);
    if (body[i] === DOT) {
      if (!isDigit(body[i + 1])) return FAILED;
      i = this.digits(i + 1);
    }
    if (body[i] === LOWER_E || body[i] === UPPER_E) {
      i++;
      if (body[i] === PLUS || body[i] === MINUS) i++;
      if (!isDigit(body[i])) return FAILED;
      i = this.digits(i);
    }
    return i;
  }

  private digits(start: number): number {
    let i = start;
    while (isDigit(this.body[i])) i++;
    return i;
  }

  private whitespace(start: number): number {
    const { body } = this;
    let i = start;
    for (let b = body[i]; b === SPACE || b === LF || b === CR || b === TAB; b = body[++i]) {
      if (b === LF || b === CR) this.lineBreak = true;
    }
    return i;
  }
}

function isDigit(b: number | undefined): boolean {
  return b !== undefined && b >= ZERO && b <= NINE;
}
