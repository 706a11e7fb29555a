import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../functions/lib/config/config";
import {
  collectedResultKey,
  feedPartKey,
  firstHourKey,
  leaseKey,
  leasePrefix,
  legacyManifestKey,
  legacyPublishedMarkerKey,
  manifestHourPrefix,
  manifestKey,
  manifestOfKey,
  partFileName,
  publishedAfterKey,
  publishedHourPrefix,
  publishedMarkerKey,
  publishedMarkerOfKey,
  publishedPrefix,
  stagingPartKey,
  stagingRunPrefix,
} from "../../../functions/lib/feed/keys";

const FEED = "citrix_analytics";
const CONTROL = "_citrix_collector/citrix_analytics";
const HOUR = "2026-11-24T08:00:00Z";

describe("feedPartKey", () => {
  it("follows the SPEC's Hive-style layout exactly", () => {
    expect(feedPartKey(FEED, "sessions", HOUR, 0)).toBe(
      "citrix_analytics/sessions/year=2026/month=11/day=24/hour=08/part-00000.ndjson",
    );
  });

  it("zero-pads month, day and hour in the path", () => {
    expect(feedPartKey(FEED, "machines", "2027-01-05T03:00:00Z", 12)).toBe(
      "citrix_analytics/machines/year=2027/month=01/day=05/hour=03/part-00012.ndjson",
    );
  });

  it("is deterministic for an (entity, hour, index) and distinct across indexes", () => {
    expect(feedPartKey(FEED, "sessions", HOUR, 3)).toBe(feedPartKey(FEED, "sessions", HOUR, 3));
    expect(feedPartKey(FEED, "sessions", HOUR, 3)).not.toBe(feedPartKey(FEED, "sessions", HOUR, 4));
  });

  it("refuses an hour that is not a whole UTC hour", () => {
    expect(() => feedPartKey(FEED, "sessions", "2026-11-24T08:30:00Z", 0)).toThrow(RangeError);
  });
});

describe("partFileName", () => {
  it("pads the index to five digits so names sort in order", () => {
    expect(partFileName(0)).toBe("part-00000.ndjson");
    expect(partFileName(7)).toBe("part-00007.ndjson");
    expect(partFileName(12345)).toBe("part-12345.ndjson");
    const names = [0, 1, 2, 9, 10, 11, 99, 100, 1000].map((index) => partFileName(index));
    expect([...names].sort()).toEqual(names);
  });

  it("ends in .ndjson.gz for gzip-compressed parts, in staging and in the feed", () => {
    expect(partFileName(3, true)).toBe("part-00003.ndjson.gz");
    expect(feedPartKey("citrix_analytics", "sessions", HOUR, 3, true)).toBe(
      "citrix_analytics/sessions/year=2026/month=11/day=24/hour=08/part-00003.ndjson.gz",
    );
    expect(stagingPartKey(CONTROL, "run-1", "sessions", HOUR, "0a1b2c3d", 3, true)).toMatch(
      /0a1b2c3d-part-00003\.ndjson\.gz$/,
    );
  });
});

describe("control keys", () => {
  it("put staging parts under the run's own staging prefix, named by invocation attempt", () => {
    expect(stagingRunPrefix(CONTROL, "run-1")).toBe("_citrix_collector/citrix_analytics/staging/run-1/");
    expect(stagingPartKey(CONTROL, "run-1", "sessions", HOUR, "0a1b2c3d", 2)).toBe(
      "_citrix_collector/citrix_analytics/staging/run-1/sessions/year=2026/month=11/day=24/hour=08/0a1b2c3d-part-00002.ndjson",
    );
    expect(
      stagingPartKey(CONTROL, "run-1", "sessions", HOUR, "0a1b2c3d", 2).startsWith(
        stagingRunPrefix(CONTROL, "run-1"),
      ),
    ).toBe(true);
  });

  it("keep different runs' and different attempts' staging apart", () => {
    expect(stagingPartKey(CONTROL, "run-1", "sessions", HOUR, "aaaaaaaa", 0)).not.toBe(
      stagingPartKey(CONTROL, "run-2", "sessions", HOUR, "aaaaaaaa", 0),
    );
    expect(stagingPartKey(CONTROL, "run-1", "sessions", HOUR, "aaaaaaaa", 0)).not.toBe(
      stagingPartKey(CONTROL, "run-1", "sessions", HOUR, "bbbbbbbb", 0),
    );
  });

  it("name one manifest per entity-hour and generation, beside the legacy per-hour one, all under one prefix", () => {
    const prefix = manifestHourPrefix(CONTROL, HOUR);
    expect(prefix).toBe("_citrix_collector/citrix_analytics/manifests/year=2026/month=11/day=24/hour=08");
    expect(manifestKey(CONTROL, HOUR, "sessions")).toBe(`${prefix}/sessions.json`);
    expect(manifestKey(CONTROL, HOUR, "sessions", 1)).toBe(`${prefix}/sessions.json`);
    expect(manifestKey(CONTROL, HOUR, "sessions", 2)).toBe(`${prefix}/sessions.g2.json`);
    expect(manifestKey(CONTROL, HOUR, "sessions", 12)).toBe(`${prefix}/sessions.g12.json`);
    expect(legacyManifestKey(CONTROL, HOUR)).toBe(`${prefix}.json`);
  });

  it("manifestOfKey reads back the entity and generation, and nothing else", () => {
    const prefix = manifestHourPrefix(CONTROL, HOUR);
    for (const generation of [1, 2, 9, 10, 12])
      expect(manifestOfKey(prefix, manifestKey(CONTROL, HOUR, "machine_x1", generation))).toEqual({
        entity: "machine_x1",
        generation,
      });
    for (const key of [
      legacyManifestKey(CONTROL, HOUR),
      `${prefix}/sessions.g1.json`,
      `${prefix}/sessions.g0.json`,
      `${prefix}/sessions.g02.json`,
      `${prefix}/sessions.json.tmp`,
      `${prefix}/1sessions.json`,
      `${prefix}/sessions.g2.json`.replace("hour=08", "hour=09"),
      `x${prefix}/sessions.json`,
    ])
      expect(manifestOfKey(prefix, key), key).toBeUndefined();
  });

  it("with the default configuration, live outside the feed prefix", () => {
    const config = loadConfig({
      S3_BUCKET: "bucket",
      CITRIX_CUSTOMER_ID: "cust",
      CITRIX_CLIENT_ID: "id",
      CITRIX_CLIENT_SECRET: "secret",
    });
    const feed = `${config.feedPrefix}/`;
    expect(feed).toBe("citrix_analytics/");
    const controlKeys = [
      stagingRunPrefix(config.controlPrefix, "run-1"),
      stagingPartKey(config.controlPrefix, "run-1", "sessions", HOUR, "aaaaaaaa", 0),
      manifestKey(config.controlPrefix, HOUR, "sessions"),
      publishedMarkerKey(config.controlPrefix, HOUR, "sessions"),
      firstHourKey(config.controlPrefix),
      config.stateKey,
    ];
    for (const key of controlKeys) expect(key.startsWith(feed), key).toBe(false);
    expect(feedPartKey(config.feedPrefix, "sessions", HOUR, 0).startsWith(feed)).toBe(true);
  });
});

describe("control keys of the commit protocol", () => {
  it("publishedMarkerKey and publishedMarkerOfKey are inverses, and markers sort in hour order", () => {
    const hours = [
      "2026-12-31T23:00:00Z",
      "2027-01-01T00:00:00Z",
      "2027-01-01T09:00:00Z",
      "2027-01-01T10:00:00Z",
    ];
    const keys = hours.flatMap((hourUtc) => [
      legacyPublishedMarkerKey(CONTROL, hourUtc),
      publishedMarkerKey(CONTROL, hourUtc, "machines"),
      publishedMarkerKey(CONTROL, hourUtc, "users"),
    ]);
    expect(keys[0]).toBe("_citrix_collector/citrix_analytics/published/year=2026/month=12/day=31/hour=23");
    expect(keys[1]).toBe(
      "_citrix_collector/citrix_analytics/published/year=2026/month=12/day=31/hour=23/machines",
    );
    expect(publishedHourPrefix(CONTROL, hours[0] as string)).toBe(keys[0]);
    expect(keys.map((key) => publishedMarkerOfKey(CONTROL, key))).toEqual(
      hours.flatMap((hourUtc) => [
        { hourUtc, entity: undefined },
        { hourUtc, entity: "machines" },
        { hourUtc, entity: "users" },
      ]),
    );
    expect([...keys].reverse().sort()).toEqual(keys);
  });

  it("publishedAfterKey sorts after every marker of its hour and before every marker of the next", () => {
    const after = publishedAfterKey(CONTROL, "2026-12-31T23:00:00Z");
    for (const key of [
      legacyPublishedMarkerKey(CONTROL, "2026-12-31T23:00:00Z"),
      publishedMarkerKey(CONTROL, "2026-12-31T23:00:00Z", "zzz_Z9"),
    ])
      expect(key < after, key).toBe(true);
    for (const key of [
      legacyPublishedMarkerKey(CONTROL, "2027-01-01T00:00:00Z"),
      publishedMarkerKey(CONTROL, "2027-01-01T00:00:00Z", "A"),
    ])
      expect(key > after, key).toBe(true);
  });

  it("publishedMarkerOfKey ignores keys that are not markers of this control prefix", () => {
    for (const key of [
      `${CONTROL}/published/year=2026/month=11/day=24/hour=08.json`,
      `${CONTROL}/manifests/year=2026/month=11/day=24/hour=08`,
      `other/published/year=2026/month=11/day=24/hour=08`,
      `${CONTROL}/published/year=2026/month=11/day=24/hour=8`,
      `${CONTROL}/published/year=2026/month=11/day=24/hour=08/`,
      `${CONTROL}/published/year=2026/month=11/day=24/hour=08/1users`,
      `${CONTROL}/published/year=2026/month=11/day=24/hour=08/users/x`,
    ])
      expect(publishedMarkerOfKey(CONTROL, key), key).toBe(undefined);
  });

  it("keeps results, leases and markers under the control prefix, results inside the run's staging", () => {
    expect(collectedResultKey(CONTROL, "run-1", "sessions", HOUR)).toBe(
      `${stagingRunPrefix(CONTROL, "run-1")}collected/sessions/year=2026/month=11/day=24/hour=08.json`,
    );
    expect(leaseKey(CONTROL, "run-1")).toBe(`${leasePrefix(CONTROL)}run-1.json`);
    expect(leasePrefix(CONTROL)).toBe("_citrix_collector/citrix_analytics/leases/");
    expect(publishedPrefix(CONTROL)).toBe("_citrix_collector/citrix_analytics/published/");
  });
});
