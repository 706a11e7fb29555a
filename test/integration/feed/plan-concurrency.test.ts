import { afterEach, describe, expect, it } from "vitest";
import { entityHoursOf } from "../../../functions/lib/feed/planner";
import { PAGE_WINDOW_HINT_KEY, pageWindowHint, type Stand, startStand } from "../../support/stand";

// Plan runs the Map one iteration at a time until the page window's hint says what the Citrix API allows
// (see planIterations and docs/citrix-api.md), then as many as its limit leaves each a request, at most
// MAP_MAX_CONCURRENCY; each iteration is told how many share the limit.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const FIRST_HOUR = "2026-11-24T09:00:00Z";

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

/** Plans (and runs) two hours of three entities, six entity-hours, with MAP_MAX_CONCURRENCY 4. */
async function planWith(hint: string | undefined) {
  await stand?.close();
  stand = await startStand({
    now: NOW,
    env: { FIRST_HOUR_UTC: FIRST_HOUR, ENTITIES: "sessions,machines,users", MAP_MAX_CONCURRENCY: "4" },
  });
  if (hint !== undefined) await stand.store.put(PAGE_WINDOW_HINT_KEY, hint, "application/json");
  const told: (number | undefined)[] = [];
  const result = await stand.run("plan-concurrency-1", {
    wrap: (key, handler) => async (event, context) => {
      if (key === "collect") told.push((event as { iterationsAtOnce?: number }).iterationsAtOnce);
      return handler(event, context);
    },
  });
  expect(result.status).toBe("SUCCEEDED");
  expect(entityHoursOf(result.plan?.items ?? [])).toHaveLength(6);
  // One run per iteration at once (see planRuns).
  expect(result.plan?.items).toHaveLength(result.plan?.maxConcurrency ?? 0);
  return { maxConcurrency: result.plan?.maxConcurrency, told, logs: stand.logs };
}

const hint = (fields: Parameters<typeof pageWindowHint>[1]) => pageWindowHint(NOW, fields);
const logged = (logs: string[], message: string) => logs.some((line) => line.includes(message));

describe("the Map's concurrency", () => {
  it("is one until the API's limit is known, and says so", async () => {
    const { maxConcurrency, told, logs } = await planWith(undefined);
    expect(maxConcurrency).toBe(1);
    expect(logged(logs, "the Citrix API's limit is not known yet; one iteration at a time")).toBe(true);
    // Every invocation of the one run hears it (the Choice loop hands it on).
    expect(told.length).toBeGreaterThanOrEqual(1);
    expect(new Set(told)).toEqual(new Set([1]));
  });

  it("is MAP_MAX_CONCURRENCY when the API served every request", async () => {
    const { maxConcurrency, told } = await planWith(hint({ limit: 2, throttled: false }));
    expect(maxConcurrency).toBe(4);
    expect(new Set(told)).toEqual(new Set([4]));
  });

  it("leaves each iteration at least a request of a limit the API enforced, and says so", async () => {
    const limited = await planWith(hint({ limit: 3 }));
    expect(limited.maxConcurrency).toBe(3);
    expect(new Set(limited.told)).toEqual(new Set([3]));
    expect(logged(limited.logs, "fewer iterations at once: the Citrix API allows no more")).toBe(true);
    expect((await planWith(hint({ limit: 9 }))).maxConcurrency).toBe(4);
  });

  it("is one again a day later, or when the hint cannot be read", async () => {
    const dayOld = hint({ limit: 9, at: new Date(NOW - 24 * 3_600_000).toISOString() });
    expect((await planWith(dayOld)).maxConcurrency).toBe(1);
    expect((await planWith("{not json")).maxConcurrency).toBe(1);
  });
});
