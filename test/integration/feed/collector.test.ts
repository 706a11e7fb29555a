import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../../../functions/lib/aws/log";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import type { CitrixClient } from "../../../functions/lib/citrix/citrix-client";
import {
  type CollectInput,
  type CollectOutput,
  type CollectProgress,
  collectedResultSchema,
} from "../../../functions/lib/config/contracts";
import { CitrixUnavailableError, StorageUnavailableError } from "../../../functions/lib/config/errors";
import { type CollectDeps, collectRun } from "../../../functions/lib/feed/collector";
import {
  collectedResultKey,
  pageWindowHintKey,
  runFinishedKey,
  runFinishedPrefix,
} from "../../../functions/lib/feed/keys";
import { type CitrixSimulator, startCitrixSimulator } from "../../../stand-ins/citrix-simulator";
import { type LocalS3, startLocalS3 } from "../../../stand-ins/s3-server";
import { simulatorClient, stagedRecords } from "../../support/collect";

// collectRun against the Citrix simulator and the local S3 server, without the engine: one
// invocation at a time, its time budget and input chosen by the test.
const BUCKET = "collector-test";
const CONTROL = "_control";
const HOUR = "2026-11-24T08:00:00Z";
const LONG = () => 600_000;

let simulator: CitrixSimulator;
let s3: LocalS3;
let store: S3Store;
beforeAll(async () => {
  simulator = await startCitrixSimulator({ volume: { sessions: 2500, users: 300, machines: 0 } });
  s3 = await startLocalS3({ buckets: [BUCKET] });
  store = new S3Store(s3.client(), BUCKET);
});
afterAll(async () => {
  await simulator.close();
  await s3.close();
});
beforeEach(async () => {
  sleeps = [];
  logs = [];
  simulator.clearFaults();
  simulator.setOptions({ paging: "skip", pageLatencyMs: 0 });
  await store.deleteKeys(await store.listKeys(""));
});

let sleeps: number[] = [];
let logs: Record<string, unknown>[] = [];

/** A client of `api` with the test's clock, whose backoff pauses are recorded instead of waited. */
function citrixFor(api: CitrixSimulator, now?: () => number): CitrixClient {
  return simulatorClient(api, {
    timeoutMs: 2000,
    maxAttempts: 2,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    now,
  });
}

function deps(config: Partial<CollectDeps["config"]> = {}, now?: () => number, api = simulator): CollectDeps {
  return {
    store,
    citrix: citrixFor(api, now),
    config: {
      controlPrefix: CONTROL,
      pageSize: 1000,
      maxPagesInFlight: 1,
      maxPagesPerEntityHour: 1000,
      partMaxRecords: 50_000,
      partMaxBytes: 8 * 2 ** 20,
      gzip: false,
      invocationReserveMs: 0,
      httpTimeoutMs: 0,
      ...config,
    },
    log: createLogger({}, (line) => {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    }),
    now,
  };
}

const emptyProgress: CollectProgress = {
  cursor: { skip: 0 },
  segments: [],
  parts: 0,
  records: 0,
  pages: 0,
  invocations: 0,
  largestPage: 0,
};

const start = (entity = "sessions"): CollectInput => ({ runId: "run-1", entity, hourUtc: HOUR });

/** The records in the staging parts a result names, in order. */
const staged = (output: CollectOutput) => stagedRecords(s3.client(), BUCKET, CONTROL, "run-1", output);

describe("collectRun", () => {
  it("collects a whole hour in one invocation and writes its result for Commit", async () => {
    const output = await collectRun(deps({ partMaxRecords: 1000 }), start(), LONG);

    expect(output).toMatchObject({ runId: "run-1", entity: "sessions", hourUtc: HOUR, done: true });
    expect(output.progress).toMatchObject({ records: 2500, parts: 3, pages: 3, invocations: 1 });
    expect(output.progress?.segments).toEqual([
      { attempt: expect.stringMatching(/^[0-9a-f]{8}$/), firstPart: 0, parts: 3, compressed: false },
    ]);
    expect(await staged(output)).toEqual(simulator.records("sessions", HOUR));
    const result = JSON.parse(
      (await store.getText(collectedResultKey(CONTROL, "run-1", "sessions", HOUR)))?.body ?? "",
    );
    expect(result).toEqual({
      entity: "sessions",
      hourUtc: HOUR,
      records: 2500,
      parts: 3,
      segments: output.progress?.segments,
    });
  });

  it("an empty hour is done after one request, with no parts and a result saying so", async () => {
    const output = await collectRun(deps(), start("machines"), LONG);
    expect(output.done).toBe(true);
    expect(output.progress).toMatchObject({ records: 0, parts: 0, pages: 1, segments: [] });
    expect(await store.getText(collectedResultKey(CONTROL, "run-1", "machines", HOUR))).toBeDefined();
  });

  it("hands over when its time is spent, after one page at least, and the next invocation continues", async () => {
    let clock = 0;
    const now = () => clock;
    // Each page takes "1 s"; the budget allows starting one request after the first page.
    const slow = deps({ pageSize: 500, partMaxRecords: 400 }, now);
    const requests = simulator.requests.length;
    const timed = { ...slow, citrix: slow.citrix };
    const getPage = timed.citrix.getPage.bind(timed.citrix);
    timed.citrix.getPage = async (...args) => {
      clock += 1000;
      return getPage(...args);
    };
    const first = await collectRun(timed, start(), () => 1500);
    expect(first.done).toBe(false);
    expect(first.progress?.pages).toBe(2);
    expect(first.progress?.cursor).toEqual({ skip: 1000 });
    expect(await store.getText(collectedResultKey(CONTROL, "run-1", "sessions", HOUR))).toBeUndefined();

    // Even with no time at all, an invocation pages once: the Choice loop always makes progress.
    const second = await collectRun(timed, { ...start(), progress: first.progress }, () => 0);
    expect(second.progress?.pages).toBe(3);
    expect(second.progress?.invocations).toBe(2);

    const third = await collectRun(timed, { ...start(), progress: second.progress }, LONG);
    expect(third.done).toBe(true);
    expect(third.progress?.invocations).toBe(3);
    expect(third.progress?.segments.map((segment) => segment.firstPart)).toEqual([0, 3, 5]);
    expect(third.progress?.parts).toBe(
      third.progress?.segments.reduce((sum, segment) => sum + segment.parts, 0),
    );
    expect(await staged(third)).toEqual(simulator.records("sessions", HOUR));
    expect(simulator.requests.length).toBeGreaterThan(requests);
  });

  it("writes gzip parts under .ndjson.gz names when GZIP is on", async () => {
    const output = await collectRun(deps({ gzip: true }), start("users"), LONG);
    expect(output.progress?.segments[0]?.compressed).toBe(true);
    expect(await staged(output)).toEqual(simulator.records("users", HOUR));
  });

  it("guesses no page ahead when the API caps pages below TOP_N", async () => {
    // The API caps pages at 800 below TOP_N 1000: the first page is short, so nothing is guessed ahead.
    const capped = await startCitrixSimulator({ volume: { sessions: 2500 }, maxPageSize: 800 });
    try {
      const d = deps({ maxPagesInFlight: 4 }, undefined, capped);
      const output = await collectRun(d, start(), LONG);
      expect(output.done).toBe(true);
      expect(output.progress?.records).toBe(2500);
      const skips = capped.requests.filter((request) => request.entity).map((request) => request.skip);
      // 800, 800, 800, then 100 after a longer page: the end, with no request guessed ahead.
      expect(skips).toEqual([0, 800, 1600, 2400]);
    } finally {
      await capped.close();
    }
  });

  it("in $skip paging with full pages keeps several requests in flight and collects every record once", async () => {
    const before = simulator.requests.length;
    const output = await collectRun(deps({ maxPagesInFlight: 3, pageSize: 500 }), start(), LONG);
    expect(output.progress?.records).toBe(2500);
    expect(await staged(output)).toEqual(simulator.records("sessions", HOUR));
    const skips = simulator.requests
      .slice(before)
      .filter((request) => request.entity)
      .map((request) => request.skip);
    // Every page once, plus guesses past the end, which were dropped.
    for (const skip of [0, 500, 1000, 1500, 2000, 2500])
      expect(skips.filter((s) => s === skip)).toHaveLength(1);
    expect(skips.filter((skip) => skip !== undefined && skip > 2500).length).toBeGreaterThan(0);
    expect(skips.length).toBeLessThanOrEqual(6 + 2);
  });

  it("hands over on an outage after pages, keeping them, and fails at once on an outage before any", async () => {
    simulator.inject({ kind: "status", status: 503, times: 4, after: 1, entity: "sessions" });
    const handed = await collectRun(deps({ pageSize: 1000 }), start(), LONG);
    expect(handed.done).toBe(false);
    expect(handed.progress?.pages).toBe(1);
    expect(handed.progress?.records).toBe(1000);
    expect(handed.progress?.segments).toHaveLength(1);

    simulator.inject({ kind: "status", status: 503, times: 2, entity: "users" });
    await expect(collectRun(deps(), start("users"), LONG)).rejects.toBeInstanceOf(CitrixUnavailableError);
    expect(await store.listKeys(`${CONTROL}/staging/run-1/users/`)).toEqual([]);
  });

  it("stops requesting HTTP_TIMEOUT_MS + INVOCATION_RESERVE_MS before the end of its time, and says where", async () => {
    let clock = 0;
    const d = deps({ pageSize: 500, invocationReserveMs: 4000, httpTimeoutMs: 4000 }, () => clock);
    const getPage = d.citrix.getPage.bind(d.citrix);
    d.citrix.getPage = async (...args) => {
      clock += 1000;
      return getPage(...args);
    };
    // 10 s left, 8 s of them kept back: requests may start until 2 s; each page takes 1 s.
    const output = await collectRun(d, start(), () => 10_000);
    expect(output.done).toBe(false);
    expect(output.progress?.pages).toBe(2);
    expect(
      logs.find((line) => line.message === "time budget spent, continuing in the next invocation"),
    ).toMatchObject({
      entity: "sessions",
      hour: HOUR,
      pages: 2,
    });
  });

  it("waits before its first request until the time the previous invocation was told to wait for", async () => {
    let clock = 1_000_000;
    const d = deps({}, () => clock);
    const progress = {
      cursor: { skip: 0 },
      segments: [],
      parts: 0,
      records: 0,
      pages: 0,
      invocations: 1,
      largestPage: 0,
      notBefore: new Date(clock + 5000).toISOString(),
    };
    const output = await collectRun(d, { ...start("users"), progress }, LONG);
    expect(sleeps[0]).toBe(5000);
    expect(output.done).toBe(true);
    // Honoured once: the output asks nothing of a next invocation.
    expect(output.progress?.notBefore).toBeUndefined();
    clock += 0;
  });

  it("hands the time a 429 asked for to the next invocation", async () => {
    let clock = 1_000_000;
    simulator.inject({
      kind: "status",
      status: 429,
      retryAfter: "120",
      times: 5,
      after: 1,
      entity: "sessions",
    });
    const output = await collectRun(
      deps({}, () => clock),
      start(),
      LONG,
    );
    expect(output.done).toBe(false);
    expect(output.progress?.notBefore).toBe(new Date(clock + 120_000).toISOString());
    expect(
      logs.find((line) => line.message === "Citrix API unavailable, handing over to the next invocation"),
    ).toMatchObject({
      reason: expect.stringContaining("HTTP 429"),
    });
    clock += 0;
  });

  it("drops the repeat of a server that ignores $skip, collecting its only page once", async () => {
    simulator.inject({ kind: "ignoreSkip", times: 1, entity: "users", skip: 300 });
    const output = await collectRun(deps(), start("users"), LONG);
    expect(output.done).toBe(true);
    expect(output.progress?.records).toBe(300);
    expect(await staged(output)).toEqual(simulator.records("users", HOUR));
    expect(
      logs.find(
        (line) => line.message === "the API ignored $skip and served its only page again; dropped the repeat",
      ),
    ).toMatchObject({
      url: expect.stringContaining("$skip=300"),
    });
  });

  it("aborts the pages it guessed ahead once the hour is done", async () => {
    // The guess past the end is slow to answer: it is still in flight when the short page ends the hour.
    simulator.inject({ kind: "slow", delayMs: 2000, times: 2, entity: "sessions", skip: 3000 });
    const before = simulator.requests.length;
    const output = await collectRun(deps({ maxPagesInFlight: 4, pageSize: 1000 }), start(), LONG);
    expect(output.progress?.records).toBe(2500);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const slowGuess = simulator.requests.slice(before).find((request) => request.skip === 3000);
    expect(slowGuess?.aborted).toBe(true);
  });
});

describe("collectRun over a run of entity-hours", () => {
  const NEXT_HOUR = "2026-11-24T09:00:00Z";
  const run = (itemIndex?: number): CollectInput => ({
    runId: "run-1",
    entity: "sessions",
    hourUtc: HOUR,
    rest: [
      { entity: "users", hourUtc: HOUR },
      { entity: "machines", hourUtc: HOUR },
      { entity: "sessions", hourUtc: NEXT_HOUR },
    ],
    ...(itemIndex === undefined ? {} : { itemIndex }),
  });
  const resultOf = async (entity: string, hourUtc: string) =>
    (await store.getText(collectedResultKey(CONTROL, "run-1", entity, hourUtc)))?.body;
  /** Each finished entity-hour's result names parts that hold exactly the records the simulator served. */
  const expectEveryFinishedStaged = async (output: CollectOutput) => {
    for (const { entity, hourUtc } of output.finished) {
      const result = collectedResultSchema.parse(JSON.parse((await resultOf(entity, hourUtc)) ?? ""));
      const progress = { ...emptyProgress, segments: result.segments };
      expect(await staged({ ...output, entity, hourUtc, progress })).toEqual(
        simulator.records(entity, hourUtc),
      );
    }
  };

  it("collects every entity-hour of the run in one invocation, each with its result, and marks the run finished", async () => {
    const output = await collectRun(deps({ partMaxRecords: 1000 }), run(2), LONG);

    expect(output).toMatchObject({
      entity: "sessions",
      hourUtc: NEXT_HOUR,
      rest: [],
      itemIndex: 2,
      done: true,
    });
    expect(output.finished).toEqual([
      { entity: "sessions", hourUtc: HOUR, pages: 3, records: 2500, parts: 3, invocations: 1 },
      // One page: the entity-hour before showed that the API serves TOP_N in full, so a short page is the end.
      { entity: "users", hourUtc: HOUR, pages: 1, records: 300, parts: 1, invocations: 1 },
      { entity: "machines", hourUtc: HOUR, pages: 1, records: 0, parts: 0, invocations: 1 },
      { entity: "sessions", hourUtc: NEXT_HOUR, pages: 3, records: 2500, parts: 3, invocations: 1 },
    ]);
    expect(output.runTotals).toEqual({ entityHours: 4, pages: 8, records: 5300, parts: 7 });
    await expectEveryFinishedStaged(output);
    expect(await store.listKeys(runFinishedPrefix(CONTROL, "run-1"))).toEqual([
      runFinishedKey(CONTROL, "run-1", 2),
    ]);
  });

  it("sends the next entity-hour's first request while the one before writes its result, which follows its parts", async () => {
    const puts: string[] = [];
    let releaseResult: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      releaseResult = resolve;
    });
    const firstResult = collectedResultKey(CONTROL, "run-1", "sessions", HOUR);
    class WatchedStore extends S3Store {
      override async put(...args: Parameters<S3Store["put"]>) {
        if (args[0] === firstResult) await held;
        puts.push(args[0]);
        return super.put(...args);
      }
    }
    const d = { ...deps({ partMaxRecords: 1000 }), store: new WatchedStore(store.client, BUCKET) };
    const before = simulator.requests.length;
    const collecting = collectRun(d, { ...run(), rest: [{ entity: "users", hourUtc: HOUR }] }, LONG);
    // The result of the first entity-hour is held back: the second's request goes out all the same.
    await vi.waitFor(
      () => expect(simulator.requests.slice(before).some((request) => request.entity === "users")).toBe(true),
      { timeout: 2000 },
    );
    expect(await resultOf("sessions", HOUR)).toBeUndefined();
    releaseResult();
    const output = await collecting;
    expect(output.done).toBe(true);
    const staging = (entity: string) => puts.filter((key) => key.includes(`/staging/run-1/${entity}/`));
    expect(staging("sessions")).toHaveLength(3);
    // Each result is written after every part it names.
    expect(puts.indexOf(firstResult)).toBeGreaterThan(
      Math.max(...staging("sessions").map((key) => puts.indexOf(key))),
    );
    const usersResult = collectedResultKey(CONTROL, "run-1", "users", HOUR);
    expect(puts.indexOf(usersResult)).toBeGreaterThan(puts.indexOf(staging("users")[0] ?? ""));
  });

  it("hands the next entity-hour over when its time is spent, and the next invocation collects the rest", async () => {
    let clock = 0;
    const d = deps({}, () => clock);
    const getPage = d.citrix.getPage.bind(d.citrix);
    d.citrix.getPage = async (...args) => {
      clock += 1000;
      return getPage(...args);
    };
    // Time for the three pages of the first entity-hour, none for the second.
    const first = await collectRun(d, run(), () => 2500);
    expect(first).toMatchObject({ done: false, entity: "users", hourUtc: HOUR });
    expect(first.rest).toEqual(run().rest?.slice(1));
    expect(first.progress).toMatchObject({ pages: 0, records: 0, parts: 0, invocations: 0 });
    expect(first.finished.map(({ entity }) => entity)).toEqual(["sessions"]);
    expect(await resultOf("users", HOUR)).toBeUndefined();

    const second = await collectRun(d, first, LONG);
    expect(second.done).toBe(true);
    expect(second.finished.map(({ entity, hourUtc }) => `${entity} ${hourUtc}`)).toEqual([
      `users ${HOUR}`,
      `machines ${HOUR}`,
      `sessions ${NEXT_HOUR}`,
    ]);
    expect(second.finished[0]?.invocations).toBe(1);
    expect(second.runTotals).toEqual({ entityHours: 4, pages: 8, records: 5300, parts: 3 });
  });

  it("resumes the entity-hour it was handed part way, and starts the next of the run afresh", async () => {
    let clock = 0;
    const d = deps({ partMaxRecords: 1000 }, () => clock);
    const getPage = d.citrix.getPage.bind(d.citrix);
    d.citrix.getPage = async (...args) => {
      clock += 1000;
      return getPage(...args);
    };
    const twoOfOne = { ...run(), rest: [{ entity: "users", hourUtc: HOUR }] };
    // Time for two of the first entity-hour's three pages.
    const first = await collectRun(d, twoOfOne, () => 1500);
    expect(first).toMatchObject({ done: false, entity: "sessions", hourUtc: HOUR, rest: twoOfOne.rest });
    expect(first.progress).toMatchObject({ pages: 2, records: 2000, parts: 2, invocations: 1 });
    // The window it paged with goes on in the next invocation.
    expect(first.progress?.window).toBeDefined();
    expect(first.finished).toEqual([]);

    const second = await collectRun(d, first, LONG);
    expect(second.done).toBe(true);
    expect(second.finished).toEqual([
      { entity: "sessions", hourUtc: HOUR, pages: 3, records: 2500, parts: 3, invocations: 2 },
      { entity: "users", hourUtc: HOUR, pages: 1, records: 300, parts: 1, invocations: 1 },
    ]);
    await expectEveryFinishedStaged(second);
  });

  it("marks only a run finished, not a Map item of one entity-hour (which the recount counts by its result)", async () => {
    const { rest: _, ...single } = run(1);
    const output = await collectRun(deps(), single, LONG);
    expect(output).toMatchObject({ done: true, itemIndex: 1 });
    expect(output.rest).toBeUndefined();
    expect(await store.listKeys(runFinishedPrefix(CONTROL, "run-1"))).toEqual([]);
  });

  it("hands over the entity-hour that fails after others finished on a fault Retry retries; the next fails on it", async () => {
    class FailingStore extends S3Store {
      override async put(...args: Parameters<S3Store["put"]>) {
        if (args[0].includes("/staging/run-1/users/")) throw new StorageUnavailableError("S3 answered 503");
        return super.put(...args);
      }
    }
    const failing = { ...deps(), store: new FailingStore(store.client, BUCKET) };
    const first = await collectRun(failing, run(), LONG);
    expect(first).toMatchObject({ done: false, entity: "users", hourUtc: HOUR });
    expect(first.progress).toBeUndefined();
    expect(first.finished.map(({ entity }) => entity)).toEqual(["sessions"]);
    expect(await resultOf("sessions", HOUR)).toBeDefined();
    expect(
      logs.find(
        (line) => line.message === "collecting the entity-hour failed; handing it to the next invocation",
      ),
    ).toMatchObject({ entity: "users", hour: HOUR, reason: expect.stringContaining("S3 answered 503") });
    const sessionsRequests = simulator.requests.filter((request) => request.entity === "sessions").length;

    await expect(collectRun(failing, first, LONG)).rejects.toBeInstanceOf(StorageUnavailableError);
    // The entity-hour that finished is not collected again.
    expect(simulator.requests.filter((request) => request.entity === "sessions")).toHaveLength(
      sessionsRequests,
    );
  });

  it("logs what an entity-hour shares of the limit with its own entity and hour, while the next one pages", async () => {
    class HintRefusingStore extends S3Store {
      override async put(...args: Parameters<S3Store["put"]>) {
        if (args[0] === pageWindowHintKey(CONTROL)) throw new StorageUnavailableError("S3 answered 503");
        return super.put(...args);
      }
    }
    const d = { ...deps(), store: new HintRefusingStore(store.client, BUCKET) };
    const output = await collectRun(d, { ...run(), rest: [{ entity: "users", hourUtc: HOUR }] }, LONG);
    expect(output.done).toBe(true);
    const unshared = logs.filter((line) => line.message === "could not share the page window");
    // The first entity-hour learned the page size and the requests served at once: written while users paged.
    expect(unshared[0]).toMatchObject({ entity: "sessions", hour: HOUR });
    expect(unshared.every((line) => line.entity !== undefined && line.hour !== undefined)).toBe(true);
  });

  it("fails, to be retried, when the result of its last entity-hour cannot be written", async () => {
    const result = collectedResultKey(CONTROL, "run-1", "users", HOUR);
    class ResultRefusingStore extends S3Store {
      override async put(...args: Parameters<S3Store["put"]>) {
        if (args[0] === result) throw new StorageUnavailableError("S3 answered 503");
        return super.put(...args);
      }
    }
    const d = { ...deps(), store: new ResultRefusingStore(store.client, BUCKET) };
    const single = { ...run(), entity: "users", rest: [] };
    await expect(collectRun(d, single, LONG)).rejects.toBeInstanceOf(StorageUnavailableError);
    expect(await resultOf("users", HOUR)).toBeUndefined();
  });

  it("fails at once on a fault that needs an operator, even after entity-hours finished", async () => {
    simulator.inject({ kind: "wrongEnvelope", times: 1, entity: "users" });
    await expect(collectRun(deps(), run(), LONG)).rejects.toMatchObject({ name: "CitrixResponseError" });
    expect(await resultOf("sessions", HOUR)).toBeDefined();
  });
});
