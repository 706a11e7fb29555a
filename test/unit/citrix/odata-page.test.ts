import { describe, expect, it } from "vitest";
import { ODataPageRejected, readODataPage } from "../../../functions/lib/citrix/odata-page";

/** What a generic client would make of a body: JSON.parse of the whole text (fetch's text() decoding). */
function reference(body: Buffer): { records: unknown[]; nextLink: unknown } | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(body));
  } catch {
    return "is not JSON";
  }
  const page = parsed as { value?: unknown; "@odata.nextLink"?: unknown };
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || !Array.isArray(page.value))
    return 'has no "value" array';
  const isRecord = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!page.value.every(isRecord)) return 'has a "value" that is not a list of objects';
  return { records: page.value, nextLink: page["@odata.nextLink"] };
}

function read(body: Buffer): { records: unknown[]; nextLink: unknown } | string {
  try {
    const page = readODataPage(body);
    for (const record of page.records) {
      // Every record is one NDJSON-ready line: valid UTF-8, no line break.
      expect(record.includes(0x0a) || record.includes(0x0d)).toBe(false);
      expect(Buffer.from(record.toString("utf8"))).toEqual(record);
    }
    return {
      records: [...page.records].map((record) => JSON.parse(record.toString("utf8"))),
      nextLink: page.nextLink,
    };
  } catch (error) {
    if (error instanceof ODataPageRejected) return error.message;
    throw error;
  }
}

/** Whether `record` is a window on `body`'s own bytes (small buffers share Node's pool, hence the offsets). */
function isViewOf(record: Buffer | undefined, body: Buffer): boolean {
  return (
    record?.buffer === body.buffer &&
    record.byteOffset >= body.byteOffset &&
    record.byteOffset + record.length <= body.byteOffset + body.length
  );
}

/** A page's records as text, one per record. */
function lines(page: ReturnType<typeof readODataPage>): string[] {
  return [...page.records].map(String);
}

const SAMPLE = Buffer.from(
  JSON.stringify({
    "@odata.context": "https://api.cloud.com/casodata/$metadata#sessions",
    value: [
      { SessionKey: "a{b}[c],d", n: -1.5e-3, ok: true, none: null, list: [1, [2, { x: "}" }]], e: {} },
      { UserName: 'CORP\\"zoë"', note: "Vertrieb – Büro 🚀", esc: "\\u00eb\n\t\u0001" },
      {},
    ],
    "@odata.nextLink": "https://api.cloud.com/casodata/sessions?$skiptoken=abc",
  }),
);

describe("readODataPage", () => {
  it("splits a page into its records, bytes exactly as sent", () => {
    const page = readODataPage(SAMPLE);
    const expected = (JSON.parse(SAMPLE.toString()) as { value: unknown[] }).value.map((r) =>
      JSON.stringify(r),
    );
    expect([...page.records].map((record) => record.toString("utf8"))).toEqual(expected);
    expect(page.nextLink).toBe("https://api.cloud.com/casodata/sessions?$skiptoken=abc");
    // The records are views of the body, not copies.
    expect([...page.records].every((record) => isViewOf(record, SAMPLE))).toBe(true);
  });

  it("passes records through unchanged: escapes, big numbers and spacing as the API wrote them", () => {
    const body = Buffer.from(
      '{ "value" : [ {"Id": 12345678901234567890, "Name":"Zo\\u00eb"} , {"a":1.0} ] }\r\n',
    );
    expect(lines(readODataPage(body))).toEqual([
      '{"Id": 12345678901234567890, "Name":"Zo\\u00eb"}',
      '{"a":1.0}',
    ]);
  });

  it("drops a UTF-8 byte order mark, as fetch's text() does", () => {
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"value":[{"a":1}]}')]);
    expect(lines(readODataPage(body))).toEqual(['{"a":1}']);
  });

  it("compacts a pretty-printed page, so every record is still one line", () => {
    const pretty = Buffer.from(JSON.stringify(JSON.parse(SAMPLE.toString()), null, 2));
    const page = readODataPage(pretty);
    expect(lines(page)).toEqual(lines(readODataPage(SAMPLE)));
  });

  it("changes only the whitespace of a multi-line record, and nothing of the records beside it", () => {
    const body = Buffer.from(
      [
        '{"value":[{"Id":9007199254740993, "Name":"a  b"},',
        '{\r\n  "Id" : 9007199254740995,\n\t"Name": "Zo\\u00eb \\" } \\\\",\n  "n": [ 1.50E+3 , -0.0 ]\n}',
        ',{"Id":12345678901234567890},{\n"Id":\n18446744073709551615}]}',
      ].join(""),
    );
    const page = readODataPage(body);
    expect(lines(page)).toEqual([
      '{"Id":9007199254740993, "Name":"a  b"}',
      '{"Id":9007199254740995,"Name":"Zo\\u00eb \\" } \\\\","n":[1.50E+3,-0.0]}',
      '{"Id":12345678901234567890}',
      '{"Id":18446744073709551615}',
    ]);
    // The page passed to readODataPage is left as it was.
    expect(body.toString()).toContain('{\r\n  "Id" : 9007199254740995');
  });

  it("replaces invalid UTF-8 as fetch's text() would, instead of copying it into the feed", () => {
    const body = Buffer.concat([
      Buffer.from('{"value":[{"a":"x'),
      Buffer.from([0xff, 0xc3]),
      Buffer.from('"}]}'),
    ]);
    expect(lines(readODataPage(body))).toEqual(['{"a":"x\ufffd\ufffd"}']);
  });

  it("leaves records nested deeper than it recurses to the full parse", () => {
    const deep = `${'{"a":['.repeat(300)}1${"]}".repeat(300)}`;
    expect(lines(readODataPage(Buffer.from(`{"value":[${deep},{"b":2}]}`)))).toEqual([deep, '{"b":2}']);
  });

  it("follows the last of repeated keys as JSON.parse does, the value array too", () => {
    expect(
      readODataPage(Buffer.from('{"@odata.nextLink":"a","value":[],"@odata.nextLink":"b"}')).nextLink,
    ).toBe("b");
    const twice = Buffer.from('{"value":[{"a":1}],"value":[{"b":2}]}');
    expect(lines(readODataPage(twice))).toEqual(['{"b":2}']);
  });

  // What the fast pass accepts and passes through as sent; anything it gave up on would come back
  // re-serialised by the full parse, so each record must be a view of the page's own bytes.
  it.each([
    ["numbers in exponent form", '{"value":[{"a":1e5,"b":-2E+3,"c":0.5e-7,"d":9E09,"e":10.25,"f":-0}]}'],
    ["every literal", '{"value":[{"t":true,"f":false,"n":null,"l":[true,false,null]}]}'],
    ["tabs, spaces and line breaks between records", '{"value":\t[ {"a":1} ,\r\n\t{"b":[ ]} ]\n}'],
    ["escapes, \\u with digits and letters", '{"value":[{"a":"\\u00e9\\uABcd\\n\\/\\\\","b":"\\"}"}]}'],
    ["a UTF-8 byte order mark", '\ufeff{"value":[{"a":1}]}'],
    [
      "keys around the value array",
      '{"@odata.context":"x","value":[{"a":{}},{"b":[[],{}]},{}],"n":[1,{"o":2}]}',
    ],
  ])("passes records through as sent: %s", (_, text) => {
    const body = Buffer.from(text);
    const page = readODataPage(body);
    const expected = (JSON.parse(text.replace(/^\ufeff/, "")) as { value: unknown[] }).value;
    expect(page.records.length).toBe(expected.length);
    expect([...page.records].every((record) => isViewOf(record, body))).toBe(true);
    expect(lines(page).map((line) => JSON.parse(line))).toEqual(expected);
    // The whole page is records and punctuation: nothing of a record was cut off or added.
    expect(lines(page).every((line) => text.includes(line))).toBe(true);
  });

  it("nests records up to 256 levels deep in the fast pass, deeper ones go to the full parse", () => {
    const nested = (depth: number, open: string, close: string) =>
      `{"a":${open.repeat(depth - 1)}1${close.repeat(depth - 1)}}`;
    for (const [open, close] of [
      ['{"a":', "}"],
      ["[", "]"],
    ] as const) {
      const deepest = Buffer.from(`{"value":[${nested(256, open, close)}]}`);
      expect(isViewOf([...readODataPage(deepest).records][0], deepest)).toBe(true);
      const deeper = Buffer.from(`{"value":[${nested(257, open, close)}]}`);
      expect(isViewOf([...readODataPage(deeper).records][0], deeper)).toBe(false);
      expect(lines(readODataPage(deeper))).toEqual([nested(257, open, close)]);
    }
  });

  it("tells each record's length and copies exactly its bytes", () => {
    const body = Buffer.from('{"value":[{"a":1},{"bb":22},{"ccc":333},{"dddd":4444}]}');
    const { records } = readODataPage(body);
    const expected = ['{"a":1}', '{"bb":22}', '{"ccc":333}', '{"dddd":4444}'];
    expect(records.length).toBe(4);
    expected.forEach((text, index) => {
      expect(records.byteLength(index)).toBe(text.length);
      const target = Buffer.alloc(text.length + 2, "_");
      expect(records.copy(index, target, 1)).toBe(text.length);
      expect(target.toString()).toBe(`_${text}_`);
    });
  });

  it.each([
    ["", "is not JSON"],
    ["{", "is not JSON"],
    ['{"value":[{"a":1}]', "is not JSON"],
    ['{"value":[{"a":1},]}', "is not JSON"],
    ['{"value":[{"a":1}]}}', "is not JSON"],
    ['{"value":[{"a":01}]}', "is not JSON"],
    ['{"value":[{"a":"\u0001"}]}', "is not JSON"],
    ['{"value":[{"a":1}],"x":tru}', "is not JSON"],
    ['{"value":[{"a":"\\x"}]}', "is not JSON"],
    ["[]", 'has no "value" array'],
    ['{"Value":[]}', 'has no "value" array'],
    ['{"value":"x"}', 'has no "value" array'],
    ['{"value":[1]}', 'has a "value" that is not a list of objects'],
    ['{"value":[{"a":1},[]]}', 'has a "value" that is not a list of objects'],
    ["null", 'has no "value" array'],
    ['{"value":[null]}', 'has a "value" that is not a list of objects'],
    ['{"value":[0}]}', "is not JSON"],
    ['{"value":[{"a":1e}]}', "is not JSON"],
    ['{"value":[{"a":1E+}]}', "is not JSON"],
    ['{"value":[{"a":1.e5}]}', "is not JSON"],
    ['{"value":[{"a":-}]}', "is not JSON"],
    ['{"value":[{"a":.5}]}', "is not JSON"],
    ['{"value":[{"a":"\\u12g4"}]}', "is not JSON"],
    ['{"value":[{"a":"x}]}', "is not JSON"],
    // Characters whose UTF-8 bytes share some with a byte order mark (EF BB BF) are not one.
    ['\uf03f{"value":[]}', "is not JSON"],
    ['\u3eff{"value":[]}', "is not JSON"],
    ['\ufec0{"value":[]}', "is not JSON"],
    ['\uff5b{"value":[]}', "is not JSON"],
    [' \u00bf{"value":[]}', "is not JSON"],
  ])("rejects %j: %s", (body, reason) => {
    const read = () => readODataPage(Buffer.from(body));
    expect(read).toThrow(new ODataPageRejected(reason));
    expect(read).toThrow(expect.objectContaining({ name: "ODataPageRejected" }));
  });

  it("agrees with JSON.parse of the whole page on thousands of damaged pages", () => {
    // A fixed-seed PRNG keeps the run reproducible.
    let seed = 0x2f6b3c1d;
    const random = () => {
      seed = (seed + 0x6d2b79f5) >>> 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    // Bytes that matter to the grammar: structure, strings and escapes, numbers, literals, whitespace.
    const pieces = String.raw`" \ \u00e \x { } [ ] , : 0 7 - + . e E tru nul fals n u l`.split(" ");
    pieces.push(" ", "\t", "\n", "\r", "é", "\u0001", "\ufeff");
    const rounds = 3000;
    let accepted = 0;
    let passedThrough = 0;
    for (let round = 0; round < rounds; round++) {
      const bytes = [...SAMPLE];
      for (let edits = 1 + Math.floor(random() * 3); edits > 0; edits--) {
        const at = Math.floor(random() * bytes.length);
        const piece = [...Buffer.from(pieces[Math.floor(random() * pieces.length)] ?? "")];
        const kind = random();
        if (kind < 0.4) bytes.splice(at, 1);
        else if (kind < 0.7) bytes.splice(at, 0, ...piece);
        else bytes.splice(at, 1, ...piece);
      }
      const body = Buffer.from(bytes);
      const expected = reference(body);
      // Compared as JSON text: a re-serialised record may only differ in ways JSON text cannot tell (-0).
      expect(JSON.stringify(read(body)), body.toString()).toBe(JSON.stringify(expected));
      if (typeof expected === "string") continue;
      accepted++;
      // Records that are views of the body came through the fast pass, not the full parse.
      if (isViewOf([...readODataPage(body).records][0], body)) passedThrough++;
    }
    // Both outcomes were exercised, and the fast pass (not only the full parse) accepted pages.
    expect(accepted).toBeGreaterThan(rounds * 0.05);
    expect(accepted).toBeLessThan(rounds * 0.95);
    expect(passedThrough).toBeGreaterThan(accepted * 0.5);
  });
});
