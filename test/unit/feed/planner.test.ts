import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RunItem, WorkItem } from "../../../functions/lib/config/contracts";
import { InvalidInputError } from "../../../functions/lib/config/errors";
import {
  entityHoursOf,
  expectedRequestsOf,
  lagHours,
  MAX_ENTITY_HOURS_PER_RUN,
  newestEligibleHour,
  planBackfillHours,
  planHours,
  planRuns,
  planWorkItems,
  scheduleMinute,
} from "../../../functions/lib/feed/planner";

const at = (iso: string) => Date.parse(iso);

/** Independent of the module under test: the ISO hour string n hours after `base`. */
function utcHour(base: string, n: number): string {
  const ms = Date.parse(base) + n * 3_600_000;
  return new Date(ms).toISOString().replace(".000Z", "Z");
}

const window = (overrides: Partial<Parameters<typeof planHours>[0]>) => ({
  nowMs: at("2026-11-24T10:15:00Z"),
  lookbackMinutes: 75,
  maxHoursPerRun: 24,
  watermarkHourUtc: undefined,
  firstHourUtc: undefined,
  published: new Set<string>(),
  ...overrides,
});

describe("newestEligibleHour", () => {
  it("is floor_hour(now − lookback)", () => {
    expect(newestEligibleHour(at("2026-11-24T10:15:00Z"), 75)).toBe(at("2026-11-24T09:00:00Z"));
    expect(newestEligibleHour(at("2026-11-24T10:14:59.999Z"), 75)).toBe(at("2026-11-24T08:00:00Z"));
    expect(newestEligibleHour(at("2026-11-24T10:00:00Z"), 60)).toBe(at("2026-11-24T09:00:00Z"));
  });
});

describe("scheduleMinute", () => {
  it("is one minute after the minute an hour falls due", () => {
    // 75: hour 09:00 falls due at 10:15, so the schedule fires at 10:16.
    expect(scheduleMinute(75)).toBe(16);
    expect(scheduleMinute(60)).toBe(1);
    // 119: hour 09:00 falls due at 10:59; the next minute is 11:00.
    expect(scheduleMinute(119)).toBe(0);
    expect(scheduleMinute(120)).toBe(1);
    expect(scheduleMinute(7 * 24 * 60)).toBe(1);
  });

  it("starts every run one minute after the newest eligible hour fell due, for every valid LOOKBACK_MINUTES", () => {
    const minute = 60_000;
    for (let lookback = 60; lookback <= 7 * 24 * 60; lookback++) {
      for (const hour of ["2026-11-24T00:00:00Z", "2026-11-24T13:00:00Z", "2026-12-31T23:00:00Z"]) {
        const start = at(hour) + scheduleMinute(lookback) * minute;
        const newest = newestEligibleHour(start, lookback);
        // Due since exactly one minute: eligible at start − 1 min, not a millisecond earlier.
        expect({ lookback, hour, dueFor: start - (newest + lookback * minute) }).toEqual({
          lookback,
          hour,
          dueFor: minute,
        });
      }
    }
  });
});

describe("planHours", () => {
  describe("first run (no watermark)", () => {
    it("collects only floor_hour(now − LOOKBACK_MINUTES)", () => {
      // 10:15 − 75 min = 09:00 → the hour 09:00 (which ended 15 minutes ago).
      expect(planHours(window({}))).toEqual(["2026-11-24T09:00:00Z"]);
    });

    it("starts at FIRST_HOUR_UTC when it is set", () => {
      expect(planHours(window({ firstHourUtc: "2026-11-24T06:00:00Z" }))).toEqual([
        "2026-11-24T06:00:00Z",
        "2026-11-24T07:00:00Z",
        "2026-11-24T08:00:00Z",
        "2026-11-24T09:00:00Z",
      ]);
    });

    it("caps a FIRST_HOUR_UTC far in the past at maxHoursPerRun, oldest first", () => {
      expect(planHours(window({ firstHourUtc: "2026-11-01T00:00:00Z", maxHoursPerRun: 3 }))).toEqual([
        "2026-11-01T00:00:00Z",
        "2026-11-01T01:00:00Z",
        "2026-11-01T02:00:00Z",
      ]);
    });

    it("plans nothing when FIRST_HOUR_UTC is not eligible yet", () => {
      expect(planHours(window({ firstHourUtc: "2026-11-24T10:00:00Z" }))).toEqual([]);
    });
  });

  describe("later runs", () => {
    it("continue right after the watermark, up to the bound", () => {
      expect(planHours(window({ watermarkHourUtc: "2026-11-24T06:00:00Z" }))).toEqual([
        "2026-11-24T07:00:00Z",
        "2026-11-24T08:00:00Z",
        "2026-11-24T09:00:00Z",
      ]);
    });

    it("ignore FIRST_HOUR_UTC once there is a watermark", () => {
      expect(
        planHours(window({ watermarkHourUtc: "2026-11-24T08:00:00Z", firstHourUtc: "2026-11-01T00:00:00Z" })),
      ).toEqual(["2026-11-24T09:00:00Z"]);
    });

    it("plan nothing when the watermark is at the bound", () => {
      expect(planHours(window({ watermarkHourUtc: "2026-11-24T09:00:00Z" }))).toEqual([]);
    });

    it("plan nothing when the watermark is beyond the bound (clock skew)", () => {
      expect(planHours(window({ watermarkHourUtc: "2026-11-24T10:00:00Z" }))).toEqual([]);
      expect(planHours(window({ watermarkHourUtc: "2026-11-25T03:00:00Z" }))).toEqual([]);
    });

    it("count only unpublished hours towards maxHoursPerRun, and stop at the one that fills it", () => {
      const published = new Set(["2026-11-20T02:00:00Z", "2026-11-20T03:00:00Z", "2026-11-20T06:00:00Z"]);
      const hours = planHours(
        window({ watermarkHourUtc: "2026-11-20T00:00:00Z", maxHoursPerRun: 3, published }),
      );
      expect(hours).toEqual([
        "2026-11-20T01:00:00Z",
        "2026-11-20T02:00:00Z",
        "2026-11-20T03:00:00Z",
        "2026-11-20T04:00:00Z",
        "2026-11-20T05:00:00Z",
      ]);
      const upToTheBound = new Set(["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z"]);
      expect(
        planHours(
          window({ watermarkHourUtc: "2026-11-24T06:00:00Z", maxHoursPerRun: 1, published: upToTheBound }),
        ),
      ).toEqual(["2026-11-24T07:00:00Z"]);
      expect(
        planHours(
          window({ watermarkHourUtc: "2026-11-24T07:00:00Z", maxHoursPerRun: 1, published: upToTheBound }),
        ),
      ).toEqual(["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z"]);
    });

    it("never return more than maxHoursPerRun hours", () => {
      const hours = planHours(window({ watermarkHourUtc: "2026-11-20T00:00:00Z", maxHoursPerRun: 5 }));
      expect(hours).toEqual([
        "2026-11-20T01:00:00Z",
        "2026-11-20T02:00:00Z",
        "2026-11-20T03:00:00Z",
        "2026-11-20T04:00:00Z",
        "2026-11-20T05:00:00Z",
      ]);
    });

    it("plan a single hour per run when maxHoursPerRun is 1", () => {
      expect(planHours(window({ watermarkHourUtc: "2026-11-24T05:00:00Z", maxHoursPerRun: 1 }))).toEqual([
        "2026-11-24T06:00:00Z",
      ]);
    });
  });

  describe("exact lookback boundary (LOOKBACK_MINUTES 75)", () => {
    it("at 10:15:00 the newest eligible hour is 09:00 (H−1), so 08:00 (H−2) and 09:00 are due", () => {
      const nowMs = at("2026-11-24T10:15:00Z");
      expect(planHours(window({ nowMs, watermarkHourUtc: "2026-11-24T07:00:00Z" }))).toEqual([
        "2026-11-24T08:00:00Z",
        "2026-11-24T09:00:00Z",
      ]);
      expect(planHours(window({ nowMs, watermarkHourUtc: "2026-11-24T08:00:00Z" }))).toEqual([
        "2026-11-24T09:00:00Z",
      ]);
      expect(planHours(window({ nowMs, watermarkHourUtc: "2026-11-24T09:00:00Z" }))).toEqual([]);
    });

    it("one millisecond earlier (10:14:59.999) 09:00 is not eligible yet; 08:00 is the newest", () => {
      const nowMs = at("2026-11-24T10:14:59.999Z");
      expect(planHours(window({ nowMs }))).toEqual(["2026-11-24T08:00:00Z"]);
      expect(planHours(window({ nowMs, watermarkHourUtc: "2026-11-24T07:00:00Z" }))).toEqual([
        "2026-11-24T08:00:00Z",
      ]);
      expect(planHours(window({ nowMs, watermarkHourUtc: "2026-11-24T08:00:00Z" }))).toEqual([]);
    });

    it("never plans the current hour or the one that just ended before the lookback passed", () => {
      const hours = planHours(
        window({ nowMs: at("2026-11-24T10:59:59Z"), watermarkHourUtc: "2026-11-24T05:00:00Z" }),
      );
      expect(hours).not.toContain("2026-11-24T10:00:00Z");
      expect(hours.at(-1)).toBe("2026-11-24T09:00:00Z");
    });
  });

  describe("catch-up after an outage", () => {
    it("catches up 30 hours as 24 + 6 with no gap and no repeat, across a year boundary", () => {
      const watermark0 = "2026-12-31T06:00:00Z";
      // bound = watermark + 30 h = 2027-01-01T12:00Z; now − 75 min must floor to it.
      const nowMs = at("2027-01-01T13:15:00Z");
      const runs: string[][] = [];
      let watermark: string | undefined = watermark0;
      for (let i = 0; i < 4; i++) {
        const hours = planHours(window({ nowMs, watermarkHourUtc: watermark, maxHoursPerRun: 24 }));
        runs.push(hours);
        if (hours.length > 0) watermark = hours[hours.length - 1];
      }
      expect(runs.map((r) => r.length)).toEqual([24, 6, 0, 0]);
      const expected = Array.from({ length: 30 }, (_, i) => utcHour(watermark0, i + 1));
      expect(runs.flat()).toEqual(expected);
      expect(expected[0]).toBe("2026-12-31T07:00:00Z");
      expect(expected[29]).toBe("2027-01-01T12:00:00Z");
      expect(watermark).toBe("2027-01-01T12:00:00Z");
    });

    it("continues seamlessly when the clock advances between catch-up runs", () => {
      const watermark0 = "2026-11-24T00:00:00Z";
      const first = planHours(
        window({ nowMs: at("2026-11-25T07:15:00Z"), watermarkHourUtc: watermark0, maxHoursPerRun: 24 }),
      );
      const second = planHours(
        window({ nowMs: at("2026-11-25T08:15:00Z"), watermarkHourUtc: first.at(-1), maxHoursPerRun: 24 }),
      );
      expect(first).toHaveLength(24);
      expect(second).toEqual(Array.from({ length: 7 }, (_, i) => utcHour("2026-11-25T00:00:00Z", i + 1)));
    });
  });
});

describe("planWorkItems", () => {
  it("is hour-major: every entity of an hour before the next hour", () => {
    expect(
      planWorkItems(
        ["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z"],
        ["sessions", "machines", "users"],
        new Map(),
      ),
    ).toEqual([
      { entity: "sessions", hourUtc: "2026-11-24T08:00:00Z" },
      { entity: "machines", hourUtc: "2026-11-24T08:00:00Z" },
      { entity: "users", hourUtc: "2026-11-24T08:00:00Z" },
      { entity: "sessions", hourUtc: "2026-11-24T09:00:00Z" },
      { entity: "machines", hourUtc: "2026-11-24T09:00:00Z" },
      { entity: "users", hourUtc: "2026-11-24T09:00:00Z" },
    ]);
  });

  it("leaves out the entity-hours already published, and only those", () => {
    const published = new Map([
      ["2026-11-24T08:00:00Z", new Set(["sessions", "machines"])],
      ["2026-11-24T07:00:00Z", new Set(["users"])],
    ]);
    expect(
      planWorkItems(["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z"], ["sessions", "users"], published),
    ).toEqual([
      { entity: "users", hourUtc: "2026-11-24T08:00:00Z" },
      { entity: "sessions", hourUtc: "2026-11-24T09:00:00Z" },
      { entity: "users", hourUtc: "2026-11-24T09:00:00Z" },
    ]);
  });

  it("is empty when there are no hours", () => {
    expect(planWorkItems([], ["sessions"], new Map())).toEqual([]);
  });
});

describe("planRuns", () => {
  const entityHours = (count: number, entities = ["e0", "e1", "e2"]) =>
    Array.from({ length: count }, (_, index) => ({
      entity: entities[index % entities.length] as string,
      hourUtc: utcHour("2026-11-24T00:00:00Z", Math.floor(index / entities.length)),
    }));
  const cost = (weights: Record<string, number>) => (entity: string) => weights[entity] ?? 1;
  /** What each run is expected to cost in requests, at `weights` by entity. */
  const costsOf = (runs: RunItem[], weights: Record<string, number>) =>
    runs.map((run) => [run, ...run.rest].reduce((sum, { entity }) => sum + cost(weights)(entity), 0));
  const runOf = (items: readonly WorkItem[], positions: number[]) => {
    const [first, ...rest] = positions.map((position) => items[position] as WorkItem);
    return { ...(first as WorkItem), rest };
  };

  it("deals each entity's hours over the runs in turn when every entity-hour costs the same", () => {
    const items = entityHours(7);
    // e0 at 0, 3, 6 goes to each run; e1 and e2 go on in turn; each run is in hour order.
    expect(planRuns(items, 3)).toEqual([runOf(items, [0, 1, 5]), runOf(items, [2, 6]), runOf(items, [3, 4])]);
  });

  it("balances runs by expected requests, heaviest entity first, where runs of hours would not", () => {
    const items = entityHours(9, ["sessions", "machines", "users"]);
    // Three hours of a 4-request entity and two 1-request ones: 18 requests, 9 per run. Two runs of
    // consecutive hours would cost 11 and 7.
    const runs = planRuns(items, 2, cost({ sessions: 4 }));
    expect(runs).toEqual([runOf(items, [0, 5, 6]), runOf(items, [1, 2, 3, 4, 7, 8])]);
    expect(costsOf(runs, { sessions: 4 })).toEqual([9, 9]);
  });

  it("lists the runs' entity-hours back in hour order (entityHoursOf)", () => {
    const items = entityHours(7);
    // The runs are positions [0, 1, 5], [2, 6] and [3, 4]: hours 0, 0, 1 / 0, 2 / 1, 1.
    expect(entityHoursOf(planRuns(items, 3))).toEqual(
      [0, 1, 2, 5, 3, 4, 6].map((position) => items[position]),
    );
  });

  it("gives each entity-hour to the run with the fewest expected requests, and on a tie to the one with fewest entity-hours", () => {
    const abc = ["a", "b", "c"];
    // 11 entity-hours of 5, 4 and 1 requests (a 0 3 6 9, b 1 4 7 10, c 2 5 8): 39 requests, 13 a run.
    expect(
      costsOf(planRuns(entityHours(11, abc), 3, cost({ a: 5, b: 4, c: 1 })), { a: 5, b: 4, c: 1 }),
    ).toEqual([13, 13, 13]);
    // 8 of 1, 4 and 3: after b, c and two a, both runs cost 10, the first with four entity-hours, the second with
    // three; the last a goes to the second.
    const runs = planRuns(entityHours(8, abc), 2, cost({ a: 1, b: 4, c: 3 }));
    expect(runs.map((run) => 1 + run.rest.length)).toEqual([4, 4]);
  });

  it("is one run of everything for one iteration, and a run of one per entity-hour when there are fewer", () => {
    const items = entityHours(4);
    expect(planRuns(items, 1)).toEqual([{ ...items[0], rest: items.slice(1) }]);
    expect(planRuns(items, 1, cost({ e1: 5 }))).toEqual([{ ...items[0], rest: items.slice(1) }]);
    expect(planRuns(items, 10)).toEqual(items.map((item) => ({ ...item, rest: [] })));
    expect(planRuns([], 4)).toEqual([]);
  });

  it("makes more runs than iterations rather than one longer than MAX_ENTITY_HOURS_PER_RUN", () => {
    const runs = planRuns(entityHours(2 * MAX_ENTITY_HOURS_PER_RUN + 1), 1);
    const third = Math.ceil((2 * MAX_ENTITY_HOURS_PER_RUN + 1) / 3);
    expect(runs.map((run) => 1 + run.rest.length)).toEqual([third, third, third]);
    // However uneven the costs, no run holds more: two heavy entity-hours take two runs, and the third fills up
    // with light ones before the heavy runs get the rest.
    const uneven = [
      ...entityHours(2, ["heavy"]),
      ...entityHours(2 * MAX_ENTITY_HOURS_PER_RUN - 1, ["light"]),
    ];
    const lengths = planRuns(uneven, 1, cost({ heavy: 1_000 })).map((run) => 1 + run.rest.length);
    expect(lengths.sort((a, b) => a - b)).toEqual([50, 51, MAX_ENTITY_HOURS_PER_RUN]);
  });

  it("holds every entity-hour once, each run in hour order, runs by their first, within the iterations' runs", () => {
    fc.assert(
      fc.property(
        fc.nat(1000),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 3, maxLength: 3 }),
        fc.boolean(),
        (count, iterations, [w0, w1, w2], weighted) => {
          const items = entityHours(count);
          const weights: Record<string, number> = weighted ? { e0: w0 ?? 1, e1: w1 ?? 1, e2: w2 ?? 1 } : {};
          const runs = planRuns(items, iterations, cost(weights));
          const positionOf = new Map(
            items.map((item, position) => [`${item.entity} ${item.hourUtc}`, position]),
          );
          const positions = runs.map((run) =>
            [run, ...run.rest].map(({ entity, hourUtc }) => positionOf.get(`${entity} ${hourUtc}`) ?? -1),
          );
          expect(positions.flat().sort((a, b) => a - b)).toEqual(items.map((_, position) => position));
          for (const run of positions) expect(run).toEqual([...run].sort((a, b) => a - b));
          const firsts = positions.map((run) => run[0] as number);
          expect(firsts).toEqual([...firsts].sort((a, b) => a - b));
          if (count === 0) return;
          const lengths = runs.map((run) => 1 + run.rest.length);
          expect(Math.max(...lengths)).toBeLessThanOrEqual(MAX_ENTITY_HOURS_PER_RUN);
          const wanted = Math.max(iterations, Math.ceil(count / MAX_ENTITY_HOURS_PER_RUN));
          expect(runs).toHaveLength(Math.min(count, wanted));
          const costs = costsOf(runs, weights);
          if (Math.max(...lengths) < MAX_ENTITY_HOURS_PER_RUN) {
            // Each entity-hour goes to the cheapest run: no run costs more than the cheapest and one entity-hour.
            expect(Math.max(...costs) - Math.min(...costs)).toBeLessThanOrEqual(
              Math.max(1, ...Object.values(weights)),
            );
          }
          if (!weighted) {
            expect(Math.max(...lengths) - Math.min(...lengths)).toBeLessThanOrEqual(1);
            for (const entity of ["e0", "e1", "e2"]) {
              const perRun = runs.map(
                (run) => [run, ...run.rest].filter((item) => item.entity === entity).length,
              );
              expect(Math.max(...perRun) - Math.min(...perRun)).toBeLessThanOrEqual(1);
            }
          }
        },
      ),
    );
  });
});

describe("expectedRequestsOf", () => {
  it("counts an entity-hour's pages and the empty one after a full last page; one for an entity not on record", () => {
    const expected = expectedRequestsOf({ sessions: 3_000, machines: 300, users: 2_999, none: 0 }, 1_000);
    expect(["sessions", "machines", "users", "none", "unknown"].map(expected)).toEqual([4, 1, 3, 1, 1]);
    expect(expectedRequestsOf(undefined, 1_000)("sessions")).toBe(1);
  });
});

describe("lagHours", () => {
  const nowMs = at("2026-11-24T10:15:00Z"); // newest eligible hour: 09:00

  it("counts the hours between the watermark and the newest eligible hour", () => {
    expect(lagHours(nowMs, 75, "2026-11-24T05:00:00Z")).toBe(4);
    expect(lagHours(nowMs, 75, "2026-11-23T09:00:00Z")).toBe(24);
  });

  it("is 0 when caught up, without a watermark, or with a watermark ahead of the clock", () => {
    expect(lagHours(nowMs, 75, "2026-11-24T09:00:00Z")).toBe(0);
    expect(lagHours(nowMs, 75, undefined)).toBe(0);
    expect(lagHours(nowMs, 75, "2026-11-24T12:00:00Z")).toBe(0);
  });

  it("uses the same lookback bound as planHours", () => {
    expect(lagHours(at("2026-11-24T10:14:59.999Z"), 75, "2026-11-24T05:00:00Z")).toBe(3);
  });
});

describe("planBackfillHours", () => {
  const nowMs = at("2026-11-24T10:15:00Z"); // newest eligible hour: 09:00
  const plan = (from: string, to: string, maxHoursPerRun = 24) =>
    planBackfillHours(from, to, nowMs, 75, maxHoursPerRun);

  it("is every hour from..to, both included, up to the newest eligible hour", () => {
    expect(plan("2026-11-24T07:00:00Z", "2026-11-24T09:00:00Z")).toEqual([
      "2026-11-24T07:00:00Z",
      "2026-11-24T08:00:00Z",
      "2026-11-24T09:00:00Z",
    ]);
    expect(plan("2026-11-24T09:00:00Z", "2026-11-24T09:00:00Z")).toEqual(["2026-11-24T09:00:00Z"]);
  });

  it("refuses by name a bound that is not a UTC hour, or from after to", () => {
    for (const [from, to] of [
      ["2026-11-24T07", "2026-11-24T08:00:00Z"],
      ["2026-11-24T07:00:00Z", "08:00"],
      ["2026-11-24T08:00:00Z", "2026-11-24T07:00:00Z"],
    ] as const)
      expect(() => plan(from, to), `${from}..${to}`).toThrow(
        new InvalidInputError(`backfill.from (${from}) must be a UTC hour not after backfill.to (${to})`),
      );
  });

  it("refuses an hour not settled yet, naming the newest that is", () => {
    expect(() => plan("2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z")).toThrow(
      new InvalidInputError(
        "backfill.to (2026-11-24T10:00:00Z) is not settled yet: the newest hour that can be collected now is 2026-11-24T09:00:00Z",
      ),
    );
  });

  it("refuses more than MAX_HOURS_PER_RUN hours, and takes exactly that many", () => {
    expect(plan("2026-11-24T07:00:00Z", "2026-11-24T09:00:00Z", 3)).toHaveLength(3);
    expect(() => plan("2026-11-24T06:00:00Z", "2026-11-24T09:00:00Z", 3)).toThrow(
      new InvalidInputError(
        "a backfill covers at most MAX_HOURS_PER_RUN (3) hours; 2026-11-24T06:00:00Z..2026-11-24T09:00:00Z has 4: split it into several executions",
      ),
    );
  });
});
