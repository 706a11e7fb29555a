import { afterEach, describe, expect, it } from "vitest";
import { StorageError } from "../../../functions/lib/config/errors";
import { hourRange } from "../../../functions/lib/config/hours";
import type { LocalHandler } from "../../../local/state-machine";
import { instrument, lambdaDied } from "../../support/instrumented-store";
import {
  expectFeedMatchesSimulator,
  FEED_PREFIX,
  STATE_KEY,
  type Stand,
  startStand,
} from "../../support/stand";

// At 11:20 UTC with LOOKBACK_MINUTES 75 the newest eligible hour is 10:00.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOURS = ["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z"];
const ENTITIES = ["sessions", "machines", "users"];
const STAGING = "_citrix_collector/citrix_analytics/staging/";
const LEASES = "_citrix_collector/citrix_analytics/leases/";
const CONTROL = "_citrix_collector/citrix_analytics";

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

async function open(env: Record<string, string> = {}, simulator = {}): Promise<Stand> {
  stand = await startStand({ now: NOW, simulator, env: { FIRST_HOUR_UTC: HOURS[0] as string, ...env } });
  return stand;
}

/** Every record the simulator serves for these hours is in the feed exactly once, in order. */
async function expectPublishedOnce(s: Stand, hours: string[], entities = ENTITIES): Promise<void> {
  for (const hourUtc of hours)
    for (const entity of entities) await expectFeedMatchesSimulator(s, entity, hourUtc);
}

function expectNoKeyWrittenTwice(writes: string[]): void {
  const seen = new Set<string>();
  const twice = writes.filter((key) => seen.size === seen.add(key).size);
  expect(twice).toEqual([]);
}

describe("a collect Lambda that dies mid-way", () => {
  it("is retried from its cursor and the feed gets every record once, never the dead attempt's parts", async () => {
    const s = await open({ ENTITIES: "sessions", PART_MAX_RECORDS: "400", TOP_N: "500" });
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    let stagingWrites = 0;
    // The first invocation dies after writing 3 staging parts (1200 of 2500 records of 08:00).
    store.beforePut = (key) => {
      if (key.startsWith(STAGING) && ++stagingWrites === 4) throw lambdaDied();
    };
    const result = await s.run("killed-1", { adaptRuntime });

    expect(result.status).toBe("SUCCEEDED");
    expect(result.retries).toBe(1);
    await expectPublishedOnce(s, HOURS, ["sessions"]);
    expectNoKeyWrittenTwice(store.feedWrites);
    expect(await s.keys(STAGING)).toEqual([]);
    expect(await s.watermark()).toBe(HOURS[2]);
  });

  it("ignores an invocation Step Functions gave up on that writes its parts after its retry did", async () => {
    const s = await open({ ENTITIES: "sessions", PART_MAX_RECORDS: "300", TOP_N: "500" });
    let lost: { event: unknown; collect: LocalHandler } | undefined;
    let zombieRan = false;
    const result = await s.run("zombie-1", {
      wrap: (key, handler) => async (event, context) => {
        if (key === "collect" && !lost) {
          // The invoke call is lost to Step Functions, which retries; the invocation itself lives on.
          lost = { event, collect: handler };
          throw lambdaDied("Lambda.ServiceException");
        }
        if (key === "commit" && lost && !zombieRan) {
          // It finishes just before Commit, with a shorter time budget, so its parts end at other records.
          zombieRan = true;
          await lost.collect(lost.event, { getRemainingTimeInMillis: () => 30_001, awsRequestId: "lost" });
        }
        return handler(event, context);
      },
    });

    expect(zombieRan).toBe(true);
    expect(result.status).toBe("SUCCEEDED");
    await expectPublishedOnce(s, HOURS, ["sessions"]);
  });
});

describe("a Commit that fails half-way", () => {
  it("is finished by the next execution from its staging, and its redrive later writes nothing twice", async () => {
    const s = await open();
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    // Copies of 09:00's parts (one per entity) fail after the first: 09:00 is claimed, partly copied.
    let copies09 = 0;
    store.beforeCopy = (destination) => {
      if (destination.includes("/year=2026/month=11/day=24/hour=09/") && ++copies09 > 1)
        throw new StorageError("injected: access denied half-way through publishing");
    };
    const failed = await s.run("commit-fails-1", { adaptRuntime });

    expect(failed.status).toBe("FAILED");
    expect(failed.error?.name).toBe("StorageError");
    expect(failed.redrive?.state).toBe("PublishAndAdvance");
    expect(await s.watermark()).toBeNull();
    const partial = store.feedWrites.filter((key) => key.includes("hour=09/"));
    expect(partial.length).toBeGreaterThan(0);
    // An entity whose one part was copied may have its marker; the others of 09:00 have none.
    expect((await s.keys(`${CONTROL}/published/year=2026/month=11/day=24/hour=09/`)).length).toBeLessThan(
      ENTITIES.length,
    );

    // Hours are published in parallel: 08:00 and 10:00 were, 09:00 was claimed and got some of its parts. The
    // next scheduled execution counts the published hours and finishes 09:00 from the failed execution's
    // staging: the hour's manifest names those parts, so the feed gets exactly them, each once.
    store.beforeCopy = () => undefined;
    const next = await s.run("scheduled-after-failure", { adaptRuntime });
    expect(next.status).toBe("SUCCEEDED");
    expect(next.plan?.hours).toEqual([HOURS[1]]);
    expect(next.commit?.hours.map((hour) => [hour.hourUtc, hour.outcome, hour.publisher])).toEqual([
      [HOURS[1], "completed-for-another", "commit-fails-1"],
    ]);
    await expectPublishedOnce(s, HOURS);
    expect(await s.watermark()).toBe(HOURS[2]);

    // Redriven after all (it stays redrivable for 14 days): every hour is published, nothing is written.
    const writesBefore = store.feedWrites.length;
    const redriven = await s.run("commit-fails-1", { adaptRuntime, redrive: failed.redrive });
    expect(redriven.status).toBe("SUCCEEDED");
    expect(redriven.commit?.hours.map((hour) => hour.outcome)).toEqual(HOURS.map(() => "already-published"));
    expect(store.feedWrites).toHaveLength(writesBefore);
    await expectPublishedOnce(s, HOURS);
    expectNoKeyWrittenTwice(store.feedWrites);
    expect(await s.watermark()).toBe(HOURS[2]);
    expect(await s.keys(STAGING)).toEqual([]);
  });
});

describe("overlapping executions", () => {
  it("started together publish each hour once between them", async () => {
    const s = await open({}, { pageLatencyMs: 3 });
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    const [first, second] = await Promise.all([
      s.run("overlap-a", { adaptRuntime }),
      s.run("overlap-b", { adaptRuntime }),
    ]);

    expect([first.status, second.status]).toEqual(["SUCCEEDED", "SUCCEEDED"]);
    await expectPublishedOnce(s, HOURS);
    expectNoKeyWrittenTwice(store.feedWrites);
    expect(await s.watermark()).toBe(HOURS[2]);
    for (const hourUtc of HOURS) {
      const publishers = [first, second]
        .flatMap((run) => run.commit?.hours ?? [])
        .filter((hour) => hour.hourUtc === hourUtc && hour.outcome === "published")
        .map((hour) => hour.publisher);
      expect(publishers, hourUtc).toHaveLength(1);
    }
    expect(await s.keys(STAGING)).toEqual([]);
    expect(await s.keys(LEASES)).toEqual([]);
  });

  it("do not collect twice: a run that starts while the previous one still collects takes only the new hour", async () => {
    // Reference: what one execution asks the API for these three hours.
    const alone = await open({}, { pageLatencyMs: 2 });
    await alone.run("alone-1");
    // Pages that held records, each answered in full: a doubled collection doubles them. (Requests for pages
    // past the end vary with the timing of the page window, so they are not counted.)
    const pageRequests = (stand: Stand) =>
      stand.simulator.requests.filter(
        (request) => request.entity && request.status === 200 && request.records > 0 && !request.aborted,
      );
    const requestsAlone = pageRequests(alone).length;
    await alone.close();

    const s = await open({}, { pageLatencyMs: 2 });
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    let collecting: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      collecting = resolve;
    });
    const slow = s.run("slow-1", {
      adaptRuntime,
      wrap: (key, handler) => async (event, context) => {
        if (key === "collect") collecting();
        return handler(event, context);
      },
    });
    await started;
    // The next hourly execution starts while slow-1 is still collecting 08:00 .. 10:00.
    const next = await s.run("next-1", { adaptRuntime, now: () => NOW + 3_600_000 });
    const first = await slow;

    expect([first.status, next.status]).toEqual(["SUCCEEDED", "SUCCEEDED"]);
    expect(next.plan?.hours).toEqual(["2026-11-24T11:00:00Z"]);
    expect(next.plan?.deferred).toEqual({ "slow-1": HOURS });
    const requests = pageRequests(s);
    const newHour = requests.filter((request) => request.hourUtc === "2026-11-24T11:00:00Z");
    expect(newHour.length).toBeGreaterThan(0);
    expect(requests.length - newHour.length).toBe(requestsAlone);
    await expectPublishedOnce(s, [...HOURS, "2026-11-24T11:00:00Z"]);
    expectNoKeyWrittenTwice(store.feedWrites);
    // slow-1 commits last and moves the watermark over next-1's hour too.
    expect(await s.watermark()).toBe("2026-11-24T11:00:00Z");
    expect(await s.keys(LEASES)).toEqual([]);
  });
});

describe("a stale execution redriven after a newer one succeeded", () => {
  it("neither republishes nor moves the watermark backwards", async () => {
    const s = await open();
    s.simulator.inject({ kind: "wrongEnvelope", times: 1, entity: "users" });
    const stale = await s.run("stale-1");
    expect(stale.status).toBe("FAILED");
    expect(stale.redrive?.state).toBe("CollectEntityHours");

    // Two hours later a newer execution publishes 08:00 to 12:00.
    const newer = await s.run("newer-1", { now: () => NOW + 2 * 3_600_000 });
    expect(newer.status).toBe("SUCCEEDED");
    expect(await s.watermark()).toBe("2026-11-24T12:00:00Z");
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);

    const redriven = await s.run("stale-1", { adaptRuntime, redrive: stale.redrive });

    expect(redriven.status).toBe("SUCCEEDED");
    expect(redriven.commit?.hours.map((hour) => [hour.outcome, hour.publisher])).toEqual(
      HOURS.map(() => ["already-published", "newer-1"]),
    );
    expect(store.feedWrites).toEqual([]);
    expect(redriven.commit?.watermark).toEqual({
      before: "2026-11-24T07:00:00Z",
      after: "2026-11-24T12:00:00Z",
    });
    expect(await s.watermark()).toBe("2026-11-24T12:00:00Z");
    await expectPublishedOnce(
      s,
      hourRange(Date.parse(HOURS[0] as string), Date.parse("2026-11-24T12:00:00Z")),
    );
    expect(await s.keys(STAGING)).toEqual([]);
  });
});

describe("catching up after an outage", () => {
  it("publishes all 30 missed hours in order over successive executions, MAX_HOURS_PER_RUN at a time", async () => {
    const s = await open(
      { ENTITIES: "sessions", FIRST_HOUR_UTC: "", MAX_HOURS_PER_RUN: "24" },
      { volume: { sessions: 120 } },
    );
    await s.store.put(STATE_KEY, '{"last_hour_utc":"2026-11-23T04:00:00Z"}', "application/json");
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    // 30 hours later (05:00 .. 10:00 the next day are due).
    const due = hourRange(Date.parse("2026-11-23T05:00:00Z"), Date.parse(HOURS[2] as string));
    expect(due).toHaveLength(30);

    const runs = [];
    for (const name of ["catch-up-1", "catch-up-2", "catch-up-3"])
      runs.push(await s.run(name, { adaptRuntime }));

    expect(runs.map((run) => run.status)).toEqual(["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]);
    expect(runs.map((run) => run.plan?.hours)).toEqual([due.slice(0, 24), due.slice(24), []]);
    expect(runs.map((run) => run.commit?.watermark.after)).toEqual([due[23], due[29], undefined]);
    await expectPublishedOnce(s, due, ["sessions"]);
    expectNoKeyWrittenTwice(store.feedWrites);
    expect(await s.watermark()).toBe(due[29]);
  });
});

describe("a backfill of an explicit hour range", () => {
  it("publishes hours never published, leaves published ones untouched, and never moves the watermark", async () => {
    const s = await open({ FIRST_HOUR_UTC: HOURS[1] as string });
    const scheduled = await s.run("scheduled-1");
    expect(scheduled.plan?.hours).toEqual(HOURS.slice(1));
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    s.simulator.requests.length = 0;

    const backfill = await s.run("backfill-1", {
      adaptRuntime,
      input: { backfill: { from: "2026-11-24T07:00:00Z", to: HOURS[1] as string } },
    });

    expect(backfill.status).toBe("SUCCEEDED");
    expect(backfill.plan?.mode).toBe("backfill");
    expect(backfill.commit?.hours.map((hour) => [hour.hourUtc, hour.outcome, hour.publisher])).toEqual([
      ["2026-11-24T07:00:00Z", "published", "backfill-1"],
      ["2026-11-24T08:00:00Z", "published", "backfill-1"],
      ["2026-11-24T09:00:00Z", "already-published", "scheduled-1"],
    ]);
    // The hour published already is neither collected again nor republished: Commit reports its publisher.
    expect(backfill.plan?.items.some((item) => item.hourUtc === HOURS[1])).toBe(false);
    expect(s.simulator.requests.filter((request) => request.hourUtc === HOURS[1])).toEqual([]);
    expect(backfill.commit?.hours[2]?.records.sessions).toEqual({
      published: 2500,
      outcome: "already-published",
      publisher: "scheduled-1",
    });
    expect(store.feedWrites.every((key) => !key.includes("hour=09"))).toBe(true);
    expectNoKeyWrittenTwice(store.feedWrites);
    await expectPublishedOnce(s, ["2026-11-24T07:00:00Z", ...HOURS]);
    expect(await s.watermark()).toBe(HOURS[2]);
  });

  it("rejects a range that is not settled yet or too long, by name, before collecting anything", async () => {
    const s = await open({ MAX_HOURS_PER_RUN: "4" });
    const early = await s.run("backfill-early", {
      input: { backfill: { from: HOURS[2] as string, to: "2026-11-24T11:00:00Z" } },
    });
    const long = await s.run("backfill-long", {
      input: { backfill: { from: "2026-11-24T00:00:00Z", to: HOURS[2] as string } },
    });
    const malformed = await s.run("backfill-bad", { input: { backfill: { from: "yesterday" } } });

    expect([early, long, malformed].map((run) => run.error?.name)).toEqual([
      "InvalidInputError",
      "InvalidInputError",
      "InvalidInputError",
    ]);
    expect(early.error?.message).toContain("not settled yet");
    expect(long.error?.message).toContain("MAX_HOURS_PER_RUN");
    expect(malformed.error?.message).toContain("backfill.from");
    expect(s.simulator.requests).toEqual([]);
    expect(await s.keys("")).toEqual([]);
  });
});
