import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../functions/lib/config/config";
import {
  collectedResultKey,
  feedPartKey,
  hourOfPublishedMarker,
  leaseKey,
  leasePrefix,
  manifestKey,
  partFileName,
  publishedMarkerKey,
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

  it("name one manifest per hour", () => {
    expect(manifestKey(CONTROL, HOUR)).toBe(
      "_citrix_collector/citrix_analytics/manifests/year=2026/month=11/day=24/hour=08.json",
    );
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
      manifestKey(config.controlPrefix, HOUR),
      config.stateKey,
    ];
    for (const key of controlKeys) expect(key.startsWith(feed), key).toBe(false);
    expect(feedPartKey(config.feedPrefix, "sessions", HOUR, 0).startsWith(feed)).toBe(true);
  });
});

describe("control keys of the commit protocol", () => {
  it("publishedMarkerKey and hourOfPublishedMarker are inverses, and markers sort in hour order", () => {
    const hours = [
      "2026-12-31T23:00:00Z",
      "2027-01-01T00:00:00Z",
      "2027-01-01T09:00:00Z",
      "2027-01-01T10:00:00Z",
    ];
    const keys = hours.map((hourUtc) => publishedMarkerKey(CONTROL, hourUtc));
    expect(keys[0]).toBe("_citrix_collector/citrix_analytics/published/year=2026/month=12/day=31/hour=23");
    expect(keys.map((key) => hourOfPublishedMarker(CONTROL, key))).toEqual(hours);
    expect([...keys].reverse().sort()).toEqual(keys);
  });

  it("hourOfPublishedMarker ignores keys that are not markers of this control prefix", () => {
    expect(
      hourOfPublishedMarker(CONTROL, `${CONTROL}/published/year=2026/month=11/day=24/hour=08.json`),
    ).toBe(undefined);
    expect(hourOfPublishedMarker(CONTROL, `${CONTROL}/manifests/year=2026/month=11/day=24/hour=08`)).toBe(
      undefined,
    );
    expect(hourOfPublishedMarker(CONTROL, `other/published/year=2026/month=11/day=24/hour=08`)).toBe(
      undefined,
    );
    expect(hourOfPublishedMarker(CONTROL, `${CONTROL}/published/year=2026/month=11/day=24/hour=8`)).toBe(
      undefined,
    );
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
