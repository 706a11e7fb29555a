import { describe, expect, it } from "vitest";
import {
  legacyEntityManifest,
  parseEntityManifest,
  parseJson,
  parseLegacyManifest,
} from "../../../functions/lib/feed/manifest";

const SEGMENT = { attempt: "0000000a", firstPart: 0, parts: 2, compressed: false };
const MANIFEST = {
  runId: "run-1",
  hourUtc: "2026-11-24T08:00:00Z",
  entity: "sessions",
  generation: 2,
  claimedAt: "t",
  records: 10,
  parts: 2,
  segments: [SEGMENT],
};
const LEGACY = {
  runId: "old-1",
  hourUtc: "2026-11-24T08:00:00Z",
  claimedAt: "t",
  entities: { sessions: { records: 10, parts: 2, segments: [SEGMENT] } },
};

describe("parseEntityManifest", () => {
  it("reads a manifest and refuses anything short of one", () => {
    expect(parseEntityManifest(JSON.stringify(MANIFEST))).toEqual(MANIFEST);
    for (const broken of [
      { ...MANIFEST, runId: 1 },
      { ...MANIFEST, hourUtc: undefined },
      { ...MANIFEST, entity: null },
      { ...MANIFEST, generation: 1.5 },
      { ...MANIFEST, records: "10" },
      { ...MANIFEST, segments: [{ ...SEGMENT, parts: -1 }] },
      { ...MANIFEST, segments: {} },
    ])
      expect(parseEntityManifest(JSON.stringify(broken)), JSON.stringify(broken)).toBeUndefined();
    expect(parseEntityManifest("not json")).toBeUndefined();
    expect(parseEntityManifest("null")).toBeUndefined();
  });
});

describe("parseLegacyManifest and legacyEntityManifest", () => {
  it("read a per-hour manifest and stand one entity of it for generation 1 of that entity-hour", () => {
    const legacy = parseLegacyManifest(JSON.stringify(LEGACY));
    expect(legacy).toEqual(LEGACY);
    expect(legacyEntityManifest(LEGACY, "sessions")).toEqual({
      runId: "old-1",
      hourUtc: LEGACY.hourUtc,
      entity: "sessions",
      generation: 1,
      claimedAt: "t",
      records: 10,
      parts: 2,
      segments: [SEGMENT],
    });
    expect(legacyEntityManifest(LEGACY, "users")).toBeUndefined();
  });

  it("refuses a per-hour manifest short of one", () => {
    for (const broken of [
      { ...LEGACY, runId: undefined },
      { ...LEGACY, hourUtc: 8 },
      { ...LEGACY, entities: null },
      { ...LEGACY, entities: { sessions: { records: 1, parts: 1 } } },
      { ...LEGACY, entities: { sessions: null } },
      { ...LEGACY, entities: 5 },
      { ...LEGACY, entities: { ...LEGACY.entities, users: { records: 1, parts: 1, segments: [{}] } } },
    ])
      expect(parseLegacyManifest(JSON.stringify(broken)), JSON.stringify(broken)).toBeUndefined();
    expect(parseLegacyManifest("null")).toBeUndefined();
  });
});

describe("parseJson", () => {
  it("is the value of a JSON text, null included, and undefined for text that is not JSON", () => {
    expect(parseJson('{"a":[1]}')).toEqual({ a: [1] });
    expect(parseJson("null")).toBeNull();
    for (const text of ["", "not json", "{"]) expect(parseJson(text), text).toBeUndefined();
  });
});
