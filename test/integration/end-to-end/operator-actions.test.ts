import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import { CitrixResponseError, StorageError } from "../../../functions/lib/config/errors";
import { hourRange } from "../../../functions/lib/config/hours";
import { firstHourKey, leaseKey, manifestKey } from "../../../functions/lib/feed/keys";
import { instrument } from "../../support/instrumented-store";
import {
  BUCKET,
  expectFeedMatchesSimulator,
  FEED_PREFIX,
  STATE_KEY,
  type Stand,
  startStand,
} from "../../support/stand";

// What operators do (issue 19, SPEC promise 10), each run as a user would through the local engine, with the
// feed checked record by record. At 11:20 UTC with LOOKBACK_MINUTES 75 the newest eligible hour is 10:00.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOUR_MS = 3_600_000;
const H = (hour: number) => `2026-11-24T${String(hour).padStart(2, "0")}:00:00Z`;
const CONTROL = "_citrix_collector/citrix_analytics";
const STAGING = `${CONTROL}/staging/`;

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

async function open(env: Record<string, string>): Promise<Stand> {
  stand = await startStand({ now: NOW, env });
  return stand;
}

const backfill = (from: number, to: number) => ({ backfill: { from: H(from), to: H(to) } });

async function expectPublishedOnce(s: Stand, hours: readonly string[], entities: readonly string[]) {
  for (const hourUtc of hours)
    for (const entity of entities) await expectFeedMatchesSimulator(s, entity, hourUtc);
}

function expectNoKeyWrittenTwice(writes: readonly string[]): void {
  const seen = new Set<string>();
  expect(writes.filter((key) => seen.size === seen.add(key).size)).toEqual([]);
}

/** ETag and LastModified of every feed object: an object written again changes both. */
async function feedVersions(s: Stand): Promise<Map<string, string>> {
  const versions = new Map<string, string>();
  for (const key of await s.keys(`${FEED_PREFIX}/`)) {
    const head = await s.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    versions.set(key, `${head.ETag} ${head.LastModified?.toISOString()}`);
  }
  return versions;
}

describe("backfills and first runs", () => {
  it("a backfill of a later hour before the first scheduled run: every hour from FIRST_HOUR_UTC published once", async () => {
    const s = await open({ FIRST_HOUR_UTC: H(7) });
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);

    const early = await s.run("backfill-09", { adaptRuntime, input: backfill(9, 9) });
    expect(early.status).toBe("SUCCEEDED");
    // A backfill never creates a watermark, nor implies one.
    expect(await s.watermark()).toBeNull();
    const scheduled = await s.run("scheduled-1", { adaptRuntime });

    expect(scheduled.status).toBe("SUCCEEDED");
    expect(scheduled.plan?.hours).toEqual([H(7), H(8), H(10)]);
    await expectPublishedOnce(s, hourRange(Date.parse(H(7)), Date.parse(H(10))), [
      "sessions",
      "machines",
      "users",
    ]);
    expectNoKeyWrittenTwice(store.feedWrites);
    expect(await s.watermark()).toBe(H(10));
  });

  it("a backfill of hours before FIRST_HOUR_UTC does not send the first run back to them", async () => {
    const s = await open({ FIRST_HOUR_UTC: H(9), ENTITIES: "sessions" });
    expect((await s.run("backfill-03", { input: backfill(3, 4) })).status).toBe("SUCCEEDED");

    const scheduled = await s.run("scheduled-1");

    expect(scheduled.plan?.hours).toEqual([H(9), H(10)]);
    await expectPublishedOnce(s, [H(3), H(4), H(9), H(10)], ["sessions"]);
    expect(await s.keys(`${FEED_PREFIX}/sessions/year=2026/month=11/day=24/hour=05/`)).toEqual([]);
    expect(await s.watermark()).toBe(H(10));
  });

  it("two first runs on either side of the minute an hour falls due start at the same hour; neither loses one", async () => {
    // No FIRST_HOUR_UTC. 10:00 falls due at 11:15: first-a's clock says 11:14 (09:00 is its newest eligible
    // hour), first-b's 11:16. first-b plans and commits while first-a is between its look at the state file and
    // its lease, and first-a then fails: before first-hour.json, first-b started at 10:00 and stored the
    // watermark there, over the 09:00 that only first-a was to collect.
    const s = await open({ ENTITIES: "sessions" });
    let second: ReturnType<Stand["run"]> | undefined;
    class PausingStore extends S3Store {
      override async put(...args: Parameters<S3Store["put"]>): ReturnType<S3Store["put"]> {
        if (args[0] === leaseKey(CONTROL, "first-a") && second === undefined) {
          second = s.run("first-b", { now: () => Date.parse("2026-11-24T11:16:00Z") });
          await second;
        }
        return super.put(...args);
      }
    }
    const pausing = new PausingStore(s.client, BUCKET);
    const first = await s.run("first-a", {
      now: () => Date.parse("2026-11-24T11:14:00Z"),
      adaptRuntime: (runtime) => ({ ...runtime, store: pausing }),
      wrap: (key, handler) => async (event, context) => {
        if (key === "collect") throw new CitrixResponseError("injected: first-a fails after planning");
        return handler(event, context);
      },
    });
    const raced = await second;

    expect(first.status).toBe("FAILED");
    expect(raced?.status).toBe("SUCCEEDED");
    expect(JSON.parse((await s.store.getText(firstHourKey(CONTROL)))?.body ?? "")).toMatchObject({
      hourUtc: H(9),
      by: "first-a",
    });
    expect(raced?.plan?.hours).toEqual([H(9), H(10)]);
    await expectPublishedOnce(s, [H(9), H(10)], ["sessions"]);
    expect(await s.watermark()).toBe(H(10));
  });

  it("a state file deleted after backfills interleaved with scheduled runs: the next run neither skips nor goes back", async () => {
    const s = await open({ FIRST_HOUR_UTC: H(8), ENTITIES: "sessions" });
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    expect((await s.run("scheduled-1", { adaptRuntime, now: () => NOW - 2 * HOUR_MS })).plan?.hours).toEqual([
      H(8),
    ]);
    expect(
      (await s.run("backfill-05", { adaptRuntime, input: backfill(5, 6), now: () => NOW - HOUR_MS })).status,
    ).toBe("SUCCEEDED");
    expect((await s.run("scheduled-2", { adaptRuntime, now: () => NOW - HOUR_MS })).plan?.hours).toEqual([
      H(9),
    ]);
    await s.store.deleteKeys([STATE_KEY]);
    // With no state file, this backfill's markers record no watermark.
    expect((await s.run("backfill-10", { adaptRuntime, input: backfill(10, 10) })).status).toBe("SUCCEEDED");

    const scheduled = await s.run("scheduled-3", { adaptRuntime });

    expect(scheduled.status).toBe("SUCCEEDED");
    expect(scheduled.plan?.watermark.hourUtc).toBe(H(10));
    expect(scheduled.plan?.hours).toEqual([]);
    expect(await s.watermark()).toBe(H(10));
    await expectPublishedOnce(s, [H(5), H(6), H(8), H(9), H(10)], ["sessions"]);
    // 07:00, before FIRST_HOUR_UTC and never asked for, is not collected.
    expect(await s.keys(`${FEED_PREFIX}/sessions/year=2026/month=11/day=24/hour=07/`)).toEqual([]);
    expectNoKeyWrittenTwice(store.feedWrites);
  });
});

describe("entities that change", () => {
  it("an entity added after three hours were published: a local backfill publishes its hours once and rewrites nothing", async () => {
    const s = await open({ FIRST_HOUR_UTC: H(8), ENTITIES: "sessions,machines" });
    expect((await s.run("scheduled-1")).plan?.hours).toEqual([H(8), H(9), H(10)]);
    const before = await feedVersions(s);
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    const withUsers = { ...s.env, ENTITIES: "sessions,machines,users" };

    const filled = await s.run("backfill-users", { env: withUsers, adaptRuntime, input: backfill(8, 10) });

    expect(filled.status).toBe("SUCCEEDED");
    expect(filled.commit?.hours.map((hour) => [hour.hourUtc, hour.records])).toEqual(
      [8, 9, 10].map((hour) => [
        H(hour),
        {
          machines: expect.objectContaining({ outcome: "already-published", publisher: "scheduled-1" }),
          sessions: expect.objectContaining({ outcome: "already-published", publisher: "scheduled-1" }),
          users: expect.objectContaining({ outcome: "published", publisher: "backfill-users" }),
        },
      ]),
    );
    expect(store.feedWrites.every((key) => key.startsWith(`${FEED_PREFIX}/users/`))).toBe(true);
    const after = await feedVersions(s);
    for (const [key, version] of before) expect(after.get(key), key).toBe(version);
    await expectPublishedOnce(s, [H(8), H(9), H(10)], ["sessions", "machines", "users"]);

    // The next scheduled run collects all three from the next hour on.
    const next = await s.run("scheduled-2", { env: withUsers, adaptRuntime, now: () => NOW + HOUR_MS });
    expect(next.plan?.hours).toEqual([H(11)]);
    await expectPublishedOnce(s, [H(11)], ["sessions", "machines", "users"]);
    expectNoKeyWrittenTwice(store.feedWrites);
    expect(await s.watermark()).toBe(H(11));
  });

  it("an entity removed never blocks the watermark", async () => {
    const s = await open({ FIRST_HOUR_UTC: H(10), ENTITIES: "sessions,users" });
    expect((await s.run("scheduled-1")).status).toBe("SUCCEEDED");
    const sessionsOnly = { ...s.env, ENTITIES: "sessions" };
    for (const [name, later] of [
      ["scheduled-2", 1],
      ["scheduled-3", 2],
    ] as const) {
      const run = await s.run(name, { env: sessionsOnly, now: () => NOW + later * HOUR_MS });
      expect(run.plan?.hours).toEqual([H(10 + later)]);
      expect(await s.watermark()).toBe(H(10 + later));
    }
    await expectPublishedOnce(s, [H(11), H(12)], ["sessions"]);
    expect(await s.keys(`${FEED_PREFIX}/users/year=2026/month=11/day=24/hour=11/`)).toEqual([]);
  });
});

describe("expired or lost staging", () => {
  /** A run that claims every entity-hour and fails before any copy lands, then loses its staging. */
  async function claimedThenExpired(s: Stand, failCopies: (destination: string) => boolean): Promise<void> {
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    store.beforeCopy = (destination) => {
      if (failCopies(destination)) throw new StorageError("injected: access denied while publishing");
    };
    const failed = await s.run("dead-1", { adaptRuntime });
    expect(failed.status).toBe("FAILED");
    expect(failed.redrive?.state).toBe("PublishAndAdvance");
    // Nobody reached Commit for longer than the bucket keeps staging: the lifecycle rule expired it.
    await s.store.deleteKeys(await s.keys(`${STAGING}dead-1/`));
  }

  it("a claim none of whose parts reached the feed is re-collected under a new generation, with no operator", async () => {
    const s = await open({ FIRST_HOUR_UTC: H(9), ENTITIES: "sessions" });
    await claimedThenExpired(s, () => true);
    expect(await s.store.exists(manifestKey(CONTROL, H(9), "sessions"))).toBe(true);
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);

    const next = await s.run("next-1", { adaptRuntime });

    expect(next.status).toBe("SUCCEEDED");
    expect(next.commit?.hours.map((hour) => [hour.hourUtc, hour.outcome, hour.publisher])).toEqual([
      [H(9), "published", "next-1"],
      [H(10), "published", "next-1"],
    ]);
    expect(await s.store.exists(manifestKey(CONTROL, H(9), "sessions", 2))).toBe(true);
    await expectPublishedOnce(s, [H(9), H(10)], ["sessions"]);
    expectNoKeyWrittenTwice(store.feedWrites);
    expect(await s.watermark()).toBe(H(10));
  });

  it("a claim partly copied whose staging is gone fails by name before writing, and heals once the named objects go", async () => {
    const s = await open({ FIRST_HOUR_UTC: H(9), ENTITIES: "sessions", PART_MAX_RECORDS: "1000" });
    let copies = 0;
    // 09:00 (three parts) gets its first part into the feed; 10:00 none.
    await claimedThenExpired(s, (destination) => !destination.includes("hour=09/") || ++copies > 1);
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);

    const refused = await s.run("next-1", { adaptRuntime });

    expect(refused.status).toBe("FAILED");
    expect(refused.error?.name).toBe("StagingLostError");
    expect(refused.redrive?.state).toBe("PublishAndAdvance");
    const message = refused.error?.message ?? "";
    const copied = (await s.keys(`${FEED_PREFIX}/sessions/year=2026/month=11/day=24/hour=09/`))[0] as string;
    expect(message).toContain(
      `sessions ${H(9)} (manifest s3://${BUCKET}/${manifestKey(CONTROL, H(9), "sessions")}`,
    );
    expect(message).toContain(`aws s3 rm s3://${BUCKET}/${copied}.`);
    expect(store.feedWrites.filter((key) => key.includes("hour=09/"))).toEqual([]);

    // The operator runs the command the error names, and redrives.
    await s.store.deleteKeys([copied]);
    const redriven = await s.run("next-1", { adaptRuntime, redrive: refused.redrive });
    expect(redriven.status).toBe("SUCCEEDED");
    await expectPublishedOnce(s, [H(9), H(10)], ["sessions"]);
    expect(await s.watermark()).toBe(H(10));
  });
});
