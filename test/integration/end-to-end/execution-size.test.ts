import { afterEach, describe, expect, it } from "vitest";
import { MAX_ENTITY_HOURS_PER_EXECUTION } from "../../../functions/lib/config/config";
import { hourRange } from "../../../functions/lib/config/hours";
import { entityHoursOf } from "../../../functions/lib/feed/planner";
import {
  expectFeedMatchesSimulator,
  PAGE_WINDOW_HINT_KEY,
  pageWindowHint,
  type Stand,
  startStand,
} from "../../support/stand";

// At 11:20 UTC with LOOKBACK_MINUTES 75 the newest eligible hour is 10:00; 100 hours end there.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOURS = hourRange(Date.parse("2026-11-20T07:00:00Z"), Date.parse("2026-11-24T10:00:00Z"));
const ENTITIES = Array.from({ length: 10 }, (_, i) => `entity${i}`);
const STATE_LIMIT_BYTES = 256 * 1024;

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

describe("the largest execution the configuration accepts", () => {
  it("100 hours × 10 entities with 2 KB nextLink cursors fits AWS's payload and history limits", async () => {
    expect(HOURS.length * ENTITIES.length).toBe(MAX_ENTITY_HOURS_PER_EXECUTION);
    stand = await startStand({
      now: NOW,
      simulator: { paging: "nextLink", skipTokenLength: 2048, volume: () => 3 },
      env: {
        ENTITIES: ENTITIES.join(","),
        MAX_HOURS_PER_RUN: String(HOURS.length),
        FIRST_HOUR_UTC: HOURS[0] as string,
        TOP_N: "2",
        MAP_MAX_CONCURRENCY: "40",
      },
    });
    // Forty iterations at once, as configured: the API never refused (see planIterations).
    const served = pageWindowHint(NOW, { limit: 64, throttled: false });
    await stand.store.put(PAGE_WINDOW_HINT_KEY, served, "application/json");
    // Under the caller's credentials: what this test measures (payloads and history) does not depend on the
    // roles, and evaluating the roles' policies for its S3 requests took a quarter of its time (53 s → 39 s).
    // least-privilege.test.ts and the other end-to-end tests run under the deployed roles.
    const result = await stand.run("largest-1", { roles: "caller" });

    expect(result.error).toBeUndefined();
    expect(result.status).toBe("SUCCEEDED");
    expect(entityHoursOf(result.plan?.items ?? [])).toHaveLength(MAX_ENTITY_HOURS_PER_EXECUTION);
    // Forty runs of 25 entity-hours (see planRuns).
    expect(result.plan?.items).toHaveLength(40);
    expect(result.plan?.maxConcurrency).toBe(40);
    // The local engine fails an execution at 25,000 events and any state over 256 KiB, as AWS does; these
    // figures show the margin.
    expect(result.history.length).toBeLessThan(25_000);
    const payloads = result.history.flatMap((event) => {
      const details = Object.values(event).find(
        (value): value is { input?: string; output?: string } => typeof value === "object" && value !== null,
      );
      return [details?.input, details?.output].filter((text): text is string => typeof text === "string");
    });
    const largest = Math.max(...payloads.map((text) => Buffer.byteLength(text)));
    expect(largest).toBeLessThan(STATE_LIMIT_BYTES / 2);
    expect(result.commit?.hours.filter((hour) => hour.outcome === "published")).toHaveLength(HOURS.length);
    expect(await stand.watermark()).toBe(HOURS[HOURS.length - 1]);
    for (const entity of [ENTITIES[0], ENTITIES[9]] as string[])
      for (const hourUtc of [HOURS[0], HOURS[50], HOURS[99]] as string[])
        await expectFeedMatchesSimulator(stand, entity, hourUtc);
  }, 300_000);
});
