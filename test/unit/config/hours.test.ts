import { describe, expect, it } from "vitest";
import {
  floorHour,
  formatHour,
  HOUR_MS,
  hourParts,
  hourRange,
  parseHour,
  parseWatermarkHour,
} from "../../../functions/lib/config/hours";

const at = (iso: string) => Date.parse(iso);

describe("floorHour", () => {
  it("truncates to the start of the UTC hour", () => {
    expect(floorHour(at("2026-11-24T08:59:59.999Z"))).toBe(at("2026-11-24T08:00:00.000Z"));
    expect(floorHour(at("2026-11-24T08:30:00Z"))).toBe(at("2026-11-24T08:00:00Z"));
  });

  it("leaves a time already on the hour unchanged", () => {
    expect(floorHour(at("2026-11-24T08:00:00Z"))).toBe(at("2026-11-24T08:00:00Z"));
  });

  it("uses a one-hour constant of 3,600,000 ms", () => {
    expect(HOUR_MS).toBe(3_600_000);
  });
});

describe("formatHour", () => {
  it("writes the hour start as YYYY-MM-DDTHH:00:00Z without milliseconds", () => {
    expect(formatHour(at("2026-11-24T08:00:00Z"))).toBe("2026-11-24T08:00:00Z");
    expect(formatHour(at("2026-01-05T03:45:12.345Z"))).toBe("2026-01-05T03:00:00Z");
    expect(formatHour(0)).toBe("1970-01-01T00:00:00Z");
  });
});

describe("parseHour", () => {
  it("accepts a whole UTC hour", () => {
    expect(parseHour("2026-11-24T08:00:00Z")).toBe(Date.UTC(2026, 10, 24, 8));
    expect(parseHour("2026-11-24T08:00:00.000Z")).toBe(Date.UTC(2026, 10, 24, 8));
    expect(parseHour("2028-02-29T23:00:00Z")).toBe(Date.UTC(2028, 1, 29, 23));
  });

  it.each([
    ["a time not on the hour", "2026-11-24T08:30:00Z"],
    ["seconds past the hour", "2026-11-24T08:00:01Z"],
    ["a day that does not exist", "2026-02-30T00:00:00Z"],
    ["29 February in a non-leap year", "2027-02-29T00:00:00Z"],
    ["month 13", "2026-13-01T00:00:00Z"],
    ["hour 24", "2026-11-24T24:00:00Z"],
    ["a missing Z", "2026-11-24T08:00:00"],
    ["a +00:00 offset", "2026-11-24T08:00:00+00:00"],
    ["a space instead of T", "2026-11-24 08:00:00Z"],
    ["a date only", "2026-11-24"],
    ["surrounding whitespace", " 2026-11-24T08:00:00Z"],
    ["nonzero milliseconds", "2026-11-24T08:00:00.001Z"],
    ["an empty string", ""],
  ])("rejects %s (%j)", (_why, text) => {
    expect(parseHour(text)).toBeUndefined();
  });
});

describe("parseWatermarkHour", () => {
  const eight = Date.UTC(2026, 10, 24, 8);

  it("accepts the seed's Python isoformat() + 'Z'", () => {
    expect(parseWatermarkHour("2026-11-24T08:00:00Z")).toBe(eight);
  });

  it("accepts a +00:00 offset", () => {
    expect(parseWatermarkHour("2026-11-24T08:00:00+00:00")).toBe(eight);
  });

  it("accepts fractional zero seconds, including microseconds", () => {
    expect(parseWatermarkHour("2026-11-24T08:00:00.000000Z")).toBe(eight);
    expect(parseWatermarkHour("2026-11-24T08:00:00.000Z")).toBe(eight);
  });

  it("tolerates surrounding whitespace", () => {
    expect(parseWatermarkHour(" 2026-11-24T08:00:00Z\n")).toBe(eight);
  });

  it.each([
    ["minutes past the hour", "2026-11-24T08:30:00Z"],
    ["seconds past the hour", "2026-11-24T08:00:01Z"],
    ["a fraction of a second past the hour", "2026-11-24T08:00:00.500000Z"],
    ["no time zone", "2026-11-24T08:00:00"],
    ["another offset", "2026-11-24T08:00:00+01:00"],
    ["garbage", "yesterday"],
    ["month 13", "2026-13-01T00:00:00Z"],
  ])("rejects %s (%j)", (_why, text) => {
    expect(parseWatermarkHour(text)).toBeUndefined();
  });

  // V8's Date.parse rolls "2026-02-30" over to 2 March: an impossible watermark must not read as another hour.
  it("rejects a calendar date that does not exist instead of rolling it over", () => {
    expect(parseWatermarkHour("2026-02-30T00:00:00Z")).toBeUndefined();
  });
});

describe("hourParts", () => {
  it("zero-pads month, day and hour", () => {
    expect(hourParts("2026-01-05T03:00:00Z")).toEqual({ year: "2026", month: "01", day: "05", hour: "03" });
  });

  it("keeps two-digit parts as they are", () => {
    expect(hourParts("2026-11-24T18:00:00Z")).toEqual({ year: "2026", month: "11", day: "24", hour: "18" });
  });

  it("returns midnight as hour 00", () => {
    expect(hourParts("2026-12-31T00:00:00Z").hour).toBe("00");
  });

  it("throws a RangeError for something that is not a whole hour", () => {
    expect(() => hourParts("2026-11-24T08:30:00Z")).toThrow(RangeError);
    expect(() => hourParts("nope")).toThrow(/not a UTC hour: nope/);
  });
});

describe("hourRange", () => {
  it("is inclusive at both ends", () => {
    expect(hourRange(at("2026-11-24T08:00:00Z"), at("2026-11-24T10:00:00Z"))).toEqual([
      "2026-11-24T08:00:00Z",
      "2026-11-24T09:00:00Z",
      "2026-11-24T10:00:00Z",
    ]);
  });

  it("returns the one hour when from equals to", () => {
    expect(hourRange(at("2026-11-24T08:00:00Z"), at("2026-11-24T08:00:00Z"))).toEqual([
      "2026-11-24T08:00:00Z",
    ]);
  });

  it("is empty when from is after to", () => {
    expect(hourRange(at("2026-11-24T09:00:00Z"), at("2026-11-24T08:00:00Z"))).toEqual([]);
  });

  it("starts at the hour containing a from that is not on the hour", () => {
    expect(hourRange(at("2026-11-24T08:45:00Z"), at("2026-11-24T09:00:00Z"))).toEqual([
      "2026-11-24T08:00:00Z",
      "2026-11-24T09:00:00Z",
    ]);
  });

  it("crosses a day boundary", () => {
    expect(hourRange(at("2026-11-24T22:00:00Z"), at("2026-11-25T01:00:00Z"))).toEqual([
      "2026-11-24T22:00:00Z",
      "2026-11-24T23:00:00Z",
      "2026-11-25T00:00:00Z",
      "2026-11-25T01:00:00Z",
    ]);
  });

  it("crosses a month boundary, including a leap day", () => {
    expect(hourRange(at("2028-02-28T23:00:00Z"), at("2028-03-01T00:00:00Z"))).toHaveLength(26);
    expect(hourRange(at("2026-04-30T23:00:00Z"), at("2026-05-01T00:00:00Z"))).toEqual([
      "2026-04-30T23:00:00Z",
      "2026-05-01T00:00:00Z",
    ]);
  });

  it("crosses a year boundary", () => {
    expect(hourRange(at("2026-12-31T22:00:00Z"), at("2027-01-01T01:00:00Z"))).toEqual([
      "2026-12-31T22:00:00Z",
      "2026-12-31T23:00:00Z",
      "2027-01-01T00:00:00Z",
      "2027-01-01T01:00:00Z",
    ]);
  });

  it("covers a whole day as 24 distinct hours", () => {
    const day = hourRange(at("2026-03-29T00:00:00Z"), at("2026-03-29T23:00:00Z"));
    expect(day).toHaveLength(24);
    expect(new Set(day).size).toBe(24);
    expect(day[0]).toBe("2026-03-29T00:00:00Z");
    expect(day[23]).toBe("2026-03-29T23:00:00Z");
  });
});
