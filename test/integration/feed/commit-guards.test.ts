import { afterEach, describe, expect, it } from "vitest";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import { StorageUnavailableError } from "../../../functions/lib/config/errors";
import { collectedResultKey, manifestHourPrefix, publishedMarkerKey } from "../../../functions/lib/feed/keys";
import { advanceWatermark } from "../../../functions/lib/feed/watermark";
import {
  expectFeedMatchesSimulator,
  FEED_PREFIX,
  STATE_KEY,
  type Stand,
  startStand,
} from "../../support/stand";

const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOURS = ["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z"];
const CONTROL = "_citrix_collector/citrix_analytics";
const LAYOUT = { feedPrefix: FEED_PREFIX, controlPrefix: CONTROL, stateKey: STATE_KEY };

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

async function open(env: Record<string, string> = {}): Promise<Stand> {
  stand = await startStand({ now: NOW, env: { FIRST_HOUR_UTC: HOURS[0] as string, ...env } });
  return stand;
}

describe("Commit refuses to claim an hour it cannot fill", () => {
  it("names the entity-hour whose collected result is missing, claims nothing and leaves the watermark", async () => {
    const s = await open({ ENTITIES: "sessions,users" });
    const result = await s.run("missing-1", {
      wrap: (key, handler) => async (event, context) => {
        if (key === "commit")
          await s.store.deleteKeys([collectedResultKey(CONTROL, "missing-1", "users", HOURS[1] as string)]);
        return handler(event, context);
      },
    });

    expect(result.error?.name).toBe("InvalidInputError");
    expect(result.error?.message).toContain(
      `found no collected result of execution missing-1 for users at ${HOURS[1]}`,
    );
    // 08:00 was published before; 09:00 was never claimed.
    expect(await s.keys(manifestHourPrefix(CONTROL, HOURS[1] as string))).toEqual([]);
    expect(await s.keys(`${FEED_PREFIX}/users/year=2026/month=11/day=24/hour=09/`)).toEqual([]);
    expect(await s.watermark()).toBeNull();

    // 10:00 was published beside it (hours go in parallel), past the gap at 09:00. With no state file yet, the
    // next run trusts only what is contiguous after the watermark the markers record: it collects 09:00.
    const next = await s.run("after-missing-1");
    expect(next.status).toBe("SUCCEEDED");
    expect(next.plan?.watermark.hourUtc).toBe(HOURS[0]);
    expect(next.plan?.hours).toEqual([HOURS[1]]);
    expect(await s.watermark()).toBe(HOURS[2]);
    for (const hourUtc of HOURS) await expectFeedMatchesSimulator(s, "users", hourUtc);
  });
});

describe("an hour another execution published with fewer entities", () => {
  it("gets the entity added since from a backfill, and its other entities are not written again", async () => {
    const s = await open({ ENTITIES: "sessions" });
    expect((await s.run("fewer-1")).status).toBe("SUCCEEDED");

    // ENTITIES gains users; a backfill of 08:00 collects users only: sessions are published there already.
    const backfill = await s.run("more-1", {
      env: { ...s.env, ENTITIES: "sessions,users" },
      input: { backfill: { from: HOURS[0] as string, to: HOURS[0] as string } },
    });
    expect(backfill.status).toBe("SUCCEEDED");
    const [hour] = backfill.commit?.hours ?? [];
    expect(hour?.outcome).toBe("published");
    expect(hour?.publisher).toBe("more-1");
    expect(backfill.plan?.items).toEqual([{ entity: "users", hourUtc: HOURS[0], rest: [] }]);
    expect(hour?.records).toEqual({
      sessions: { published: 2500, outcome: "already-published", publisher: "fewer-1" },
      users: { collected: 300, published: 300, outcome: "published", publisher: "more-1" },
    });
    await expectFeedMatchesSimulator(s, "users", HOURS[0] as string);
    await expectFeedMatchesSimulator(s, "sessions", HOURS[0] as string);
  });
});

describe("the watermark's compare-and-swap", () => {
  it("gives up, retryably, after five writes lost to other executions", async () => {
    const s = await open();
    await s.store.put(
      publishedMarkerKey(CONTROL, "2026-11-24T08:00:00Z", "sessions"),
      "{}",
      "application/json",
    );
    /** Before each of this execution's writes of the state file, another execution writes it first. */
    class RacedStore extends S3Store {
      races = 0;
      override async put(...args: Parameters<S3Store["put"]>): ReturnType<S3Store["put"]> {
        if (args[0] === STATE_KEY) {
          this.races++;
          const other = JSON.stringify({ last_hour_utc: "2026-11-24T07:00:00Z", race: this.races });
          await super.put(STATE_KEY, other, "application/json");
        }
        return super.put(...args);
      }
    }
    const store = new RacedStore(s.client, s.store.bucket);
    const error = await advanceWatermark(
      store,
      LAYOUT,
      { hourUtc: "2026-11-24T07:00:00Z", etag: '"stale"' },
      "cas-1",
      ["sessions"],
    ).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect((error as Error).message).toBe(
      `the watermark at s3://${s.store.bucket}/${STATE_KEY} kept changing under this execution; retrying the state`,
    );
    expect(store.races).toBe(5);
    expect(await s.watermark()).toBe("2026-11-24T07:00:00Z");
  });
});

describe("SEED_STATE_KEY naming a file that is not there", () => {
  it("is a first run from FIRST_HOUR_UTC, and the collector's own state file is created", async () => {
    const s = await open({ SEED_STATE_KEY: "citrix_analytics/old-state.json" });
    const result = await s.run("seedless-1");
    expect(result.status).toBe("SUCCEEDED");
    expect(result.plan?.hours).toEqual(HOURS);
    expect(await s.watermark()).toBe(HOURS[2]);
  });
});
