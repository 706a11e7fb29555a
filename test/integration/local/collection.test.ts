import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { LocalCollectionResult } from "../../../local/collection";
import { expectFeedMatchesSimulator, STATE_KEY, type Stand, startStand } from "../../support/stand";

// 11:20 UTC with LOOKBACK_MINUTES 75: the newest eligible hour is 10:00, so a first run from 08:00
// collects 08, 09 and 10.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOURS = ["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z"];
const ENTITIES = ["sessions", "machines", "users"];

describe("a scheduled collection, end to end through the deployed definition", () => {
  let stand: Stand;
  // The first scheduled run, which every test here starts from (so each also passes when run alone).
  let first: LocalCollectionResult;
  let firstLogs: string[];
  beforeAll(async () => {
    stand = await startStand({ now: NOW, env: { FIRST_HOUR_UTC: HOURS[0] } });
    first = await stand.run("scheduled-1");
    firstLogs = [...stand.logs];
  });
  afterAll(() => stand.close());

  it("lands every record of every due entity-hour in the feed exactly once and advances the watermark", async () => {
    const result = first;

    expect(result.error).toBeUndefined();
    expect(result.status).toBe("SUCCEEDED");
    expect(result.plan?.hours).toEqual(HOURS);
    for (const hourUtc of HOURS) {
      for (const entity of ENTITIES) await expectFeedMatchesSimulator(stand, entity, hourUtc);
    }
    expect(await stand.watermark()).toBe(HOURS[2]);
    // Only gzipped NDJSON parts (GZIP's default) are visible to SecOps: no staging, manifest or state object
    // under the feed prefix.
    const feedKeys = await stand.keys("citrix_analytics/");
    expect(feedKeys.length).toBeGreaterThanOrEqual(9);
    for (const key of feedKeys) {
      expect(key).toMatch(
        /^citrix_analytics\/\w+\/year=\d{4}\/month=\d{2}\/day=\d{2}\/hour=\d{2}\/part-\d{5}\.ndjson\.gz$/,
      );
    }
    expect(await stand.keys("_citrix_collector/citrix_analytics/staging/")).toEqual([]);
    expect(result.commit?.hours).toEqual(
      HOURS.map((hourUtc) => ({
        hourUtc,
        outcome: "published",
        publisher: "scheduled-1",
        records: {
          machines: { collected: 40, published: 40, outcome: "published", publisher: "scheduled-1" },
          sessions: { collected: 2500, published: 2500, outcome: "published", publisher: "scheduled-1" },
          users: { collected: 300, published: 300, outcome: "published", publisher: "scheduled-1" },
        },
      })),
    );
    expect(result.commit).toMatchObject({
      status: "committed",
      // A first run plans from the hour before its first hour; no state file existed before this Commit.
      watermark: { before: "2026-11-24T07:00:00Z", after: HOURS[2] },
    });
  });

  it("logs JSON lines carrying the execution, and never the client secret or a token", () => {
    expect(firstLogs.length).toBeGreaterThan(0);
    const text = firstLogs.join("");
    expect(text).not.toContain(stand.simulator.clientSecret);
    expect(stand.simulator.issuedTokens.length).toBeGreaterThan(0);
    for (const token of stand.simulator.issuedTokens) expect(text).not.toContain(token);
    for (const line of firstLogs) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      expect(entry.execution).toBe("scheduled-1");
    }
    const pageLines = firstLogs
      .map((line) => JSON.parse(line))
      .filter((entry) => entry.message === "wrote staging part");
    for (const entry of pageLines)
      expect(entry).toMatchObject({ entity: expect.any(String), hour: expect.any(String) });
  });

  it("does nothing when run again before a new hour is eligible, and collects only the new hour after", async () => {
    const before = await stand.keys("citrix_analytics/");
    const idle = await stand.run("scheduled-2");
    expect(idle.status).toBe("SUCCEEDED");
    expect(idle.plan?.items).toEqual([]);
    expect(idle.invocations).toEqual({ plan: 1 });
    expect(await stand.keys("citrix_analytics/")).toEqual(before);

    const next = await stand.run("scheduled-3", { now: () => NOW + 3_600_000 });
    expect(next.status).toBe("SUCCEEDED");
    expect(next.plan?.hours).toEqual(["2026-11-24T11:00:00Z"]);
    for (const entity of ENTITIES) await expectFeedMatchesSimulator(stand, entity, "2026-11-24T11:00:00Z");
    expect(await stand.watermark()).toBe("2026-11-24T11:00:00Z");
    for (const hourUtc of HOURS) expect(await stand.feed("sessions", hourUtc)).toHaveLength(2500);
  });
});

describe("paging", () => {
  let stand: Stand | undefined;
  afterEach(async () => {
    await stand?.close();
    stand = undefined;
  });

  it("continues an entity-hour across invocations when the time budget runs out, losing nothing", async () => {
    stand = await startStand({
      now: NOW,
      simulator: { volume: { sessions: 4321 } },
      // A 15 s timeout less the stand's 5 s HTTP timeout and a 9.999 s reserve leaves a 1 ms budget:
      // exactly one page per invocation, one request at a time (a page window would read the pages it
      // already asked for).
      env: {
        ENTITIES: "sessions",
        FIRST_HOUR_UTC: HOURS[2],
        TOP_N: "500",
        MAX_PAGES_IN_FLIGHT: "1",
        INVOCATION_RESERVE_MS: "9999",
        PART_MAX_RECORDS: "1200",
      },
    });
    const result = await stand.run("budget-1", { timeoutsMs: { collect: 15_000 } });

    expect(result.status).toBe("SUCCEEDED");
    const item = result.collected?.[0];
    expect(item?.pages).toBe(9); // 8 full pages of 500, then the short page of 321
    expect(item?.invocations).toBe(9);
    expect(result.invocations.collect).toBe(9);
    expect(item?.records).toBe(4321);
    await expectFeedMatchesSimulator(stand, "sessions", HOURS[2] as string);
  });

  it("follows @odata.nextLink when the service pages that way", async () => {
    stand = await startStand({
      now: NOW,
      simulator: { paging: "nextLink", volume: { sessions: 2345, machines: 0, users: 1000 } },
      env: { FIRST_HOUR_UTC: HOURS[2], TOP_N: "1000" },
    });
    const result = await stand.run("nextlink-1");

    expect(result.status).toBe("SUCCEEDED");
    for (const entity of ENTITIES) await expectFeedMatchesSimulator(stand, entity, HOURS[2] as string);
    expect(stand.simulator.requests.some((request) => request.path.includes("$skiptoken="))).toBe(true);
    expect(await stand.watermark()).toBe(HOURS[2]);
  });

  it("reads every record when the service caps $top below TOP_N", async () => {
    stand = await startStand({
      now: NOW,
      simulator: { maxPageSize: 300, volume: { sessions: 1000 } },
      env: { ENTITIES: "sessions", FIRST_HOUR_UTC: HOURS[2], TOP_N: "1000" },
    });
    const result = await stand.run("capped-1");

    expect(result.status).toBe("SUCCEEDED");
    await expectFeedMatchesSimulator(stand, "sessions", HOURS[2] as string);
  });
});

describe("failures leave the watermark and the feed untouched", () => {
  let stand: Stand | undefined;
  afterEach(async () => {
    await stand?.close();
    stand = undefined;
  });

  it("fails by name when one entity answers something that is not an OData page", async () => {
    stand = await startStand({ now: NOW, env: { FIRST_HOUR_UTC: HOURS[0] } });
    stand.simulator.inject({ kind: "wrongEnvelope", times: 1, entity: "machines" });
    const result = await stand.run("bad-envelope-1");

    expect(result.status).toBe("FAILED");
    expect(result.error?.name).toBe("CitrixResponseError");
    expect(result.error?.message).toContain("/casodata/machines");
    expect(await stand.watermark()).toBeNull();
    expect(await stand.keys("citrix_analytics/")).toEqual([]);
    expect(await stand.keys(STATE_KEY)).toEqual([]);
  });

  it("rides out a burst of 503s and a 429 without losing or repeating a record", async () => {
    stand = await startStand({ now: NOW, env: { FIRST_HOUR_UTC: HOURS[2], ENTITIES: "sessions" } });
    stand.simulator.inject({ kind: "status", status: 503, times: 2 });
    stand.simulator.inject({ kind: "status", status: 429, times: 1, retryAfter: "1" });
    const result = await stand.run("transient-1");

    expect(result.status).toBe("SUCCEEDED");
    expect(stand.simulator.requests.filter((request) => request.fault).length).toBe(3);
    await expectFeedMatchesSimulator(stand, "sessions", HOURS[2] as string);
  });

  it("fails the plan by name on bad configuration, before any API call", async () => {
    stand = await startStand({ now: NOW, env: { TOP_N: "lots", ENTITIES: "sessions,,bad name" } });
    const result = await stand.run("bad-config-1");

    expect(result.status).toBe("FAILED");
    expect(result.error?.name).toBe("ConfigurationError");
    expect(result.error?.message).toContain("TOP_N");
    expect(result.error?.message).toContain("ENTITIES");
    expect(stand.simulator.requests).toEqual([]);
    expect(await stand.keys("")).toEqual([]);
  });

  it("continues after a seed how-to user's watermark, read as-is from its old state file", async () => {
    stand = await startStand({ now: NOW, env: { SEED_STATE_KEY: "citrix_analytics/state.json" } });
    // The seed wrote Python's isoformat() + "Z" into a key inside the feed prefix.
    await stand.store.put(
      "citrix_analytics/state.json",
      '{"last_hour_utc":"2026-11-24T08:00:00Z"}',
      "application/json",
    );
    const result = await stand.run("migrated-1");

    expect(result.status).toBe("SUCCEEDED");
    expect(result.plan?.hours).toEqual(HOURS.slice(1));
    expect(await stand.feed("sessions", HOURS[0] as string)).toEqual([]);
    expect(await stand.watermark()).toBe(HOURS[2]);
  });
});
