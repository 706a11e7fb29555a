import { describe, expect, it } from "vitest";
import {
  entitiesByHour,
  hoursPublishedForEvery,
  newestContiguousHour,
  parseFirstHour,
  parseMarker,
} from "../../../functions/lib/feed/watermark";

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

describe("hoursPublishedForEvery", () => {
  it("keeps the hours every given entity is published for, ignoring entities not asked for", () => {
    const byHour = new Map([
      ["2026-11-24T08:00:00Z", new Set(["sessions", "users", "removed"])],
      ["2026-11-24T09:00:00Z", new Set(["sessions"])],
      ["2026-11-24T10:00:00Z", new Set(["users", "sessions"])],
    ]);
    expect(hoursPublishedForEvery(byHour, ["sessions", "users"])).toEqual([
      "2026-11-24T08:00:00Z",
      "2026-11-24T10:00:00Z",
    ]);
    expect(hoursPublishedForEvery(byHour, ["sessions"])).toHaveLength(3);
    expect(hoursPublishedForEvery(byHour, ["machines"])).toEqual([]);
  });
});

describe("entitiesByHour", () => {
  it("groups entity markers by hour and counts a legacy marker for its manifest's entities", () => {
    const grouped = entitiesByHour(
      [
        { hourUtc: "2026-11-24T08:00:00Z", entity: "sessions" },
        { hourUtc: "2026-11-24T09:00:00Z", entity: undefined },
        { hourUtc: "2026-11-24T08:00:00Z", entity: "users" },
        { hourUtc: "2026-11-24T10:00:00Z", entity: undefined },
      ],
      new Map([["2026-11-24T09:00:00Z", ["machines", "sessions"]]]),
    );
    expect([...grouped].map(([hour, entities]) => [hour, [...entities]])).toEqual([
      ["2026-11-24T08:00:00Z", ["sessions", "users"]],
      ["2026-11-24T09:00:00Z", ["machines", "sessions"]],
      ["2026-11-24T10:00:00Z", []],
    ]);
  });
});

describe("parseMarker", () => {
  it("reads a recorded watermark, and nothing from a marker that records none or no hour", () => {
    expect(parseMarker('{"watermark":"2026-11-24T08:00:00Z","mode":"backfill"}')).toEqual({
      watermark: "2026-11-24T08:00:00Z",
    });
    for (const body of [undefined, "", "null", "not json", '{"watermark":null}', '{"watermark":"yesterday"}'])
      expect(parseMarker(body), String(body)).toBeUndefined();
  });
});

describe("parseFirstHour", () => {
  it("reads the recorded hour in its canonical form", () => {
    expect(parseFirstHour('{"hourUtc":"2026-11-24T08:00:00Z","by":"a","at":"t"}', "b", "k")).toBe(
      "2026-11-24T08:00:00Z",
    );
  });
});
