import { describe, expect, it } from "vitest";
import { envelopeWriter, type ODataRecord } from "../../functions/lib/envelope";

const HOUR = "2026-11-24T08:00:00Z";
const COLLECTED = "2026-11-24T09:16:03.123Z";

function envelopeLine(entity: string, hourUtc: string, collectedAt: string, record: ODataRecord): string {
  return envelopeWriter(entity, hourUtc, collectedAt)(record);
}

describe("envelopeWriter", () => {
  it("writes byte for byte what JSON.stringify of the envelope object gives", () => {
    const records: ODataRecord[] = [
      {},
      { a: null, b: [1, "x"], c: { d: 'é\n"' } },
      { 'quote"key': "\u2028", n: 1e21 },
    ];
    for (const record of records) {
      const expected = `${JSON.stringify({ citrix_entity: "sessions", citrix_hour_utc: HOUR, collection_timestamp: COLLECTED, raw: record })}\n`;
      expect(envelopeWriter("sessions", HOUR, COLLECTED)(record)).toBe(expected);
    }
  });

  it("is exactly the SPEC's envelope, fields in order, ending with a newline", () => {
    expect(envelopeLine("sessions", HOUR, COLLECTED, { SessionKey: "abc", Count: 3 })).toBe(
      '{"citrix_entity":"sessions","citrix_hour_utc":"2026-11-24T08:00:00Z",' +
        '"collection_timestamp":"2026-11-24T09:16:03.123Z","raw":{"SessionKey":"abc","Count":3}}\n',
    );
  });

  it("terminates with a line feed character, not the letter n", () => {
    const line = envelopeLine("users", HOUR, COLLECTED, { a: 1 });
    expect(line.charCodeAt(line.length - 1)).toBe(0x0a);
    expect(line.endsWith("}\n")).toBe(true);
    expect(line.endsWith("}n")).toBe(false);
  });

  it("parses to an object with exactly the four SPEC fields in SPEC order", () => {
    const parsed = JSON.parse(envelopeLine("machines", HOUR, COLLECTED, { Id: "m1" }));
    expect(Object.keys(parsed)).toEqual(["citrix_entity", "citrix_hour_utc", "collection_timestamp", "raw"]);
    expect(parsed).toEqual({
      citrix_entity: "machines",
      citrix_hour_utc: HOUR,
      collection_timestamp: COLLECTED,
      raw: { Id: "m1" },
    });
  });

  describe("a record with awkward characters", () => {
    const record = {
      Note: "line one\nline two\r\nline three",
      Quote: 'she said "hi"',
      Path: "C:\\Users\\zoe\\file.txt",
      UserName: "Zoë",
      FullName: "山田 太郎",
      Tab: "a\tb",
      Separator: "x\u2028y",
      Nested: { list: [1, "two", null, { deep: "Zoë\n" }], empty: {} },
      Nothing: null,
      Flag: false,
    };
    const line = envelopeLine("sessions", HOUR, COLLECTED, record);

    it("stays on exactly one line", () => {
      expect(line.split("\n")).toHaveLength(2);
      expect(line.split("\n")[1]).toBe("");
      expect(line.slice(0, -1)).not.toMatch(/[\n\r]/);
    });

    it("round-trips through JSON.parse unchanged, key order included", () => {
      const parsed = JSON.parse(line);
      expect(parsed.raw).toEqual(record);
      expect(Object.keys(parsed.raw)).toEqual(Object.keys(record));
      expect(parsed.raw.Note).toBe("line one\nline two\r\nline three");
      expect(parsed.raw.Path).toBe("C:\\Users\\zoe\\file.txt");
    });

    it("writes non-ASCII characters as UTF-8, not as \\u escapes", () => {
      const bytes = Buffer.from(line, "utf8");
      expect(line).toContain("Zoë");
      expect(line).toContain("山田");
      expect(bytes.includes(Buffer.from([0x5a, 0x6f, 0xc3, 0xab]))).toBe(true); // "Zoë"
      expect(bytes.includes(Buffer.from([0xe5, 0xb1, 0xb1, 0xe7, 0x94, 0xb0]))).toBe(true); // "山田"
      expect(bytes.toString("utf8")).toBe(line);
      expect(bytes.at(-1)).toBe(0x0a);
    });
  });

  it("escapes a lone surrogate so the line is valid UTF-8", () => {
    const line = envelopeLine("sessions", HOUR, COLLECTED, { broken: "a\ud800b" });
    expect(line).toContain("\\ud800");
    expect(Buffer.from(line, "utf8").toString("utf8")).toBe(line);
    expect(JSON.parse(line).raw.broken).toBe("a\ud800b");
  });
});
