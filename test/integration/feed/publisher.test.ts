import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../functions/lib/aws/log";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import type { CommitInput } from "../../../functions/lib/config/contracts";
import { InvalidInputError, StagingLostError } from "../../../functions/lib/config/errors";
import {
  collectedResultKey,
  feedPartKey,
  leaseKey,
  legacyManifestKey,
  legacyPublishedMarkerKey,
  manifestHourPrefix,
  manifestKey,
  manifestOfKey,
  publishedHourPrefix,
  publishedMarkerKey,
  stagingPartKey,
} from "../../../functions/lib/feed/keys";
import { publishRun } from "../../../functions/lib/feed/publisher";
import { type LocalS3, startLocalS3 } from "../../../stand-ins/s3-server";
import { InstrumentedStore } from "../../support/instrumented-store";

// publishRun against the local S3 server, without the engine: staging, results and manifests are laid out
// by hand, so each branch of Commit is reached on purpose.
const BUCKET = "publisher-test";
const FEED = "feed";
const CONTROL = "_control";
// No configured entity beyond those each test plans, unless the test says so.
const CONFIG = {
  feedPrefix: FEED,
  controlPrefix: CONTROL,
  stateKey: `${CONTROL}/state.json`,
  entities: [] as string[],
};
const H8 = "2026-11-24T08:00:00Z";
const H9 = "2026-11-24T09:00:00Z";
const SEGMENT = { attempt: "0000000a", firstPart: 0, parts: 2, compressed: false };

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
  logs = [];
  await store.deleteKeys(await store.listKeys(""));
});

let logs: Record<string, unknown>[] = [];
const deps = () => ({
  store,
  config: CONFIG,
  log: createLogger({ execution: "test" }, (line) => {
    logs.push(JSON.parse(line) as Record<string, unknown>);
  }),
});
const input = (runId: string, hours: string[], entities = ["sessions"]): CommitInput => ({
  runId,
  mode: "scheduled",
  hours,
  entities,
  watermark: { hourUtc: "2026-11-24T07:00:00Z", etag: null },
});

/** Staging parts and the collected result of one entity-hour, as the collect function leaves them. */
async function collected(
  runId: string,
  entity: string,
  hourUtc: string,
  segments = [SEGMENT],
  records = 10,
): Promise<void> {
  for (const segment of segments)
    for (let part = segment.firstPart; part < segment.firstPart + segment.parts; part++) {
      const key = stagingPartKey(CONTROL, runId, entity, hourUtc, segment.attempt, part, segment.compressed);
      await store.put(key, `{"run":"${runId}","part":${part}}\n`, "application/x-ndjson");
    }
  const parts = segments.reduce((sum, segment) => sum + segment.parts, 0);
  const result = { entity, hourUtc, records, parts, segments };
  await store.put(
    collectedResultKey(CONTROL, runId, entity, hourUtc),
    JSON.stringify(result),
    "application/json",
  );
}

/** A generation's manifest of `runId` naming SEGMENT's two parts, as another execution's claim left it. */
function entityManifest(runId: string, hourUtc: string, entity = "sessions", generation = 1): string {
  return JSON.stringify({
    runId,
    hourUtc,
    entity,
    generation,
    claimedAt: "t",
    records: 10,
    parts: 2,
    segments: [SEGMENT],
  });
}

/** The per-hour manifest deployments wrote before entity-hours were published one by one. */
function legacyManifest(runId: string, hourUtc: string, entities: string[]): string {
  return JSON.stringify({
    runId,
    hourUtc,
    claimedAt: "t",
    entities: Object.fromEntries(
      entities.map((entity) => [entity, { records: 10, parts: 2, segments: [SEGMENT] }]),
    ),
  });
}

/**
 * Before each of this execution's claims, another execution claims the same generation first (its staging
 * gone), and, with `thenDelete`, the winner's manifest is deleted again before this execution reads it.
 */
function outclaimedStore(thenDelete = false): S3Store {
  const racing = new S3Store(store.client, BUCKET);
  const put = racing.put.bind(racing);
  racing.put = async (key, body, type, condition) => {
    const claimed = manifestOfKey(manifestHourPrefix(CONTROL, H8), key);
    if (claimed === undefined) return put(key, body, type, condition);
    const { entity, generation } = claimed;
    await put(key, entityManifest(`racer-${generation}`, H8, entity, generation), type);
    const lost = await put(key, body, type, condition);
    if (thenDelete) await racing.deleteKeys([key]);
    return lost;
  };
  return racing;
}

const contentType = async (key: string) =>
  (await store.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).ContentType;
const text = async (key: string) => (await store.getText(key))?.body;
const json = async (key: string) => JSON.parse((await text(key)) ?? "null") as Record<string, unknown>;

describe("publishRun", () => {
  it("publishes an hour: manifest, every part to its feed key, marker, watermark; clears staging and lease", async () => {
    const second = { attempt: "0000000b", firstPart: 2, parts: 1, compressed: true };
    await collected("run-1", "users", H8, [SEGMENT, second], 30);
    await collected("run-1", "machines", H8, [SEGMENT], 20);
    await store.put(leaseKey(CONTROL, "run-1"), "{}", "application/json");

    const output = await publishRun(deps(), input("run-1", [H8], ["users", "machines"]));

    expect(output).toEqual({
      runId: "run-1",
      mode: "scheduled",
      status: "committed",
      hours: [
        {
          hourUtc: H8,
          outcome: "published",
          publisher: "run-1",
          records: {
            machines: { collected: 20, published: 20, outcome: "published", publisher: "run-1" },
            users: { collected: 30, published: 30, outcome: "published", publisher: "run-1" },
          },
        },
      ],
      watermark: { before: "2026-11-24T07:00:00Z", after: H8 },
    });
    expect((await store.listKeys(`${FEED}/`)).sort()).toEqual(
      [
        feedPartKey(FEED, "machines", H8, 0),
        feedPartKey(FEED, "machines", H8, 1),
        feedPartKey(FEED, "users", H8, 0),
        feedPartKey(FEED, "users", H8, 1),
        feedPartKey(FEED, "users", H8, 2, true),
      ].sort(),
    );
    expect(await text(feedPartKey(FEED, "users", H8, 2, true))).toBe('{"run":"run-1","part":2}\n');
    // One manifest and one marker per entity-hour.
    expect(await json(manifestKey(CONTROL, H8, "users"))).toMatchObject({
      runId: "run-1",
      hourUtc: H8,
      entity: "users",
      generation: 1,
      records: 30,
      parts: 3,
      segments: [SEGMENT, second],
    });
    expect(await json(manifestKey(CONTROL, H8, "machines"))).toMatchObject({
      entity: "machines",
      records: 20,
    });
    for (const entity of ["users", "machines"])
      expect(await json(publishedMarkerKey(CONTROL, H8, entity))).toMatchObject({
        manifest: "run-1",
        generation: 1,
        by: "run-1",
        mode: "scheduled",
        watermark: "2026-11-24T07:00:00Z",
      });
    // Beside the watermark: what the hour held, for the next Plan to balance its runs by.
    expect(await json(CONFIG.stateKey)).toMatchObject({
      last_hour_utc: H8,
      execution: "run-1",
      records_per_hour: { machines: 20, users: 30 },
    });
    // Per-entity counts in entity order, whatever order the results were read in.
    expect(Object.keys(output.hours[0]?.records ?? {})).toEqual(["machines", "users"]);
    const published = logs.filter((line) => line.message === "hour published");
    expect(published).toEqual([
      expect.objectContaining({ hour: H8, outcome: "published", publisher: "run-1", execution: "test" }),
    ]);
    expect(
      logs.filter((line) => line.message === "finishing an entity-hour another execution claimed"),
    ).toEqual([]);
    for (const key of [manifestKey(CONTROL, H8, "users"), publishedMarkerKey(CONTROL, H8, "users")])
      expect(await contentType(key), key).toBe("application/json");
    expect(logs.find((line) => line.message === "watermark checked")).toMatchObject({
      from: "2026-11-24T07:00:00Z",
      to: H8,
    });
    expect(await store.listKeys(`${CONTROL}/staging/`)).toEqual([]);
    expect(await store.listKeys(`${CONTROL}/leases/`)).toEqual([]);
  });

  it("leaves a published hour as it is and reports who published it and what each run counted", async () => {
    await collected("old-1", "sessions", H8);
    await publishRun(deps(), input("old-1", [H8]));
    await collected("new-1", "sessions", H8, [SEGMENT], 12);
    const feed = await store.listKeys(`${FEED}/`);

    const output = await publishRun(deps(), input("new-1", [H8]));

    expect(output.hours).toEqual([
      {
        hourUtc: H8,
        outcome: "already-published",
        publisher: "old-1",
        records: {
          sessions: { collected: 12, published: 10, outcome: "already-published", publisher: "old-1" },
        },
      },
    ]);
    expect(await store.listKeys(`${FEED}/`)).toEqual(feed);
    expect(await text(feedPartKey(FEED, "sessions", H8, 0))).toBe('{"run":"old-1","part":0}\n');
  });

  it("after its own staging is gone (a redrive), reports published hours with nothing collected", async () => {
    await collected("run-1", "sessions", H8);
    await publishRun(deps(), input("run-1", [H8]));
    const again = await publishRun(deps(), input("run-1", [H8]));
    expect(again.hours[0]).toMatchObject({
      outcome: "already-published",
      publisher: "run-1",
      records: { sessions: { published: 10, outcome: "already-published" } },
    });
  });

  it("finishes another execution's claim from that execution's staging, and says so", async () => {
    await collected("dead-1", "sessions", H8);
    await store.put(manifestKey(CONTROL, H8, "sessions"), entityManifest("dead-1", H8), "application/json");
    // dead-1 got its first part copied before it died.
    await store.copyIfAbsent(
      stagingPartKey(CONTROL, "dead-1", "sessions", H8, SEGMENT.attempt, 0),
      feedPartKey(FEED, "sessions", H8, 0),
    );
    await collected("next-1", "sessions", H8, [{ ...SEGMENT, attempt: "0000000c", parts: 3 }], 15);

    const output = await publishRun(deps(), input("next-1", [H8]));

    expect(output.hours[0]).toEqual({
      hourUtc: H8,
      outcome: "completed-for-another",
      publisher: "dead-1",
      records: {
        sessions: { collected: 15, published: 10, outcome: "completed-for-another", publisher: "dead-1" },
      },
    });
    expect(await store.listKeys(`${FEED}/`)).toEqual([
      feedPartKey(FEED, "sessions", H8, 0),
      feedPartKey(FEED, "sessions", H8, 1),
    ]);
    expect(await text(feedPartKey(FEED, "sessions", H8, 1))).toBe('{"run":"dead-1","part":1}\n');
    expect(await json(publishedMarkerKey(CONTROL, H8, "sessions"))).toMatchObject({
      manifest: "dead-1",
      by: "next-1",
    });
    expect(
      logs.filter((line) => line.message === "finishing an entity-hour another execution claimed"),
    ).toEqual([expect.objectContaining({ hour: H8, entity: "sessions", publisher: "dead-1" })]);
    // Its own staging is cleared; the other's is left to its owner (or the lifecycle rule).
    expect(await store.listKeys(`${CONTROL}/staging/next-1/`)).toEqual([]);
    expect(await store.listKeys(`${CONTROL}/staging/dead-1/`)).not.toEqual([]);
  });

  it("refuses to claim an hour without a result for every planned entity, naming the missing ones", async () => {
    await collected("run-1", "sessions", H8);
    const error = await publishRun(deps(), input("run-1", [H8], ["sessions", "users", "machines"])).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toBe(
      `PublishAndAdvance found no collected result of execution run-1 for users, machines at ${H8}; the Map must collect every planned entity-hour first`,
    );
    expect(await store.listKeys(`${CONTROL}/manifests/`)).toEqual([]);
  });

  it("names a part of its own claim whose staging is gone, and every object to delete, before the marker", async () => {
    await collected("run-1", "sessions", H8);
    await store.deleteKeys([stagingPartKey(CONTROL, "run-1", "sessions", H8, SEGMENT.attempt, 1)]);
    const error = await publishRun(deps(), input("run-1", [H8])).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StagingLostError);
    const message = (error as Error).message;
    expect(message).toContain(
      `sessions ${H8} (manifest s3://${BUCKET}/${manifestKey(CONTROL, H8, "sessions")} of execution run-1) cannot be finished`,
    );
    expect(message).toContain(
      `1 staging part(s) are gone, e.g. s3://${BUCKET}/${stagingPartKey(CONTROL, "run-1", "sessions", H8, SEGMENT.attempt, 1)}`,
    );
    // Part 0 was copied; it and its source are what to delete for a new generation to be safe.
    expect(message).toContain(`aws s3 rm s3://${BUCKET}/${feedPartKey(FEED, "sessions", H8, 0)} ;`);
    expect(message).toContain(
      `aws s3 rm s3://${BUCKET}/${stagingPartKey(CONTROL, "run-1", "sessions", H8, SEGMENT.attempt, 0)}.`,
    );
    expect(await store.getText(publishedMarkerKey(CONTROL, H8, "sessions"))).toBeUndefined();
  });

  it("takes a source S3 calls missing as done when its feed object exists (the copy landed before)", async () => {
    await collected("run-1", "sessions", H8);
    const answering = new InstrumentedStore(store, FEED);
    const copy = answering.copyIfAbsent.bind(answering);
    // S3 may check the source before the destination's precondition: the copy landed, then it says NoSuchKey.
    answering.copyIfAbsent = async (source, destination) => {
      await copy(source, destination);
      return "no-source";
    };
    const output = await publishRun({ ...deps(), store: answering }, input("run-1", [H8]));
    expect(output.hours[0]?.outcome).toBe("published");
    expect(await store.getText(publishedMarkerKey(CONTROL, H8, "sessions"))).toBeDefined();
  });

  it("takes a missing source whose feed object exists as done", async () => {
    await collected("run-1", "sessions", H8);
    // The part was copied before its staging went.
    await store.copyIfAbsent(
      stagingPartKey(CONTROL, "run-1", "sessions", H8, SEGMENT.attempt, 1),
      feedPartKey(FEED, "sessions", H8, 1),
    );
    await store.deleteKeys([stagingPartKey(CONTROL, "run-1", "sessions", H8, SEGMENT.attempt, 1)]);
    const output = await publishRun(deps(), input("run-1", [H8]));
    expect(output.hours[0]?.outcome).toBe("published");
    expect(await store.listKeys(`${FEED}/sessions/year=2026/month=11/day=24/hour=08/`)).toHaveLength(2);
  });

  it("takes a missing source as done when the hour's owner published it and cleared its staging meanwhile", async () => {
    await collected("owner-1", "sessions", H8);
    await store.put(manifestKey(CONTROL, H8, "sessions"), entityManifest("owner-1", H8), "application/json");
    await collected("helper-1", "sessions", H8);
    const racing = new InstrumentedStore(store, FEED);
    const copy = racing.copyIfAbsent.bind(racing);
    let ownerDone: Promise<unknown> | undefined;
    // Just before the helper's copies, the owner finishes: every part copied, marker, staging cleared.
    racing.copyIfAbsent = async (source, destination) => {
      ownerDone ??= publishRun(deps(), input("owner-1", [H8]));
      await ownerDone;
      return copy(source, destination);
    };
    const output = await publishRun({ ...deps(), store: racing }, input("helper-1", [H8]));
    expect(output.hours[0]).toMatchObject({ outcome: "completed-for-another", publisher: "owner-1" });
    expect(racing.feedWrites).toEqual([]);
    expect(await store.listKeys(`${FEED}/`)).toHaveLength(2);
  });

  it.each([
    ["a manifest that is not JSON", "not json"],
    ["a manifest without segments", entityManifest("x", H8).replace(/"segments":.*}$/, '"segments":null}')],
    ["a manifest without a run id", entityManifest("x", H8).replace('"runId":"x",', "")],
    [
      "a manifest with a bad segment",
      entityManifest("x", H8).replace('"attempt":"0000000a"', '"attempt":"z"'),
    ],
    ["a manifest without a generation", entityManifest("x", H8).replace('"generation":1,', "")],
  ])("refuses %s by name", async (_what, body) => {
    await collected("run-1", "sessions", H8);
    await store.put(manifestKey(CONTROL, H8, "sessions"), body, "application/json");
    const error = await publishRun(deps(), input("run-1", [H8])).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toBe(
      `manifest s3://${BUCKET}/${manifestKey(CONTROL, H8, "sessions")} is not a manifest; inspect it before redriving`,
    );
  });

  it("refuses a legacy hour manifest that is not one by name", async () => {
    await collected("run-1", "sessions", H8);
    await store.put(
      legacyManifestKey(CONTROL, H8),
      '{"runId":"x","hourUtc":"h","entities":null}',
      "application/json",
    );
    const error = await publishRun(deps(), input("run-1", [H8])).catch((caught: unknown) => caught);
    expect((error as Error).message).toBe(
      `manifest s3://${BUCKET}/${legacyManifestKey(CONTROL, H8)} is not a manifest; inspect it before redriving`,
    );
  });

  it("refuses a result object that is not a collected result, and a manifest that vanished", async () => {
    await store.put(
      collectedResultKey(CONTROL, "run-1", "sessions", H8),
      '{"entity":"sessions"}',
      "application/json",
    );
    const bad = await publishRun(deps(), input("run-1", [H8])).catch((caught: unknown) => caught);
    expect((bad as Error).message).toBe(
      `s3://${BUCKET}/${collectedResultKey(CONTROL, "run-1", "sessions", H8)} is not a collected result; inspect it before redriving`,
    );
    await store.put(publishedMarkerKey(CONTROL, H9, "sessions"), "{}", "application/json");
    const vanished = await publishRun(deps(), input("run-1", [H9])).catch((caught: unknown) => caught);
    expect((vanished as Error).message).toBe(
      `manifest s3://${BUCKET}/${manifestKey(CONTROL, H9, "sessions")} vanished while this execution read it`,
    );
  });

  it("publishes several hours, in any order given, and moves the watermark over all of them", async () => {
    for (const hourUtc of [H8, H9]) await collected("run-1", "sessions", hourUtc);
    const output = await publishRun(deps(), input("run-1", [H9, H8]));
    expect(output.hours.map((hour) => [hour.hourUtc, hour.outcome])).toEqual([
      [H8, "published"],
      [H9, "published"],
    ]);
    expect(output.watermark.after).toBe(H9);
  });

  it("moves the watermark only over hours published for every configured entity, planned or not", async () => {
    // Planned before `users` was configured, committed (a redrive) after: H8 lacks users, so it is not passed.
    for (const hourUtc of [H8, H9]) await collected("run-1", "sessions", hourUtc);
    const added = { ...deps(), config: { ...CONFIG, entities: ["sessions", "users"] } };
    const output = await publishRun(added, input("run-1", [H8, H9]));
    expect(output.hours.map((hour) => hour.outcome)).toEqual(["published", "published"]);
    expect(output.watermark).toEqual({ before: "2026-11-24T07:00:00Z", after: "2026-11-24T07:00:00Z" });

    // The next execution collects users for both hours; now the watermark passes them.
    for (const hourUtc of [H8, H9]) await collected("run-2", "users", hourUtc);
    const next = await publishRun(added, input("run-2", [H8, H9], ["users"]));
    expect(next.watermark.after).toBe(H9);
  });

  it("counts a legacy hour marker for the entities its manifest lists, and publishes an entity added since", async () => {
    await collected("old-1", "sessions", H8);
    await store.copyIfAbsent(
      stagingPartKey(CONTROL, "old-1", "sessions", H8, SEGMENT.attempt, 0),
      feedPartKey(FEED, "sessions", H8, 0),
    );
    await store.put(
      legacyManifestKey(CONTROL, H8),
      legacyManifest("old-1", H8, ["sessions"]),
      "application/json",
    );
    await store.put(legacyPublishedMarkerKey(CONTROL, H8), "{}", "application/json");
    await collected("backfill-1", "sessions", H8);
    await collected("backfill-1", "users", H8);
    const writes = new InstrumentedStore(store, FEED);

    const output = await publishRun(
      { ...deps(), store: writes },
      input("backfill-1", [H8], ["sessions", "users"]),
    );

    expect(output.hours[0]?.records).toEqual({
      sessions: { collected: 10, published: 10, outcome: "already-published", publisher: "old-1" },
      users: { collected: 10, published: 10, outcome: "published", publisher: "backfill-1" },
    });
    expect(output.hours[0]).toMatchObject({ outcome: "published", publisher: "backfill-1" });
    expect(writes.feedWrites.sort()).toEqual([
      feedPartKey(FEED, "users", H8, 0),
      feedPartKey(FEED, "users", H8, 1),
    ]);
    expect(output.watermark.after).toBe(H8);
  });

  it("finishes a legacy hour manifest claimed before the upgrade from the parts it names", async () => {
    await collected("old-1", "sessions", H8);
    // An object beside the hour's markers that is not one (a note someone left) stands for no entity.
    await store.put(`${publishedHourPrefix(CONTROL, H8)}/notes.txt`, "n", "text/plain");
    await store.put(
      legacyManifestKey(CONTROL, H8),
      legacyManifest("old-1", H8, ["sessions"]),
      "application/json",
    );
    await collected("new-1", "sessions", H8, [{ ...SEGMENT, attempt: "0000000c", parts: 1 }], 5);

    const output = await publishRun(deps(), input("new-1", [H8]));

    expect(output.hours[0]).toMatchObject({ outcome: "completed-for-another", publisher: "old-1" });
    expect(await text(feedPartKey(FEED, "sessions", H8, 1))).toBe('{"run":"old-1","part":1}\n');
    expect(await store.listKeys(`${CONTROL}/manifests/`)).toEqual([legacyManifestKey(CONTROL, H8)]);
    expect(await json(publishedMarkerKey(CONTROL, H8, "sessions"))).toMatchObject({
      manifest: "old-1",
      generation: 1,
    });
  });

  it("supersedes a claim whose staging is all gone and none of whose parts reached the feed, by generation 2", async () => {
    await store.put(manifestKey(CONTROL, H8, "sessions"), entityManifest("dead-1", H8), "application/json");
    await collected("next-1", "sessions", H8, [{ ...SEGMENT, attempt: "0000000c", parts: 3 }], 15);

    const output = await publishRun(deps(), input("next-1", [H8]));

    expect(output.hours[0]?.records.sessions).toEqual({
      collected: 15,
      published: 15,
      outcome: "published",
      publisher: "next-1",
    });
    expect(await json(manifestKey(CONTROL, H8, "sessions", 2))).toMatchObject({
      runId: "next-1",
      generation: 2,
    });
    expect(await json(publishedMarkerKey(CONTROL, H8, "sessions"))).toMatchObject({
      manifest: "next-1",
      generation: 2,
    });
    expect(await store.listKeys(`${FEED}/`)).toHaveLength(3);
    expect(await text(feedPartKey(FEED, "sessions", H8, 0))).toBe('{"run":"next-1","part":0}\n');
    expect(
      logs.filter(
        (line) =>
          line.message ===
          "superseding a manifest whose staging is gone and none of whose parts reached the feed",
      ),
    ).toEqual([
      expect.objectContaining({
        level: "WARN",
        hour: H8,
        entity: "sessions",
        publisher: "dead-1",
        generation: 1,
      }),
    ]);
    // A later run reads generation 2 as current: published, nothing written.
    await collected("later-1", "sessions", H8);
    const later = await publishRun(deps(), input("later-1", [H8]));
    expect(later.hours[0]).toMatchObject({ outcome: "already-published", publisher: "next-1" });
  });

  it("adopts a generation another execution claimed first, and follows generations upwards", async () => {
    await store.put(manifestKey(CONTROL, H8, "sessions"), entityManifest("dead-1", H8), "application/json");
    await store.put(
      manifestKey(CONTROL, H8, "sessions", 2),
      entityManifest("dead-2", H8, "sessions", 2),
      "application/json",
    );
    await collected("dead-3", "sessions", H8);
    await store.put(
      manifestKey(CONTROL, H8, "sessions", 3),
      entityManifest("dead-3", H8, "sessions", 3),
      "application/json",
    );
    await collected("next-1", "sessions", H8, [{ ...SEGMENT, attempt: "0000000c", parts: 1 }], 5);

    const output = await publishRun(deps(), input("next-1", [H8]));

    expect(output.hours[0]).toMatchObject({ outcome: "completed-for-another", publisher: "dead-3" });
    expect(await text(feedPartKey(FEED, "sessions", H8, 1))).toBe('{"run":"dead-3","part":1}\n');
  });

  it("refuses a claim whose staging is gone after a part reached the feed, naming it, and heals once it is deleted", async () => {
    await collected("dead-1", "sessions", H8);
    await store.put(manifestKey(CONTROL, H8, "sessions"), entityManifest("dead-1", H8), "application/json");
    await store.copyIfAbsent(
      stagingPartKey(CONTROL, "dead-1", "sessions", H8, SEGMENT.attempt, 0),
      feedPartKey(FEED, "sessions", H8, 0),
    );
    await store.deleteKeys(await store.listKeys(`${CONTROL}/staging/dead-1/`));
    await collected("next-1", "sessions", H8, [{ ...SEGMENT, attempt: "0000000c", parts: 3 }], 15);
    const writes = new InstrumentedStore(store, FEED);
    const controlBefore = await store.listKeys(`${CONTROL}/manifests/`);

    const error = await publishRun({ ...deps(), store: writes }, input("next-1", [H8])).catch(
      (caught: unknown) => caught,
    );

    expect(error).toBeInstanceOf(StagingLostError);
    expect((error as Error).message).toContain(
      `1 staging part(s) are gone, e.g. s3://${BUCKET}/${stagingPartKey(CONTROL, "dead-1", "sessions", H8, SEGMENT.attempt, 1)}, ` +
        "while 1 of its part(s) are already in the feed and 0 staging part(s) remain",
    );
    expect((error as Error).message).toContain(
      `aws s3 rm s3://${BUCKET}/${feedPartKey(FEED, "sessions", H8, 0)}.`,
    );
    // Refused before anything was written.
    expect(writes.feedWrites).toEqual([]);
    expect(await store.listKeys(`${CONTROL}/manifests/`)).toEqual(controlBefore);
    expect(await store.listKeys(`${CONTROL}/published/`)).toEqual([]);

    // The operator runs the command the error named; the next attempt re-collects under generation 2.
    await store.deleteKeys([feedPartKey(FEED, "sessions", H8, 0)]);
    const healed = await publishRun(deps(), input("next-1", [H8]));
    expect(healed.hours[0]).toMatchObject({ outcome: "published", publisher: "next-1" });
    expect(await store.listKeys(`${FEED}/`)).toHaveLength(3);
  });

  it("supersedes at most three generations in one Commit, then names the last one", async () => {
    await store.put(manifestKey(CONTROL, H8, "sessions"), entityManifest("dead-1", H8), "application/json");
    await collected("next-1", "sessions", H8);

    const error = await publishRun({ ...deps(), store: outclaimedStore() }, input("next-1", [H8])).catch(
      (caught: unknown) => caught,
    );

    expect(error).toBeInstanceOf(StagingLostError);
    expect((error as Error).message).toContain(
      `sessions ${H8} (manifest s3://${BUCKET}/${manifestKey(CONTROL, H8, "sessions", 4)} of execution racer-4): every staging part is gone`,
    );
    expect((await store.listKeys(`${CONTROL}/manifests/`)).sort()).toEqual(
      [1, 2, 3, 4].map((generation) => manifestKey(CONTROL, H8, "sessions", generation)).sort(),
    );
    expect(await store.listKeys(`${CONTROL}/published/`)).toEqual([]);
    expect(await store.listKeys(`${FEED}/`)).toEqual([]);
  });

  it("refuses by name a claim it lost whose winning manifest is gone before it is read", async () => {
    await collected("next-1", "sessions", H8);
    const error = await publishRun({ ...deps(), store: outclaimedStore(true) }, input("next-1", [H8])).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toBe(
      `manifest s3://${BUCKET}/${manifestKey(CONTROL, H8, "sessions")} vanished while this execution read it`,
    );
    expect(await store.listKeys(`${FEED}/`)).toEqual([]);
  });

  it("reads an hour another execution publishes while this one lists it as published, not as a manifest gone", async () => {
    await collected("first-1", "sessions", H8);
    await collected("late-1", "sessions", H8);
    // While late-1's listing of the day's markers is under way, first-1 claims, copies and marks the hour.
    const late = new S3Store(store.client, BUCKET);
    const list = late.listKeys.bind(late);
    const markersOfTheDay = publishedHourPrefix(CONTROL, H8).replace(/hour=08$/, "");
    late.listKeys = async (prefix, startAfter) => {
      if (prefix === markersOfTheDay) await publishRun(deps(), input("first-1", [H8]));
      return list(prefix, startAfter);
    };

    const output = await publishRun({ ...deps(), store: late }, input("late-1", [H8]));

    expect(output.hours[0]).toMatchObject({ outcome: "already-published", publisher: "first-1" });
  });

  it("leaves the marker another execution wrote first as it is", async () => {
    await collected("first-1", "sessions", H8);
    await publishRun(deps(), input("first-1", [H8]));
    const marker = await text(publishedMarkerKey(CONTROL, H8, "sessions"));
    await collected("late-1", "sessions", H8);
    // late-1 listed the day's markers before first-1's landed: it finishes first-1's manifest too.
    const late = new S3Store(store.client, BUCKET);
    const list = late.listKeys.bind(late);
    const markersOfTheDay = publishedHourPrefix(CONTROL, H8).replace(/hour=08$/, "");
    late.listKeys = async (prefix, startAfter) =>
      prefix === markersOfTheDay ? [] : list(prefix, startAfter);

    const output = await publishRun({ ...deps(), store: late }, input("late-1", [H8]));

    expect(output.hours[0]).toMatchObject({ outcome: "completed-for-another", publisher: "first-1" });
    expect(await text(publishedMarkerKey(CONTROL, H8, "sessions"))).toBe(marker);
  });
});
