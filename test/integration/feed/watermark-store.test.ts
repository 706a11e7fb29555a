import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../functions/lib/aws/log";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import { InvalidInputError, StorageUnavailableError } from "../../../functions/lib/config/errors";
import {
  firstHourKey,
  leaseKey,
  legacyManifestKey,
  legacyPublishedMarkerKey,
  pageWindowHintKey,
  publishedMarkerKey,
} from "../../../functions/lib/feed/keys";
import { type ExecutionStatus, type PlanDeps, planRun } from "../../../functions/lib/feed/plan-run";
import { entityHoursOf } from "../../../functions/lib/feed/planner";
import {
  advanceWatermark,
  firstRunHour,
  publishedEntitiesAfter,
  readWatermark,
  recoverWatermark,
} from "../../../functions/lib/feed/watermark";
import { type LocalS3, startLocalS3 } from "../../../stand-ins/s3-server";
import { pageWindowHint } from "../../support/stand";

const BUCKET = "watermark-test";
const CONTROL = "_control";
const STATE = `${CONTROL}/state.json`;
const SEED = "citrix_analytics/state.json";
const LAYOUT = { stateKey: STATE, controlPrefix: CONTROL };
const H = (hour: number) => `2026-11-24T${String(hour).padStart(2, "0")}:00:00Z`;

let s3: LocalS3;
let store: S3Store;
beforeAll(async () => {
  s3 = await startLocalS3({ buckets: [BUCKET] });
  store = new S3Store(s3.client(), BUCKET);
});
afterAll(async () => {
  await s3.close();
});
beforeEach(async () => {
  await store.deleteKeys(await store.listKeys(""));
});

const state = (body: string, key = STATE) => store.put(key, body, "application/json");
const SESSIONS = ["sessions"];
const publish = (hour: number, watermark: string | null = null, entity = "sessions", mode = "scheduled") =>
  store.put(
    publishedMarkerKey(CONTROL, H(hour), entity),
    JSON.stringify({ manifest: "m", generation: 1, by: "b", at: "t", mode, watermark }),
    "application/json",
  );
/** A whole-hour marker and manifest as deployments wrote them before entity-hours were published one by one. */
async function publishLegacy(
  hour: number,
  entities: string[],
  watermark: string | null = null,
): Promise<void> {
  const slice = {
    records: 1,
    parts: 1,
    segments: [{ attempt: "0000000a", firstPart: 0, parts: 1, compressed: false }],
  };
  await store.put(
    legacyManifestKey(CONTROL, H(hour)),
    JSON.stringify({
      runId: "m",
      hourUtc: H(hour),
      claimedAt: "t",
      entities: Object.fromEntries(entities.map((e) => [e, slice])),
    }),
    "application/json",
  );
  await store.put(
    legacyPublishedMarkerKey(CONTROL, H(hour)),
    JSON.stringify({ manifest: "m", by: "b", at: "t", watermark }),
    "application/json",
  );
}
const stored = async () =>
  JSON.parse((await store.getText(STATE))?.body ?? "null") as Record<string, unknown>;
const contentType = async (key: string) =>
  (await store.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).ContentType;

describe("readWatermark", () => {
  it("reads the state file with its ETag, in the seed's formats too", async () => {
    const { etag } = (await state('{"last_hour_utc":"2026-11-24T08:00:00+00:00"}')) as { etag: string };
    expect(await readWatermark(store, STATE)).toEqual({ hourUtc: H(8), etag });
    await state('{"last_hour_utc":"2026-11-24T09:00:00.000000Z"}');
    expect((await readWatermark(store, STATE)).hourUtc).toBe(H(9));
  });

  it("falls back to the seed's state file, which is never written (no ETag)", async () => {
    await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}', SEED);
    expect(await readWatermark(store, STATE, SEED)).toEqual({ hourUtc: H(7), etag: null });
    expect(await readWatermark(store, STATE)).toEqual({ hourUtc: null, etag: null });
    await state('{"last_hour_utc":"2026-11-24T08:00:00Z"}');
    expect((await readWatermark(store, STATE, SEED)).hourUtc).toBe(H(8));
  });

  it("reads the records per hour Commit stored beside it; figures that are not counts are no advice, not an error", async () => {
    const records = { sessions: 3_000, machines: 0 };
    await state(JSON.stringify({ last_hour_utc: H(8), records_per_hour: records }));
    expect(await readWatermark(store, STATE)).toMatchObject({ hourUtc: H(8), recordsPerHour: records });
    for (const bad of [
      { sessions: "3000" },
      { sessions: 3_000, users: "3000" },
      { sessions: -1 },
      [3000],
      "3000",
      null,
    ]) {
      await state(JSON.stringify({ last_hour_utc: H(8), records_per_hour: bad }));
      expect(await readWatermark(store, STATE)).not.toHaveProperty("recordsPerHour");
    }
  });

  it("is empty when neither file exists, a seed key included", async () => {
    expect(await readWatermark(store, STATE, SEED)).toEqual({ hourUtc: null, etag: null });
  });

  it.each(["{}", '{"last_hour_utc":null}', "null", "42", "[]", '"text"'])(
    "reads %s as no watermark yet",
    async (body) => {
      await state(body);
      expect((await readWatermark(store, STATE)).hourUtc).toBeNull();
    },
  );

  it.each([
    ["not json", "is not JSON"],
    ['{"last_hour_utc":"2026-11-24T08:30:00Z"}', '"2026-11-24T08:30:00Z", which is not a whole UTC hour'],
    ['{"last_hour_utc":1732435200}', "1732435200, which is not a whole UTC hour"],
  ])("refuses %s by name, saying where and why", async (body, why) => {
    await state(body, SEED);
    const error = await readWatermark(store, STATE, SEED).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toContain(`state file s3://${BUCKET}/${SEED}`);
    expect((error as Error).message).toContain(why);
  });
});

describe("publishedEntitiesAfter", () => {
  it("lists the entities published per hour, all or only after an hour, oldest first, legacy markers included", async () => {
    for (const hour of [10, 8, 12]) await publish(hour);
    await publish(8, null, "users");
    await publishLegacy(9, ["sessions", "machines"]);
    await store.put(`${CONTROL}/published/not-a-marker`, "{}", "application/json");
    const all = await publishedEntitiesAfter(store, CONTROL, null);
    expect([...all].map(([hour, entities]) => [hour, [...entities].sort()])).toEqual([
      [H(8), ["sessions", "users"]],
      [H(9), ["machines", "sessions"]],
      [H(10), ["sessions"]],
      [H(12), ["sessions"]],
    ]);
    // After 08:00 means after every entity marker of 08:00, and from the legacy marker of 09:00 on.
    expect([...(await publishedEntitiesAfter(store, CONTROL, H(8))).keys()]).toEqual([H(9), H(10), H(12)]);
    expect([...(await publishedEntitiesAfter(store, CONTROL, H(9))).keys()]).toEqual([H(10), H(12)]);
    expect([...(await publishedEntitiesAfter(store, CONTROL, H(12))).keys()]).toEqual([]);
    // A legacy marker whose manifest is gone stands for no entity.
    await store.deleteKeys([legacyManifestKey(CONTROL, H(9))]);
    expect((await publishedEntitiesAfter(store, CONTROL, H(8))).get(H(9))).toEqual(new Set());
  });
});

describe("recoverWatermark", () => {
  it("is undefined when nothing was ever published", async () => {
    expect(await recoverWatermark(store, CONTROL, SESSIONS)).toBeUndefined();
  });

  it("continues from the newest marker's watermark over the contiguous hours after it, not past a gap", async () => {
    await publish(8, H(7));
    await publish(10, H(7));
    expect(await recoverWatermark(store, CONTROL, SESSIONS)).toBe(H(8));
    await publish(9, H(7));
    expect(await recoverWatermark(store, CONTROL, SESSIONS)).toBe(H(10));
  });

  it("starts from the watermark the newest marker records, not from the oldest marker", async () => {
    await publish(5, H(4));
    await publish(8, H(7));
    await publish(10, H(7));
    expect(await recoverWatermark(store, CONTROL, SESSIONS)).toBe(H(8));
  });

  it("is undefined when only backfills before any watermark published (they record none): a first run", async () => {
    await publish(9, null, "sessions", "backfill");
    await publish(3, null, "sessions", "backfill");
    expect(await recoverWatermark(store, CONTROL, SESSIONS)).toBeUndefined();
  });

  it("passes over newer markers without a usable watermark to the newest that records one", async () => {
    await publish(8, H(7));
    await publish(9, null, "sessions", "backfill");
    await publish(11, null, "sessions", "backfill");
    expect(await recoverWatermark(store, CONTROL, SESSIONS)).toBe(H(9));
    await store.put(publishedMarkerKey(CONTROL, H(11), "sessions"), "not json", "application/json");
    expect(await recoverWatermark(store, CONTROL, SESSIONS)).toBe(H(9));
    await store.put(
      publishedMarkerKey(CONTROL, H(11), "sessions"),
      '{"watermark":"yesterday"}',
      "application/json",
    );
    expect(await recoverWatermark(store, CONTROL, SESSIONS)).toBe(H(9));
  });

  it("passes over a marker deleted between its listing and its read", async () => {
    await publish(8, H(7));
    /** Lists a newer marker that is gone by the time it is read (deleted by hand, say). */
    class VanishingMarkerStore extends S3Store {
      override async listKeys(prefix: string, startAfter?: string): Promise<string[]> {
        const keys = await super.listKeys(prefix, startAfter);
        return startAfter === undefined ? [...keys, publishedMarkerKey(CONTROL, H(12), "sessions")] : keys;
      }
    }
    expect(await recoverWatermark(new VanishingMarkerStore(store.client, BUCKET), CONTROL, SESSIONS)).toBe(
      H(8),
    );
  });

  it("counts an hour only when every configured entity is published, and reads legacy markers", async () => {
    await publishLegacy(8, ["sessions", "users"], H(7));
    await publish(9, H(8));
    expect(await recoverWatermark(store, CONTROL, ["sessions", "users"])).toBe(H(8));
    await publish(9, H(8), "users");
    expect(await recoverWatermark(store, CONTROL, ["sessions", "users"])).toBe(H(9));
  });
});

describe("firstRunHour", () => {
  it("records the first proposal create-only; later first runs start where it says", async () => {
    expect(await firstRunHour(store, CONTROL, H(7), "first-a", 0)).toBe(H(7));
    expect(await firstRunHour(store, CONTROL, H(8), "first-b", 0)).toBe(H(7));
    expect(JSON.parse((await store.getText(firstHourKey(CONTROL)))?.body ?? "")).toEqual({
      hourUtc: H(7),
      by: "first-a",
      at: "1970-01-01T00:00:00.000Z",
    });
    expect(await contentType(firstHourKey(CONTROL))).toBe("application/json");
  });

  it("reads the winner when another first run recorded it between its look and its write", async () => {
    const racing = new S3Store(store.client, BUCKET);
    const put = racing.put.bind(racing);
    racing.put = async (key, body, type, condition) => {
      await put(key, JSON.stringify({ hourUtc: H(9), by: "other", at: "t" }), type);
      return put(key, body, type, condition);
    };
    expect(await firstRunHour(racing, CONTROL, H(7), "first-a", 0)).toBe(H(9));
  });

  it("fails retryably when the record another first run won is gone before it is read", async () => {
    const racing = new S3Store(store.client, BUCKET);
    const put = racing.put.bind(racing);
    racing.put = async (key, body, type, condition) => {
      await put(key, JSON.stringify({ hourUtc: H(9), by: "other", at: "t" }), type);
      const lost = await put(key, body, type, condition);
      await racing.deleteKeys([key]);
      return lost;
    };
    const error = await firstRunHour(racing, CONTROL, H(7), "first-a", 0).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect((error as Error).message).toBe(`s3://${BUCKET}/${firstHourKey(CONTROL)} vanished as it was read`);
  });

  it.each(["not json", '{"hourUtc":"tomorrow"}', "null"])("refuses a record %s by name", async (body) => {
    await store.put(firstHourKey(CONTROL), body, "application/json");
    const error = await firstRunHour(store, CONTROL, H(7), "first-a", 0).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toBe(
      `s3://${BUCKET}/${firstHourKey(CONTROL)} records no UTC hour to start at: delete it (the next first run records its own) or fix its "hourUtc"`,
    );
  });
});

describe("advanceWatermark", () => {
  it("moves over contiguous published hours, writing the seed's field, never past a gap", async () => {
    const { etag } = (await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}')) as { etag: string };
    for (const hour of [8, 9, 11]) await publish(hour);
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag }, "run-1", SESSIONS)).toBe(H(9));
    expect(await stored()).toMatchObject({ last_hour_utc: H(9), execution: "run-1" });
    // An operator opening it in the console sees JSON.
    expect(await contentType(STATE)).toBe("application/json");
  });

  it("stores the records per hour it is given, else keeps those the state file held", async () => {
    const { etag } = (await state(
      JSON.stringify({ last_hour_utc: H(7), records_per_hour: { sessions: 10 } }),
    )) as { etag: string };
    await publish(8);
    const read = await readWatermark(store, STATE);
    expect(await advanceWatermark(store, LAYOUT, read, "plan-1", SESSIONS)).toBe(H(8));
    expect(await stored()).toMatchObject({ last_hour_utc: H(8), records_per_hour: { sessions: 10 } });
    await publish(9);
    // Commit's own figures win; so do they when its write is lost to another execution's and tried again.
    expect(
      await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag }, "commit-1", SESSIONS, { sessions: 20 }),
    ).toBe(H(9));
    expect(await stored()).toMatchObject({ last_hour_utc: H(9), records_per_hour: { sessions: 20 } });
  });

  it("leaves a stored watermark alone when nothing after it is published", async () => {
    const { etag } = (await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}')) as { etag: string };
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag }, "run-1", SESSIONS)).toBe(H(7));
    expect((await store.getText(STATE))?.etag).toBe(etag);
  });

  it("stores a watermark known but not stored yet (a first run's start, a recovered one), create-only", async () => {
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag: null }, "run-1", SESSIONS)).toBe(
      H(7),
    );
    expect(await stored()).toMatchObject({ last_hour_utc: H(7) });
  });

  it("never creates one from nothing", async () => {
    await publish(8);
    expect(
      await advanceWatermark(store, LAYOUT, { hourUtc: null, etag: null }, "backfill-1", SESSIONS),
    ).toBeNull();
    expect(await store.getText(STATE)).toBeUndefined();
  });

  it("re-reads after losing a write and never moves it backwards", async () => {
    await state('{"last_hour_utc":"2026-11-24T10:00:00Z"}');
    await publish(8);
    // Planned from 07:00 without a state file; another execution has since stored 10:00.
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag: null }, "late-1", SESSIONS)).toBe(
      H(10),
    );
    expect(await stored()).toMatchObject({ last_hour_utc: H(10) });
  });

  it("moves only over hours every given entity is published for: a removed entity is not asked for", async () => {
    const { etag } = (await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}')) as { etag: string };
    await publish(8, null, "sessions");
    await publish(8, null, "users");
    await publish(9, null, "sessions");
    const both = ["sessions", "users"];
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag }, "run-1", both)).toBe(H(8));
    const moved = await readWatermark(store, STATE);
    // users removed from ENTITIES: 09:00 no longer waits for it.
    expect(await advanceWatermark(store, LAYOUT, moved, "run-2", SESSIONS)).toBe(H(9));
  });
});

describe("planRun", () => {
  // 11:20 with a 60-minute lookback: 10:00 is the newest eligible hour.
  const NOW = Date.parse("2026-11-24T11:20:00Z");
  let logs: Record<string, unknown>[] = [];
  const plan = (
    request: unknown = {},
    statuses: Record<string, ExecutionStatus> = {},
    config: Partial<PlanDeps["config"]> = {},
    planStore: S3Store = store,
  ) => {
    logs = [];
    const deps: PlanDeps = {
      store: planStore,
      config: {
        stateKey: STATE,
        seedStateKey: undefined,
        controlPrefix: CONTROL,
        entities: SESSIONS,
        lookbackMinutes: 60,
        maxHoursPerRun: 24,
        firstHourUtc: undefined,
        mapMaxConcurrency: 4,
        pageSize: 1000,
        ...config,
      },
      log: createLogger({}, (line) => {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }),
      now: () => NOW,
      executionStatus: async (name) => statuses[name] ?? "ended",
    };
    return planRun(deps, { executionName: "run-1", request });
  };
  const lease = (runId: string, hours: number[]) =>
    store.put(
      leaseKey(CONTROL, runId),
      JSON.stringify({ runId, hours: hours.map(H), plannedAt: "t" }),
      "application/json",
    );
  const logged = (message: string) => logs.filter((line) => line.message === message);

  it("leaves a running execution its hours, takes over an ended one's, and removes only the ended lease", async () => {
    await state('{"last_hour_utc":"2026-11-24T06:00:00Z"}');
    await lease("running-1", [7]);
    await lease("ended-1", [8]);
    await lease("unknown-1", [9]);
    await store.put(leaseKey(CONTROL, "broken-1"), "not json", "application/json");
    await lease("run-1", [7, 8, 9, 10]); // its own, from an earlier attempt: never a holder

    const output = await plan({}, { "running-1": "running", "unknown-1": "unknown" });

    expect(output).toMatchObject({
      runId: "run-1",
      mode: "scheduled",
      hours: [H(8), H(9), H(10)],
      entities: SESSIONS,
      deferred: { "running-1": [H(7)] },
      maxConcurrency: 1,
      lagHours: 4,
    });
    expect(entityHoursOf(output.items)).toEqual(
      [H(8), H(9), H(10)].map((hourUtc) => ({ entity: "sessions", hourUtc })),
    );
    expect(JSON.parse((await store.getText(leaseKey(CONTROL, "run-1")))?.body ?? "")).toEqual({
      runId: "run-1",
      hours: [H(8), H(9), H(10)],
      plannedAt: new Date(NOW).toISOString(),
    });
    expect(await contentType(leaseKey(CONTROL, "run-1"))).toBe("application/json");
    expect((await store.listKeys(`${CONTROL}/leases/`)).sort()).toEqual(
      ["broken-1", "run-1", "running-1", "unknown-1"].map((runId) => leaseKey(CONTROL, runId)),
    );
    expect(logged("could not tell whether another execution still runs; collecting its hours too")).toEqual([
      expect.objectContaining({ level: "WARN", holder: "unknown-1" }),
    ]);
    expect(logged("the Citrix API's limit is not known yet; one iteration at a time")).toHaveLength(1);
    expect(logged("planned collection")).toEqual([
      expect.objectContaining({
        mode: "scheduled",
        watermark: H(6),
        firstHour: H(8),
        lastHour: H(10),
        entityHours: 3,
        runs: 1,
        deferredHours: 1,
        lagHours: 4,
      }),
    ]);
  });

  it("writes no lease when nothing is left to collect, and leaves out hours already published", async () => {
    await state('{"last_hour_utc":"2026-11-24T08:00:00Z"}');
    await publish(10);
    await lease("running-1", [9]);
    const output = await plan({}, { "running-1": "running" });
    expect(output).toMatchObject({ hours: [], items: [], deferred: { "running-1": [H(9)] } });
    expect(await store.getText(leaseKey(CONTROL, "run-1"))).toBeUndefined();
    expect(logged("planned collection")).toEqual([
      expect.objectContaining({ firstHour: null, lastHour: null, entityHours: 0, runs: 0, deferredHours: 1 }),
    ]);
  });

  it("moves the stored watermark over hours published since, and hands Commit its new ETag", async () => {
    await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}');
    await publish(8);
    const output = await plan();
    const stored = await store.getText(STATE);
    expect(output.watermark).toEqual({ hourUtc: H(8), etag: stored?.etag });
    expect(output.hours).toEqual([H(9), H(10)]);
  });

  it("plans a backfill from the watermark as read: no lease read or written, nothing moved", async () => {
    const { etag } = (await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}')) as { etag: string };
    await publish(8);
    await lease("running-1", [8]);
    const output = await plan({ backfill: { from: H(8), to: H(9) } }, { "running-1": "running" });
    expect(output).toMatchObject({
      mode: "backfill",
      hours: [H(8), H(9)],
      deferred: {},
      watermark: { hourUtc: H(7), etag },
    });
    expect(await store.listKeys(`${CONTROL}/leases/`)).toEqual([leaseKey(CONTROL, "running-1")]);
    expect((await stored()).last_hour_utc).toBe(H(7));
  });

  it("collects only entity-hours not yet published: a backfill's (legacy markers too) and a scheduled run's", async () => {
    const both = { entities: ["sessions", "users"] };
    await state('{"last_hour_utc":"2026-11-24T08:00:00Z"}');
    await publish(5, null, "users");
    await publishLegacy(6, ["sessions"]);
    await publish(7, null, "sessions");
    await publish(7, null, "users");
    await publish(10, null, "users");
    const item = (entity: string, hour: number) => ({ entity, hourUtc: H(hour) });

    const backfill = await plan({ backfill: { from: H(5), to: H(7) } }, {}, both);
    expect(backfill.hours).toEqual([H(5), H(6), H(7)]);
    expect(entityHoursOf(backfill.items)).toEqual([item("sessions", 5), item("users", 6)]);
    expect(logged("planned collection")).toEqual([
      expect.objectContaining({ entityHours: 2, alreadyPublished: 4 }),
    ]);

    const scheduled = await plan({}, {}, both);
    expect(scheduled.hours).toEqual([H(9), H(10)]);
    expect(entityHoursOf(scheduled.items)).toEqual([
      item("sessions", 9),
      item("users", 9),
      item("sessions", 10),
    ]);
  });

  it("starts a first run at FIRST_HOUR_UTC, or at the newest eligible hour, and records where", async () => {
    const first = await plan({}, {}, { firstHourUtc: H(8) });
    expect(first.hours).toEqual([H(8), H(9), H(10)]);
    expect(first.watermark).toEqual({ hourUtc: H(7), etag: null });
    expect(await store.getText(STATE)).toBeUndefined();
    await store.deleteKeys(await store.listKeys(""));
    const unset = await plan();
    expect(unset.hours).toEqual([H(10)]);
    // One iteration is one at a time whatever the API allows: nothing to say about its limit.
    expect(logged("the Citrix API's limit is not known yet; one iteration at a time")).toEqual([]);
    expect(JSON.parse((await store.getText(firstHourKey(CONTROL)))?.body ?? "")).toMatchObject({
      hourUtc: H(10),
      by: "run-1",
    });
  });

  it("recovers a lost state file from the markers, says so, and stores it again", async () => {
    await publish(8, H(7));
    await publish(9, H(8));
    const output = await plan();
    expect(output.watermark).toEqual({ hourUtc: H(9), etag: (await store.getText(STATE))?.etag });
    expect(output.hours).toEqual([H(10)]);
    expect(logged("no state file, but hours were published: continuing after the published hours")).toEqual([
      expect.objectContaining({ level: "WARN", stateKey: STATE, recovered: H(9) }),
    ]);
  });

  it("takes an unreadable page window hint for none, and says why", async () => {
    await state('{"last_hour_utc":"2026-11-24T08:00:00Z"}');
    /** S3 fails the hint's read (not its absence): the plan goes on without it. */
    class HintFailingStore extends S3Store {
      override async getText(key: string) {
        if (key === pageWindowHintKey(CONTROL)) throw new StorageUnavailableError("GetObject: SlowDown");
        return super.getText(key);
      }
    }
    const output = await plan({}, {}, {}, new HintFailingStore(store.client, BUCKET));
    expect(output.maxConcurrency).toBe(1);
    expect(logged("could not read the shared page window")).toEqual([
      expect.objectContaining({ level: "WARN", reason: expect.stringContaining("GetObject: SlowDown") }),
    ]);
  });

  it("plans from the watermark it caught up to when the state file it stored is deleted at once", async () => {
    await publish(8, H(7));
    /** Someone deletes the state file right after Plan stores it. */
    class StateDeletingStore extends S3Store {
      override async put(...args: Parameters<S3Store["put"]>): ReturnType<S3Store["put"]> {
        const result = await super.put(...args);
        if (args[0] === STATE) await this.deleteKeys([STATE]);
        return result;
      }
    }
    const output = await plan({}, {}, {}, new StateDeletingStore(store.client, BUCKET));
    expect(output.watermark).toEqual({ hourUtc: H(8), etag: null });
    expect(output.hours).toEqual([H(9), H(10)]);
  });

  it("runs as many iterations as the entity-hours when the API's limit allows more, and says nothing of it", async () => {
    await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}');
    await store.put(pageWindowHintKey(CONTROL), pageWindowHint(NOW, { limit: 9 }), "application/json");
    const output = await plan();
    expect([output.items.length, output.maxConcurrency]).toEqual([3, 3]);
    expect(logged("fewer iterations at once: the Citrix API allows no more")).toEqual([]);
    await store.put(pageWindowHintKey(CONTROL), pageWindowHint(NOW, { limit: 2 }), "application/json");
    expect((await plan()).maxConcurrency).toBe(2);
    expect(logged("fewer iterations at once: the Citrix API allows no more")).toEqual([
      expect.objectContaining({ limit: 2, iterations: 2 }),
    ]);
  });

  it("balances the runs by the records per hour stored beside the watermark, each entity's hours spread", async () => {
    const entities = ["sessions", "machines", "users"];
    const runs = async (records: Record<string, number> | undefined) => {
      await store.deleteKeys(await store.listKeys(""));
      await state(JSON.stringify({ last_hour_utc: H(7), records_per_hour: records }));
      await store.put(pageWindowHintKey(CONTROL), pageWindowHint(NOW, { limit: 2 }), "application/json");
      const output = await plan({}, {}, { entities });
      return output.items.map((run) =>
        [run, ...run.rest].map(({ entity, hourUtc }) => `${entity.slice(0, 1)}${hourUtc.slice(11, 13)}`),
      );
    };
    // Hours 08–10, 2 runs. With sessions at 4 requests an hour (3,000 records at TOP_N 1,000) and the others at
    // 1, each run costs 9; without figures on record, every entity-hour counts as 1, and the runs cost 11 and 7.
    expect(await runs({ sessions: 3_000, machines: 300, users: 300 })).toEqual([
      ["s08", "u09", "s10"],
      ["m08", "u08", "s09", "m09", "m10", "u10"],
    ]);
    expect(await runs(undefined)).toEqual([
      ["s08", "u08", "m09", "s10", "u10"],
      ["m08", "s09", "u09", "m10"],
    ]);
  });

  it("passes over a lease deleted between its listing and its read (its execution finished)", async () => {
    await state('{"last_hour_utc":"2026-11-24T08:00:00Z"}');
    /** Lists the lease of an execution that deletes it before Plan reads it. */
    class VanishingLeaseStore extends S3Store {
      override async listKeys(prefix: string, startAfter?: string): Promise<string[]> {
        const keys = await super.listKeys(prefix, startAfter);
        return prefix === `${CONTROL}/leases/` ? [...keys, leaseKey(CONTROL, "finished-1")] : keys;
      }
    }
    const output = await plan({}, {}, {}, new VanishingLeaseStore(store.client, BUCKET));
    expect(output.hours).toEqual([H(9), H(10)]);
  });

  it("refuses a backfill request that is not one, naming the state and the field", async () => {
    const error = await plan({ backfill: { from: H(8) } }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toMatch(
      /^PlanHours \(backfill request\) received invalid input: backfill\.to /,
    );
  });
});
