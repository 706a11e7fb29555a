import { describe, expect, it } from "vitest";
import type { EntityHourReport } from "../../../functions/lib/config/contracts";
import {
  currentGenerations,
  hourReport,
  publishedEntitiesOfHour,
  stagingVerdict,
} from "../../../functions/lib/feed/publisher";

const HOUR = "2026-11-24T08:00:00Z";
const part = (n: number, sourceExists: boolean, destinationExists: boolean) => ({
  source: `staging/${n}`,
  destination: `feed/${n}`,
  sourceExists,
  destinationExists,
});

describe("stagingVerdict", () => {
  it("finishes a manifest whose every part is in the feed or still has its source", () => {
    expect(stagingVerdict([])).toEqual({ kind: "finishable" });
    expect(stagingVerdict([part(0, true, false), part(1, false, true), part(2, true, true)])).toEqual({
      kind: "finishable",
    });
  });

  it("supersedes one with no source left and nothing in the feed", () => {
    expect(stagingVerdict([part(0, false, false), part(1, false, false)])).toEqual({ kind: "supersede" });
  });

  it("calls it lost when a part can never be copied while another could or did land, naming each", () => {
    expect(stagingVerdict([part(0, false, false), part(1, true, false)])).toEqual({
      kind: "lost",
      missing: ["staging/0"],
      remainingSources: ["staging/1"],
      feedObjects: [],
    });
    expect(stagingVerdict([part(0, false, true), part(1, false, false), part(2, false, false)])).toEqual({
      kind: "lost",
      missing: ["staging/1", "staging/2"],
      remainingSources: [],
      feedObjects: ["feed/0"],
    });
  });
});

describe("publishedEntitiesOfHour", () => {
  it("takes entity markers as they are, and a legacy hour marker for the entities its manifest lists", () => {
    const legacy = {
      runId: "old",
      hourUtc: HOUR,
      claimedAt: "t",
      entities: { sessions: slice(), users: slice() },
    };
    expect([...publishedEntitiesOfHour([{ hourUtc: HOUR, entity: "machines" }], legacy)]).toEqual([
      "machines",
    ]);
    expect([...publishedEntitiesOfHour([{ hourUtc: HOUR, entity: undefined }], legacy)].sort()).toEqual([
      "sessions",
      "users",
    ]);
    expect([...publishedEntitiesOfHour([{ hourUtc: HOUR, entity: undefined }], undefined)]).toEqual([]);
  });
});

describe("currentGenerations", () => {
  it("is the highest generation of each entity, in any order", () => {
    expect(
      currentGenerations([
        { entity: "sessions", generation: 2 },
        { entity: "users", generation: 1 },
        { entity: "sessions", generation: 10 },
        { entity: "sessions", generation: 3 },
      ]),
    ).toEqual(
      new Map([
        ["sessions", 10],
        ["users", 1],
      ]),
    );
  });
});

describe("hourReport", () => {
  const entity = (outcome: EntityHourReport["outcome"], publisher: string): EntityHourReport => ({
    collected: 1,
    published: 1,
    outcome,
    publisher,
  });

  it("is already published only when every entity-hour was, naming the first one's publisher", () => {
    const report = hourReport(HOUR, "run-1", [
      ["users", entity("already-published", "old-2")],
      ["sessions", entity("already-published", "old-1")],
    ]);
    expect(report).toEqual({
      hourUtc: HOUR,
      outcome: "already-published",
      publisher: "old-2",
      records: {
        sessions: entity("already-published", "old-1"),
        users: entity("already-published", "old-2"),
      },
    });
    expect(Object.keys(report.records)).toEqual(["sessions", "users"]);
  });

  it("is published by this execution when it published one entity-hour from its own manifest", () => {
    const report = hourReport(HOUR, "run-1", [
      ["sessions", entity("completed-for-another", "dead-1")],
      ["users", entity("published", "run-1")],
      ["machines", entity("already-published", "old-1")],
    ]);
    expect([report.outcome, report.publisher]).toEqual(["published", "run-1"]);
  });

  it("otherwise completes another's claim, naming it", () => {
    const report = hourReport(HOUR, "run-1", [
      ["machines", entity("already-published", "old-1")],
      ["sessions", entity("completed-for-another", "dead-1")],
    ]);
    expect([report.outcome, report.publisher]).toEqual(["completed-for-another", "dead-1"]);
  });
});

function slice() {
  return { records: 1, parts: 1, segments: [] };
}
