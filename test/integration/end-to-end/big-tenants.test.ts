import { gunzipSync } from "node:zlib";
import { GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { BUCKET, expectFeedMatchesSimulator, FEED_PREFIX, type Stand, startStand } from "../../support/stand";

// At 09:20 UTC with LOOKBACK_MINUTES 75 the newest eligible hour is 08:00.
const NOW = Date.parse("2026-11-24T09:20:00Z");
const HOUR = "2026-11-24T08:00:00Z";
const HOUR_PREFIX = `${FEED_PREFIX}/sessions/year=2026/month=11/day=24/hour=08/`;

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

async function open(records: number, env: Record<string, string>): Promise<Stand> {
  stand = await startStand({
    now: NOW,
    simulator: { volume: { sessions: records } },
    env: { ENTITIES: "sessions", FIRST_HOUR_UTC: HOUR, ...env },
  });
  return stand;
}

async function objectSizes(
  s: Stand,
): Promise<{ key: string; bytes: number; contentType: string | undefined }[]> {
  const keys = (await s.keys(HOUR_PREFIX)).sort();
  return Promise.all(
    keys.map(async (key) => {
      const head = await s.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      return { key, bytes: head.ContentLength ?? 0, contentType: head.ContentType };
    }),
  );
}

describe("an entity-hour bigger than one invocation and one part", () => {
  it("is cut into parts bounded by PART_MAX_BYTES across invocations, each record once", async () => {
    // A 15 s timeout less the stand's 5 s HTTP timeout and a 9.96 s reserve leaves a 40 ms budget: every
    // invocation gets through a few pages, then hands over.
    // Plain NDJSON, so the stored bytes are the bytes PART_MAX_BYTES bounds.
    const s = await open(20_000, {
      TOP_N: "1000",
      PART_MAX_BYTES: String(2 ** 20),
      INVOCATION_RESERVE_MS: "9960",
      GZIP: "false",
    });
    const result = await s.run("big-1", { timeoutsMs: { collect: 15_000 } });

    expect(result.status).toBe("SUCCEEDED");
    const item = result.collected?.[0];
    expect(item?.records).toBe(20_000);
    expect(item?.invocations).toBeGreaterThan(1);
    // As AWS counts it, each CollectPage invocation adds 7 events to the iteration's history (task state
    // entered/exited, scheduled/started/succeeded, choice entered/exited), each retry 3; never per record.
    expect(result.iterationEvents[0]).toBe(4 + 7 * (item?.invocations ?? 0) + 3 * result.retries);
    await expectFeedMatchesSimulator(s, "sessions", HOUR);
    const parts = await objectSizes(s);
    expect(parts.length).toBe(item?.parts);
    expect(parts.length).toBeGreaterThanOrEqual(12); // about 12.5 MB of NDJSON in parts of at most 1 MiB
    for (const part of parts) {
      expect(part.bytes).toBeLessThanOrEqual(2 ** 20);
      expect(part.contentType).toBe("application/x-ndjson");
    }
    expect(parts.map((part) => part.key.slice(HOUR_PREFIX.length))).toEqual(
      parts.map((_, index) => `part-${String(index).padStart(5, "0")}.ndjson`),
    );
  });

  it("also honours PART_MAX_RECORDS", async () => {
    const s = await open(2_500, { TOP_N: "1000", PART_MAX_RECORDS: "600", GZIP: "false" });
    const result = await s.run("records-1");

    expect(result.status).toBe("SUCCEEDED");
    await expectFeedMatchesSimulator(s, "sessions", HOUR);
    const lines = await Promise.all(
      (await objectSizes(s)).map(async ({ key }) => {
        const object = await s.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
        return ((await object.Body?.transformToString()) ?? "").split("\n").length - 1;
      }),
    );
    expect(lines).toEqual([600, 600, 600, 600, 100]);
  });
});

describe("gzip (GZIP, on by default)", () => {
  it("writes .ndjson.gz parts that gunzip to exactly the records served", async () => {
    const s = await open(5_000, { PART_MAX_RECORDS: "2000" });
    const result = await s.run("gzip-1");

    expect(result.status).toBe("SUCCEEDED");
    const parts = await objectSizes(s);
    expect(parts.map((part) => part.key.slice(HOUR_PREFIX.length))).toEqual([
      "part-00000.ndjson.gz",
      "part-00001.ndjson.gz",
      "part-00002.ndjson.gz",
    ]);
    for (const part of parts) expect(part.contentType).toBe("application/gzip");
    await expectFeedMatchesSimulator(s, "sessions", HOUR);
    // Compression is worth it: NDJSON of telemetry shrinks several times.
    const first = await s.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: parts[0]?.key }));
    const compressed = Buffer.from((await first.Body?.transformToByteArray()) ?? []);
    expect(gunzipSync(compressed).length).toBeGreaterThan(4 * compressed.length);
  });
});

describe("MAX_PAGES_IN_FLIGHT above 1", () => {
  const dataRequests = (s: Stand) =>
    s.simulator.requests.filter((request) => request.path.startsWith("/casodata/"));

  it("requests pages ahead while the API returns full pages, and publishes each record once", async () => {
    const s = await open(10_500, { TOP_N: "1000", MAX_PAGES_IN_FLIGHT: "4" });
    // A page takes 20 ms, as from an API over a network: answered at once, requests never overlap.
    s.simulator.setOptions({ pageLatencyMs: 20 });
    const result = await s.run("ahead-1");

    expect(result.status).toBe("SUCCEEDED");
    await expectFeedMatchesSimulator(s, "sessions", HOUR);
    expect(result.collected?.[0]?.pages).toBe(11);
    // Pages were asked for ahead: the API served more than one at a time.
    expect(s.simulator.peakConcurrentRequests).toBeGreaterThan(1);
    // Guesses past the short last page are dropped unread (or never sent, while waiting for room): at most 3.
    const sent = dataRequests(s).length;
    expect(sent).toBeGreaterThanOrEqual(11);
    expect(sent).toBeLessThanOrEqual(14);
  });

  it("falls back to one request at a time when the API caps $top below TOP_N", async () => {
    stand = await startStand({
      now: NOW,
      simulator: { volume: { sessions: 2_000 }, maxPageSize: 300 },
      env: { ENTITIES: "sessions", FIRST_HOUR_UTC: HOUR, TOP_N: "1000", MAX_PAGES_IN_FLIGHT: "4" },
    });
    const result = await stand.run("capped-ahead-1");

    expect(result.status).toBe("SUCCEEDED");
    await expectFeedMatchesSimulator(stand, "sessions", HOUR);
    // 300 × 6 + 200, then nothing was guessed: every request asked for the next unread record.
    expect(dataRequests(stand).map((request) => request.skip)).toEqual([0, 300, 600, 900, 1200, 1500, 1800]);
  });

  it("keeps to one request at a time with @odata.nextLink, and across invocations", async () => {
    stand = await startStand({
      now: NOW,
      simulator: { volume: { sessions: 7_777 }, paging: "nextLink" },
      env: {
        ENTITIES: "sessions",
        FIRST_HOUR_UTC: HOUR,
        TOP_N: "1000",
        MAX_PAGES_IN_FLIGHT: "4",
        INVOCATION_RESERVE_MS: "9990",
      },
    });
    const result = await stand.run("nextlink-ahead-1", { timeoutsMs: { collect: 15_000 } });

    expect(result.status).toBe("SUCCEEDED");
    await expectFeedMatchesSimulator(stand, "sessions", HOUR);
    expect(dataRequests(stand)).toHaveLength(8);
  });
});
