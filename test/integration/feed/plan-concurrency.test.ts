import { afterEach, describe, expect, it } from "vitest";
import { pageWindowHintKey } from "../../../functions/lib/feed/keys";
import { type Stand, startStand } from "../../support/stand";

// Plan runs the Map one iteration at a time while the page window's hint says the Citrix API was crowded
// in the past day (see docs/citrix-api.md), and MAP_MAX_CONCURRENCY otherwise.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOUR = "2026-11-24T10:00:00Z";
const HINT_KEY = pageWindowHintKey("_citrix_collector/citrix_analytics");

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

async function planWith(hint: string | undefined): Promise<{ maxConcurrency?: number; logs: string[] }> {
  stand = await startStand({ now: NOW, env: { FIRST_HOUR_UTC: HOUR, MAP_MAX_CONCURRENCY: "6" } });
  if (hint !== undefined) await stand.store.put(HINT_KEY, hint, "application/json");
  const result = await stand.run("plan-concurrency-1");
  expect(result.status).toBe("SUCCEEDED");
  return { maxConcurrency: result.plan?.maxConcurrency, logs: stand.logs };
}

const hint = (fields: Record<string, unknown>) =>
  JSON.stringify({ limit: 1, probeRounds: 32, at: new Date(NOW - 3_600_000).toISOString(), ...fields });

describe("the Map's concurrency", () => {
  it("is MAP_MAX_CONCURRENCY without a hint, and with a hint that is not crowded", async () => {
    expect((await planWith(undefined)).maxConcurrency).toBe(6);
    await stand?.close();
    expect((await planWith(hint({}))).maxConcurrency).toBe(6);
  });

  it("is one while the API was crowded in the past day, and says so", async () => {
    const { maxConcurrency, logs } = await planWith(hint({ crowded: true }));
    expect(maxConcurrency).toBe(1);
    expect(logs.some((line) => line.includes("the Citrix API was crowded; one iteration at a time"))).toBe(
      true,
    );
  });

  it("is MAP_MAX_CONCURRENCY again a day later, or when the hint cannot be read", async () => {
    const dayOld = hint({ crowded: true, at: new Date(NOW - 24 * 3_600_000).toISOString() });
    expect((await planWith(dayOld)).maxConcurrency).toBe(6);
    await stand?.close();
    expect((await planWith("{not json")).maxConcurrency).toBe(6);
  });
});
