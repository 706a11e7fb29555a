import { describe, expect, it } from "vitest";
import { readODataPage } from "../../../functions/lib/citrix/odata-page";
import { Envelope } from "../../../functions/lib/feed/envelope";

const HOUR = "2026-11-24T08:00:00Z";
const COLLECTED = "2026-11-24T09:16:03.123Z";

function envelopeLine(entity: string, hourUtc: string, collectedAt: string, record: string): string {
  const envelope = new Envelope(entity, hourUtc, collectedAt);
  const { records } = readODataPage(Buffer.from(`{"value":[{"before":1},${record}]}`));
  const target = Buffer.alloc(envelope.lineLength(records, 1) + 4, "#");
  const written = envelope.writeLine(records, 1, target, 2);
  expect(written).toBe(envelope.lineLength(records, 1));
  // Nothing outside the line's own bytes is touched.
  expect(target.subarray(0, 2).toString()).toBe("##");
  expect(target.subarray(2 + written).toString()).toBe("##");
  return target.toString("utf8", 2, 2 + written);
}

describe("Envelope", () => {
  it("writes byte for byte what JSON.stringify of the envelope object gives for a compact record", () => {
    const records = [{}, { a: null, b: [1, "x"], c: { d: 'é\n"' } }, { 'quote"key': "\u2028", n: 1e21 }];
    for (const record of records) {
      const expected = `${JSON.stringify({ citrix_entity: "sessions", citrix_hour_utc: HOUR, collection_timestamp: COLLECTED, raw: record })}\n`;
      expect(envelopeLine("sessions", HOUR, COLLECTED, JSON.stringify(record))).toBe(expected);
    }
  });

  it("is exactly the SPEC's envelope, fields in order, ending with a newline", () => {
    expect(envelopeLine("sessions", HOUR, COLLECTED, '{"SessionKey":"abc","Count":3}')).toBe(
      '{"citrix_entity":"sessions","citrix_hour_utc":"2026-11-24T08:00:00Z",' +
        '"collection_timestamp":"2026-11-24T09:16:03.123Z","raw":{"SessionKey":"abc","Count":3}}\n',
    );
  });

  it("terminates with a line feed character, not the letter n", () => {
    const line = envelopeLine("users", HOUR, COLLECTED, '{"a":1}');
    expect(line.charCodeAt(line.length - 1)).toBe(0x0a);
    expect(line.endsWith("}\n")).toBe(true);
    expect(line.endsWith("}n")).toBe(false);
  });

  it("parses to an object with exactly the four SPEC fields in SPEC order", () => {
    const parsed = JSON.parse(envelopeLine("machines", HOUR, COLLECTED, '{"Id":"m1"}'));
    expect(Object.keys(parsed)).toEqual(["citrix_entity", "citrix_hour_utc", "collection_timestamp", "raw"]);
    expect(parsed).toEqual({
      citrix_entity: "machines",
      citrix_hour_utc: HOUR,
      collection_timestamp: COLLECTED,
      raw: { Id: "m1" },
    });
  });

  it("keeps the record exactly as the API sent it: big numbers, escapes, UTF-8 and spacing", () => {
    const record = '{ "Id": 12345678901234567890, "Name": "Zo\\u00eb", "City": "München", "Ratio": 1.50 }';
    const line = envelopeLine("sessions", HOUR, COLLECTED, record);
    expect(line).toContain(`"raw":${record}}\n`);
    // A parse and re-serialise would have rounded the id and dropped the trailing zero.
    expect(JSON.stringify(JSON.parse(record))).not.toBe(record);
    expect(JSON.parse(line).raw.Name).toBe("Zoë");
    expect(Buffer.from(line, "utf8").includes(Buffer.from("München", "utf8"))).toBe(true);
  });
});
