import { describe, expect, it } from "vitest";
import type { EntityHourReport } from "../../../functions/lib/config/contracts";
import { StagingLostError } from "../../../functions/lib/config/errors";
import { manifestKey } from "../../../functions/lib/feed/keys";
import {
  currentGenerations,
  dayListings,
  hourReport,
  hoursInParallel,
  publishedEntitiesOfHour,
  recordsPerHourOf,
  stagingLostError,
  stagingVerdict,
} from "../../../functions/lib/feed/publisher";

const HOUR = "2026-11-24T08:00:00Z";
const part = (n: number, sourceExists: boolean, destinationExists: boolean) => ({
  source: `staging/${n}`,
  destination: `feed/${n}`,
  sourceExists,
  destinationExists,
});

describe("hoursInParallel", () => {
  it("publishes about 36 entity-hours at once, whole hours, never fewer than four hours", () => {
    expect(hoursInParallel(1)).toBe(36);
    expect(hoursInParallel(3)).toBe(12);
    expect(hoursInParallel(5)).toBe(7);
    expect(hoursInParallel(9)).toBe(4);
    expect(hoursInParallel(10)).toBe(4);
    expect(hoursInParallel(40)).toBe(4);
  });
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

  it("with no entity-hours at all, is already published, by this execution", () => {
    expect(hourReport(HOUR, "run-1", [])).toEqual({
      hourUtc: HOUR,
      outcome: "already-published",
      publisher: "run-1",
      records: {},
    });
  });

  it("otherwise completes another's claim, naming it", () => {
    const report = hourReport(HOUR, "run-1", [
      ["machines", entity("already-published", "old-1")],
      ["sessions", entity("completed-for-another", "dead-1")],
    ]);
    expect([report.outcome, report.publisher]).toEqual(["completed-for-another", "dead-1"]);
  });
});

describe("dayListings", () => {
  it("lists each day once, and gives each hour the keys under its own prefix, as S3 would", async () => {
    const stored = [
      "c/published/year=2026/month=11/day=24/hour=07/sessions",
      "c/published/year=2026/month=11/day=24/hour=08",
      "c/published/year=2026/month=11/day=24/hour=08/sessions",
      "c/published/year=2026/month=11/day=24/hour=08/users",
      "c/published/year=2026/month=11/day=25/hour=08/sessions",
    ];
    const listed: string[] = [];
    const listHour = dayListings({
      listKeys: async (prefix: string) => {
        listed.push(prefix);
        return stored.filter((key) => key.startsWith(prefix));
      },
    });
    const hour = (day: number, hour: number) => `c/published/year=2026/month=11/day=${day}/hour=0${hour}`;
    expect(await Promise.all([listHour(hour(24, 8)), listHour(hour(24, 7)), listHour(hour(24, 9))])).toEqual([
      stored.slice(1, 4),
      stored.slice(0, 1),
      [],
    ]);
    expect(await listHour(hour(25, 8))).toEqual(stored.slice(4));
    expect(listed).toEqual([
      "c/published/year=2026/month=11/day=24/",
      "c/published/year=2026/month=11/day=25/",
    ]);
  });
});

describe("recordsPerHourOf", () => {
  const report = (hourUtc: string, records: Record<string, number>) => ({
    hourUtc,
    outcome: "published" as const,
    publisher: "run-1",
    records: Object.fromEntries(
      Object.entries(records).map(([entity, published]) => [
        entity,
        { published, outcome: "published" as const, publisher: "run-1" },
      ]),
    ),
  });

  it("averages each entity's published records over the hours it appears in, rounded", () => {
    const reports = [
      report(HOUR, { sessions: 3_000, machines: 10 }),
      report("2026-11-24T09:00:00Z", { sessions: 1_001, machines: 11, users: 7 }),
    ];
    expect(recordsPerHourOf(reports)).toEqual({ sessions: 2_001, machines: 11, users: 7 });
  });

  it("is undefined for a Commit of no hours, which leaves the stored figures alone", () => {
    expect(recordsPerHourOf([])).toBeUndefined();
  });
});

describe("stagingLostError", () => {
  const manifest = {
    runId: "dead-1",
    hourUtc: HOUR,
    entity: "sessions",
    generation: 2,
    claimedAt: "t",
    records: 1,
    parts: 1,
    segments: [],
  };
  const where = `sessions ${HOUR} (manifest s3://b/${manifestKey("_c", HOUR, "sessions", 2)} of execution dead-1)`;
  const message = (verdict: Parameters<typeof stagingLostError>[3]) => {
    const error = stagingLostError("b", "_c", manifest, verdict);
    expect(error).toBeInstanceOf(StagingLostError);
    return error.message;
  };
  const lost = (feedObjects: number, remainingSources: number) => ({
    kind: "lost" as const,
    missing: ["staging/gone-0", "staging/gone-1"],
    feedObjects: Array.from({ length: feedObjects }, (_, i) => `feed/${i}`),
    remainingSources: Array.from({ length: remainingSources }, (_, i) => `staging/${i}`),
  });

  it("names what is gone, what remains and every object to delete, and what happens after", () => {
    expect(message(lost(1, 1))).toBe(
      `${where} cannot be finished: 2 staging part(s) are gone, e.g. s3://b/staging/gone-0, ` +
        "while 1 of its part(s) are already in the feed and 1 staging part(s) remain. " +
        "Delete them (SecOps may have ingested the feed objects already; the re-collected entity-hour replaces them): " +
        "aws s3 rm s3://b/feed/0 ; aws s3 rm s3://b/staging/0. " +
        "Then redrive or wait for the next run: it re-collects the entity-hour under a new manifest generation.",
    );
  });

  it("lists twenty objects to delete, and counts the rest", () => {
    const twenty = message(lost(12, 8));
    expect(twenty.match(/aws s3 rm/g)).toHaveLength(20);
    expect(twenty).toContain("aws s3 rm s3://b/staging/7. Then");
    const more = message(lost(12, 11));
    expect(more.match(/aws s3 rm/g)).toHaveLength(20);
    expect(more).toContain("aws s3 rm s3://b/staging/7; and 3 more like them. Then");
  });

  it("says the next scheduled run re-collects an entity-hour none of whose parts is left anywhere", () => {
    expect(message({ kind: "supersede" })).toBe(
      `${where}: every staging part is gone and none reached the feed; the next scheduled run re-collects it ` +
        "under a new manifest generation (a redrive of this execution cannot: its collection is gone)",
    );
  });

  it("sends the operator after whatever deletes staging when parts vanished and came back", () => {
    expect(message({ kind: "finishable" })).toBe(
      `${where}: staging parts vanished while this execution copied them, more than once; ` +
        "find what deletes s3://b/_c/staging/ objects, then redrive",
    );
  });
});

function slice() {
  return { records: 1, parts: 1, segments: [] };
}
