import { describe, expect, it } from "vitest";
import { newestContiguousHour } from "../../../functions/lib/feed/watermark";

describe("newestContiguousHour", () => {
  it("moves over every hour published right after the base, and stops at the first gap", () => {
    const published = ["2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z", "2026-11-24T12:00:00Z"];
    expect(newestContiguousHour("2026-11-24T08:00:00Z", published)).toBe("2026-11-24T10:00:00Z");
    expect(newestContiguousHour("2026-11-24T10:00:00Z", published)).toBe("2026-11-24T10:00:00Z");
    expect(newestContiguousHour("2026-11-24T11:00:00Z", published)).toBe("2026-11-24T12:00:00Z");
  });

  it("stays at the base when the next hour is not published, whatever was published later", () => {
    expect(newestContiguousHour("2026-11-24T08:00:00Z", [])).toBe("2026-11-24T08:00:00Z");
    expect(newestContiguousHour("2026-11-24T08:00:00Z", ["2026-11-24T10:00:00Z"])).toBe(
      "2026-11-24T08:00:00Z",
    );
  });

  it("crosses days and years", () => {
    expect(
      newestContiguousHour("2026-12-31T22:00:00Z", ["2026-12-31T23:00:00Z", "2027-01-01T00:00:00Z"]),
    ).toBe("2027-01-01T00:00:00Z");
  });

  it("rejects a base that is not a UTC hour", () => {
    expect(() => newestContiguousHour("2026-11-24T08:30:00Z", [])).toThrow(
      new RangeError("not a UTC hour: 2026-11-24T08:30:00Z"),
    );
  });
});
