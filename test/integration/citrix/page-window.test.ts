import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../functions/lib/aws/log";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import type { CitrixClientOptions } from "../../../functions/lib/citrix/citrix-client";
import { FIRST_PROBE_ROUNDS, FIRST_WINDOW } from "../../../functions/lib/citrix/page-window";
import type { CollectOutput, CollectProgress, WorkItem } from "../../../functions/lib/config/contracts";
import { type CollectDeps, collectRun } from "../../../functions/lib/feed/collector";
import { pageWindowHintKey } from "../../../functions/lib/feed/keys";
import { type CitrixSimulator, startCitrixSimulator } from "../../../stand-ins/citrix-simulator";
import { type LocalS3, startLocalS3 } from "../../../stand-ins/s3-server";
import { simulatorClient, stagedRecords } from "../../support/collect";
import { pageWindowHint } from "../../support/stand";

// The adaptive page window against a simulator that answers 429 above K concurrent requests per customer,
// as Citrix documents for its Monitor API: real waits (the client's own backoff), real HTTP, real S3.
const BUCKET = "window-test";
const CONTROL = "_control";
const HOURS = [
  "2026-11-24T05:00:00Z",
  "2026-11-24T06:00:00Z",
  "2026-11-24T07:00:00Z",
  "2026-11-24T08:00:00Z",
];
const HOUR = HOURS[3] ?? "";
const TOP = 100;

let simulator: CitrixSimulator;
let s3: LocalS3;
let store: S3Store;
let logs: Record<string, unknown>[] = [];
/** When the collector listed the finished entity-hours of its run (see runningIterations). */
let recounts: number[] = [];
beforeAll(async () => {
  simulator = await startCitrixSimulator({ volume: { sessions: 4000, machines: 300 }, pageLatencyMs: 20 });
  s3 = await startLocalS3({ buckets: [BUCKET] });
  store = new S3Store(s3.client(), BUCKET);
});
afterAll(async () => {
  await simulator.close();
  await s3.close();
});
beforeEach(async () => {
  logs = [];
  recounts = [];
  simulator.clearFaults();
  simulator.setOptions({ concurrencyLimit: undefined, pageLatencyMs: 20 });
  simulator.requests.length = 0;
  await store.deleteKeys(await store.listKeys(""));
});

function deps(runId: string, tuning: Partial<CitrixClientOptions> = {}): CollectDeps {
  // The store itself, but for a note of each listing.
  const counted = Object.create(store) as S3Store;
  counted.listKeys = (prefix, startAfter) => {
    recounts.push(Date.now());
    return store.listKeys(prefix, startAfter);
  };
  return {
    store: counted,
    citrix: simulatorClient(simulator, { timeoutMs: 5000, maxBackoffMs: 2000, ...tuning }),
    config: {
      controlPrefix: CONTROL,
      pageSize: TOP,
      maxPagesInFlight: 16,
      maxPagesPerEntityHour: 1000,
      partMaxRecords: 50_000,
      partMaxBytes: 8 * 2 ** 20,
      gzip: true,
      invocationReserveMs: 0,
      httpTimeoutMs: 0,
    },
    log: createLogger({ execution: runId }, (line) => {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    }),
  };
}

/** One invocation for the sessions (or `entity`) of `hourUtc` under run `runId`. */
function collect(
  runId: string,
  hourUtc: string,
  {
    remainingMs = 600_000,
    tuning = {},
    entity = "sessions",
    iterationsAtOnce,
    iterationsInAll,
    itemIndex,
    rest,
  }: {
    remainingMs?: number;
    tuning?: Partial<CitrixClientOptions>;
    entity?: string;
    iterationsAtOnce?: number;
    iterationsInAll?: number;
    itemIndex?: number;
    /** The entity-hours after it, when the Map item is a run of them. */
    rest?: WorkItem[];
  } = {},
): Promise<CollectOutput> {
  return collectRun(
    deps(runId, tuning),
    {
      runId,
      entity,
      hourUtc,
      ...(iterationsAtOnce ? { iterationsAtOnce } : {}),
      ...(iterationsInAll ? { iterationsInAll } : {}),
      ...(itemIndex === undefined ? {} : { itemIndex }),
      ...(rest === undefined ? {} : { rest }),
    },
    () => remainingMs,
  );
}

/** The `raw` records in the staging parts an output of run `runId` names, in order. */
const staged = (output: CollectOutput, runId: string) =>
  stagedRecords(s3.client(), BUCKET, CONTROL, runId, output);

/**
 * Collects `hours` side by side, one run each, as the Map's iterations do, and checks that each staged every
 * record once, in order.
 */
async function collectSideBySide(hours: string[]): Promise<void> {
  const iterationsAtOnce = hours.length;
  const outputs = await Promise.all(
    hours.map((hourUtc, index) => collect(`run-${index}`, hourUtc, { iterationsAtOnce })),
  );
  for (const [index, output] of outputs.entries()) {
    expect(await staged(output, `run-${index}`)).toEqual(simulator.records("sessions", output.hourUtc));
  }
}

/** A continuation's progress: ten full pages read in an earlier invocation, which ended with `window`. */
const resumedAt = (window: { size: number; limit: number }): CollectProgress => ({
  cursor: { skip: 1000 },
  segments: [],
  parts: 0,
  records: 1000,
  pages: 10,
  invocations: 1,
  largestPage: TOP,
  window: { ...window, probeRounds: FIRST_PROBE_ROUNDS },
});
const hint = async () => JSON.parse((await store.getText(pageWindowHintKey(CONTROL)))?.body ?? "{}");
const storeHint = (limit: number, throttled: boolean) =>
  store.put(
    pageWindowHintKey(CONTROL),
    pageWindowHint(Date.now(), { limit, throttled, probeRounds: FIRST_PROBE_ROUNDS }),
    "application/json",
  );
const dataRequests = () => simulator.requests.filter((entry) => entry.entity !== undefined);
const throttled = () => dataRequests().filter((entry) => entry.status === 429);

describe("the adaptive page window", () => {
  it("without a limit opens up to MAX_PAGES_IN_FLIGHT and reads every record once, in order", async () => {
    const output = await collect("run-1", HOUR);
    expect(await staged(output, "run-1")).toEqual(simulator.records("sessions", HOUR));
    // 40 pages double from four up to 16 at most; the machine's load decides how far.
    expect(simulator.peakConcurrentRequests).toBeGreaterThan(FIRST_WINDOW);
    expect(throttled()).toEqual([]);
    // Alone, it has no share to recount; and it hands no counts on that it was not given.
    expect(recounts).toEqual([]);
    expect(output).not.toHaveProperty("iterationsAtOnce");
    expect(output).not.toHaveProperty("iterationsInAll");
    // Never refused: the most it had in flight at once (at least what reached the API together) is where
    // the next execution's iterations start from.
    const served = await hint();
    expect(served).toMatchObject({ throttled: false });
    expect(served.limit).toBeGreaterThanOrEqual(simulator.peakConcurrentRequests);
    expect(served.limit).toBeLessThanOrEqual(16);
  });

  it("settles at the API's limit with few 429s, and shares it for the iterations that start later", async () => {
    simulator.setOptions({ concurrencyLimit: { requests: 3 } });
    simulator.resetConcurrency();
    // An unreadable hint is none: the window finds the limit afresh, and the hint is written anew.
    await store.put(pageWindowHintKey(CONTROL), "{not json", "application/json");
    const output = await collect("run-1", HOUR);

    expect(await staged(output, "run-1")).toEqual(simulator.records("sessions", HOUR));
    // 40 pages: the overshoot of slow start, and at most one refused probe.
    expect(throttled().length).toBeGreaterThanOrEqual(1);
    expect(throttled().length).toBeLessThanOrEqual(3);
    // One at a time would be at most 1 (the ramp-up and the refusals' retries are in the mean too).
    expect(simulator.meanConcurrentRequests).toBeGreaterThan(1.5);
    expect(await hint()).toMatchObject({ limit: 3, throttled: true, probeRounds: FIRST_PROBE_ROUNDS });

    // The next entity-hour starts at the shared window: no slow start, so no overshoot.
    simulator.requests.length = 0;
    const next = await collect("run-2", HOURS[2] ?? "");
    expect(await staged(next, "run-2")).toEqual(simulator.records("sessions", HOURS[2] ?? ""));
    expect(throttled()).toEqual([]);
    expect(
      logs.some((line) => line.message === "starting from the page window the Citrix API last allowed"),
    ).toBe(true);
  });

  it("learns that the API serves TOP_N a page, so a later entity-hour ends at its short first page", async () => {
    simulator.setOptions({ volume: { sessions: 4000, machines: 30 } });
    try {
      await collect("run-1", HOUR);
      expect(await hint()).toMatchObject({ servedTop: TOP });
      simulator.requests.length = 0;
      const output = await collect("run-2", HOUR, { entity: "machines" });
      expect(await staged(output, "run-2")).toEqual(simulator.records("machines", HOUR));
      // 30 records: without the hint, $skip=30 would be asked too (the API might cap $top at 30).
      expect(dataRequests().map((entry) => entry.skip)).toEqual([0]);
    } finally {
      simulator.setOptions({ volume: { sessions: 4000, machines: 300 } });
    }
  });

  it("sends the first request while the hint is read, and still ends at the short page the hint makes the end", async () => {
    simulator.setOptions({ volume: { sessions: 4000, machines: 30 } });
    try {
      await store.put(
        pageWindowHintKey(CONTROL),
        pageWindowHint(Date.now(), { limit: 4, throttled: true, servedTop: TOP }),
        "application/json",
      );
      // The hint's read is held up until the simulator has the first request (or 2 s have passed).
      const requestsWhenHintRead: number[] = [];
      const held = deps("run-1");
      const getText = held.store.getText.bind(held.store);
      held.store.getText = async (key) => {
        if (key === pageWindowHintKey(CONTROL)) {
          for (let waited = 0; dataRequests().length === 0 && waited < 2000; waited += 10) await sleep(10);
          requestsWhenHintRead.push(dataRequests().length);
        }
        return getText(key);
      };
      const output = await collectRun(
        held,
        { runId: "run-1", entity: "machines", hourUtc: HOUR },
        () => 600_000,
      );
      expect(requestsWhenHintRead[0]).toBe(1);
      expect(await staged(output, "run-1")).toEqual(simulator.records("machines", HOUR));
      // 30 records: the hint, read after the request went out, still says the API serves TOP_N a page.
      expect(dataRequests().map((entry) => entry.skip)).toEqual([0]);
    } finally {
      simulator.setOptions({ volume: { sessions: 4000, machines: 300 } });
    }
  });

  it("learns no limit from a refusal of its first request answered before the hint was read", async () => {
    await storeHint(8, true);
    simulator.inject({ kind: "status", status: 429, times: 1, skip: 0 });
    const held = deps("run-1");
    const getText = held.store.getText.bind(held.store);
    held.store.getText = async (key) => {
      if (key === pageWindowHintKey(CONTROL))
        for (let waited = 0; throttled().length === 0 && waited < 2000; waited += 10) await sleep(10);
      return getText(key);
    };
    const output = await collectRun(
      held,
      { runId: "run-1", entity: "sessions", hourUtc: HOUR },
      () => 600_000,
    );
    expect(await staged(output, "run-1")).toEqual(simulator.records("sessions", HOUR));
    expect(throttled()).toHaveLength(1);
    // One request refused alone, by a window that did not know its share yet, is not a limit of one.
    expect(await hint()).toMatchObject({ limit: 8, throttled: true });
  });

  it("resumes with the window the previous invocation ended with, whatever the hint says", async () => {
    simulator.setOptions({ concurrencyLimit: { requests: 2 } });
    await storeHint(8, true);
    const output = await collectRun(
      deps("run-1"),
      { runId: "run-1", entity: "sessions", hourUtc: HOUR, progress: resumedAt({ size: 2, limit: 2 }) },
      () => 600_000,
    );
    expect(output.done).toBe(true);
    expect(output.progress?.records).toBe(simulator.recordCount("sessions", HOUR));
    // At its own two requests, never the hint's eight.
    expect(throttled()).toEqual([]);
  });

  it("starts each entity-hour of a run at its share of a limit the API enforced, not part way to a probe", async () => {
    simulator.setOptions({ concurrencyLimit: { requests: 2 } });
    await storeHint(2, true);
    // Each entity-hour is 40 pages: under the 128 full pages (32 windows of at least four) a window waits at its
    // limit before probing above it. Carried on from one to the next, the window of the run's fourth entity-hour
    // would probe, and be refused.
    const [first, ...rest] = HOURS.map((hourUtc) => ({ entity: "sessions", hourUtc }));
    const output = await collectRun(
      deps("run-1"),
      { runId: "run-1", ...(first as WorkItem), rest },
      () => 600_000,
    );
    expect(output.done).toBe(true);
    expect(output.finished.map((figures) => figures.records)).toEqual([4000, 4000, 4000, 4000]);
    expect(throttled()).toEqual([]);
    expect(simulator.meanConcurrentRequests).toBeGreaterThan(1.5);
  });

  it("shares a refusal of a resumed invocation: its window is known from the start", async () => {
    simulator.setOptions({ concurrencyLimit: { requests: 2 } });
    await storeHint(8, true);
    await collectRun(
      deps("run-1"),
      { runId: "run-1", entity: "sessions", hourUtc: HOUR, progress: resumedAt({ size: 4, limit: 4 }) },
      () => 600_000,
    );
    expect(throttled().length).toBeGreaterThan(0);
    expect((await hint()).limit).toBeLessThan(4);
  });

  it("asks past a short first page while nothing says the API serves TOP_N a page", async () => {
    simulator.setOptions({ volume: { sessions: 4000, machines: 30 } });
    try {
      await storeHint(4, true);
      const output = await collect("run-1", HOUR, { entity: "machines" });
      expect(await staged(output, "run-1")).toEqual(simulator.records("machines", HOUR));
      expect(dataRequests().map((entry) => entry.skip)).toEqual([0, 30]);
      expect(await hint()).not.toHaveProperty("servedTop");
    } finally {
      simulator.setOptions({ volume: { sessions: 4000, machines: 300 } });
    }
  });

  it("shares a known limit of 4 among three entity-hours side by side: every record once, few 429s", async () => {
    simulator.setOptions({ concurrencyLimit: { requests: 4 } });
    await storeHint(4, true);
    await collectSideBySide(HOURS.slice(1));
    const requests = dataRequests().length;
    expect(requests).toBeGreaterThanOrEqual(3 * 41);
    // Each holds its share, one request (3 of the 4), and none probes above it within 41 pages.
    expect(throttled()).toEqual([]);
    expect(
      logs.some((line) => line.message === "starting from the page window the Citrix API last allowed"),
    ).toBe(true);
  });

  it("gives the remainder of a known limit to the first items when every item runs at once", async () => {
    simulator.setOptions({ concurrencyLimit: { requests: 4 } });
    simulator.resetConcurrency();
    await storeHint(4, true);
    const outputs = await Promise.all(
      HOURS.slice(1).map((hourUtc, itemIndex) =>
        collect("run-1", hourUtc, { iterationsAtOnce: 3, iterationsInAll: 3, itemIndex }),
      ),
    );
    for (const output of outputs) {
      expect(await staged(output, "run-1")).toEqual(simulator.records("sessions", output.hourUtc));
    }
    // Shares of 2, 1 and 1: the whole limit of 4, not 3 of it, and no refusal.
    const starts = logs.filter(
      (line) => line.message === "starting from the page window the Citrix API last allowed",
    );
    expect(starts.map((line) => line.size).sort()).toEqual([1, 1, 2]);
    expect(simulator.peakConcurrentRequests).toBe(4);
    expect(throttled()).toEqual([]);
  });

  it("gives the last iteration running the shares of those that finished", async () => {
    // 40 sessions pages at 100 ms beside two machines entity-hours of three pages, all of one run.
    simulator.setOptions({ concurrencyLimit: { requests: 3 }, pageLatencyMs: 100 });
    await storeHint(3, true);
    const shared = { iterationsAtOnce: 3, iterationsInAll: 3 };
    const startedMs = Date.now();
    const outputs = await Promise.all([
      collect("run-1", HOUR, shared),
      collect("run-1", HOURS[1] ?? "", { ...shared, entity: "machines" }),
      collect("run-1", HOURS[2] ?? "", { ...shared, entity: "machines" }),
    ]);
    for (const output of outputs) {
      expect(await staged(output, "run-1")).toEqual(simulator.records(output.entity, output.hourUtc));
    }
    // At one request each while three ran, at the whole limit once alone: within a recount (2 s) of the end.
    const grown = logs.find(
      (line) => line.message === "fewer iterations share the Citrix API's limit; a larger share for this one",
    );
    expect(grown).toMatchObject({ entity: "sessions", iterations: 1, size: 3, limit: 3 });
    expect(simulator.peakConcurrentRequests).toBeGreaterThanOrEqual(3);
    expect(throttled()).toEqual([]);
    // One listing 2 s after the start at the soonest, then none once it runs alone.
    expect(recounts.length).toBeGreaterThanOrEqual(1);
    expect(recounts.length).toBeLessThanOrEqual(2);
    expect(Math.min(...recounts) - startedMs).toBeGreaterThanOrEqual(1900);
    // The Choice loop hands both counts to the next invocation.
    for (const output of outputs) expect(output).toMatchObject(shared);
  });

  it("counts a run as finished when its last entity-hour is, not when one of its entity-hours is", async () => {
    // Two runs side by side at one request each: the first's two machines entity-hours finish within a second,
    // the second run (one sessions entity-hour) before the first run's sessions entity-hour.
    simulator.setOptions({ concurrencyLimit: { requests: 2 }, pageLatencyMs: 100 });
    await storeHint(2, true);
    const shared = { iterationsAtOnce: 2, iterationsInAll: 2 };
    const firstRun = [
      { entity: "machines", hourUtc: HOURS[1] ?? "" },
      { entity: "sessions", hourUtc: HOURS[2] ?? "" },
    ];
    const outputs = await Promise.all([
      collect("run-1", HOURS[0] ?? "", { ...shared, itemIndex: 0, entity: "machines", rest: firstRun }),
      collect("run-1", HOUR, { ...shared, itemIndex: 1, rest: [] }),
    ]);
    expect(outputs.map((output) => output.finished.length)).toEqual([3, 1]);
    // The second run never ran beside fewer others: the first had not finished while it paged.
    const grown = logs.filter(
      (line) => line.message === "fewer iterations share the Citrix API's limit; a larger share for this one",
    );
    expect(grown.filter((line) => line.hour === HOUR)).toEqual([]);
    expect(throttled()).toEqual([]);
  });

  it("with more entity-hours than the API serves at once, reads every record once and lowers the limit", async () => {
    simulator.setOptions({ concurrencyLimit: { requests: 2 } });
    await storeHint(4, true);
    await collectSideBySide(HOURS);
    // Four iterations at one request each, refused with nothing else of their own in flight: fewer next time.
    expect(throttled().length).toBeGreaterThan(0);
    expect(await hint()).toMatchObject({ throttled: true, limit: 3 });
  });

  it("holds back every request of the window until a Retry-After has passed", async () => {
    simulator.setOptions({ concurrencyLimit: { requests: 2, retryAfterSeconds: 1 } });
    const output = await collect("run-1", HOUR);

    expect(await staged(output, "run-1")).toEqual(simulator.records("sessions", HOUR));
    const refusals = throttled();
    expect(refusals.length).toBeGreaterThanOrEqual(1);
    for (const refusal of refusals) {
      // Requests already on their way may arrive just after; none is sent during the second that follows.
      const during = dataRequests().filter(
        (entry) => entry.at > refusal.at + 100 && entry.at < refusal.at + 950,
      );
      expect(during).toEqual([]);
    }
  });

  it("hands over instead of waiting when a Retry-After reaches past the invocation's time budget", async () => {
    simulator.setOptions({ concurrencyLimit: { requests: 2, retryAfterSeconds: 600 } });
    const startedMs = Date.now();
    const output = await collect("run-1", HOUR, { remainingMs: 20_000 });

    // Neither the refused request nor the others wait ten minutes: the invocation ends, and hands the wait on.
    expect(Date.now() - startedMs).toBeLessThan(10_000);
    expect(output.done).toBe(false);
    expect(Date.parse(output.progress?.notBefore ?? "")).toBeGreaterThan(startedMs + 590_000);
    expect(await staged(output, "run-1")).toEqual(
      simulator.records("sessions", HOUR).slice(0, output.progress?.records),
    );
  });

  it("gives up on a page the API always refuses after the client's attempts, and hands over", async () => {
    simulator.inject({ kind: "status", status: 429, times: 100_000, skip: 1500 });
    const output = await collect("run-1", HOUR, { tuning: { maxAttempts: 3, maxBackoffMs: 10 } });

    // Refusals paced by the window skip the backoff, but each is an attempt: three, then the hand-over.
    expect(dataRequests().filter((entry) => entry.skip === 1500)).toHaveLength(3);
    expect(output.done).toBe(false);
    expect(output.progress?.records).toBe(1500);
    expect(await staged(output, "run-1")).toEqual(simulator.records("sessions", HOUR).slice(0, 1500));
  });
});
