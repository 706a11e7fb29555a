import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createHandler as createCommitHandler } from "../../../functions/commit/handler";
import { createLogger } from "../../../functions/lib/aws/log";
import { createMetricsFactory } from "../../../functions/lib/aws/metrics";
import { MAX_CURSOR_BYTES } from "../../../functions/lib/citrix/paging";
import type { Env } from "../../../functions/lib/config/config";
import type { CollectOutput } from "../../../functions/lib/config/contracts";
import { runtimeFromEnvironment } from "../../../functions/lib/runtime";
import { createHandler as createPlanHandler } from "../../../functions/plan/handler";
import { type LocalCollectionResult, localExecutionStatus } from "../../../local/collection";
import { STATE_PAYLOAD_LIMIT_BYTES } from "../../../local/execution-history";
import type { LocalHandler } from "../../../local/state-machine";
import {
  expectFeedMatchesSimulator,
  FEED_PREFIX,
  STATE_KEY,
  type Stand,
  startStand,
} from "../../support/stand";

// Every fault the Citrix API is known for, injected into the project's simulator while the deployed state
// machine definition runs locally: each run either lands every record exactly once, or fails by the exact
// error name with the watermark unmoved and nothing in the feed. Backoff pauses are recorded, not waited.

// 11:20 UTC with LOOKBACK_MINUTES 75: the newest eligible hour is 10:00.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOUR = "2026-11-24T10:00:00Z";
const HOURS = ["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z", HOUR];
const ENTITIES = ["sessions", "machines", "users"];

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

/** One entity-hour of 2500 sessions, paged 1000 at a time: three pages, one Map iteration. */
async function open(
  env: Env = {},
  credentials: "environment" | "secretsManager" = "environment",
): Promise<Stand> {
  stand = await startStand({
    now: NOW,
    credentials,
    env: { ENTITIES: "sessions", FIRST_HOUR_UTC: HOUR, ...env },
  });
  return stand;
}

const tokenRequests = (s: Stand) =>
  s.simulator.requests.filter((request) => request.path.startsWith("/cctrustoauth2/"));
const faultsServed = (s: Stand) => s.simulator.requests.filter((request) => request.fault !== undefined);
const dataRequests = (s: Stand) =>
  s.simulator.requests.filter((request) => request.path.startsWith("/casodata/"));
/** Faults that last, as a server's own behaviour does: far more than any bounded paging could meet. */
const ALWAYS = 100_000;
/**
 * One request at a time, for the tests that count pauses, requests or hand-overs exactly: each pause is
 * then the faulted request's own. The same faults with the page window open are the other tests here, the
 * fault schedules, and test/integration/citrix/page-window.test.ts.
 */
const SERIAL = { MAX_PAGES_IN_FLIGHT: "1" };
/** A 15 s collect timeout less the stand's 5 s HTTP timeout and this reserve leaves 1 ms: one page per invocation. */
const ONE_PAGE_PER_INVOCATION = {
  env: { INVOCATION_RESERVE_MS: "9999" },
  run: { timeoutsMs: { collect: 15_000 } },
} as const;

/** Wraps the collect handler to record what every invocation hands to the next one. */
function recordCollectOutputs(outputs: CollectOutput[]) {
  return (key: string, handler: LocalHandler): LocalHandler =>
    key !== "collect"
      ? handler
      : async (event, context) => {
          const output = (await handler(event, context)) as CollectOutput;
          outputs.push(output);
          return output;
        };
}

/** Wraps the collect handler to record the name of every error it ends with (what the Task's Retry sees). */
function recordCollectFailures(thrown: string[]) {
  return (key: string, handler: LocalHandler): LocalHandler =>
    key !== "collect"
      ? handler
      : async (event, context) => {
          try {
            return await handler(event, context);
          } catch (error) {
            thrown.push(error instanceof Error ? error.name : String(error));
            throw error;
          }
        };
}

async function expectCollectedOnce(s: Stand, result: LocalCollectionResult): Promise<void> {
  expect(result.error).toBeUndefined();
  expect(result.status).toBe("SUCCEEDED");
  await expectFeedMatchesSimulator(s, "sessions", HOUR);
  expect(await s.watermark()).toBe(HOUR);
}

async function expectFailedUntouched(s: Stand, result: LocalCollectionResult, name: string): Promise<void> {
  expect(result.status).toBe("FAILED");
  expect(result.error?.name).toBe(name);
  expect(await s.watermark()).toBeNull();
  expect(await s.keys(`${FEED_PREFIX}/`)).toEqual([]);
  expect(await s.keys(STATE_KEY)).toEqual([]);
}

describe("throttling and outages", () => {
  it("rides out a 429 storm, waiting as long as Retry-After (seconds) asks", async () => {
    const s = await open(SERIAL);
    s.simulator.inject({ kind: "status", status: 429, times: 5, retryAfter: "3" });
    const result = await s.run("throttled-1");

    await expectCollectedOnce(s, result);
    expect(faultsServed(s)).toHaveLength(5);
    expect(s.sleeps).toHaveLength(5);
    for (const pause of s.sleeps) expect(pause).toBeGreaterThanOrEqual(3000);
    expect(result.retries).toBe(0);
  });

  it("rides out a 429 storm without Retry-After, backing off exponentially", async () => {
    const s = await open();
    s.simulator.inject({ kind: "status", status: 429, times: 6 });
    const result = await s.run("throttled-2", { citrix: { client: { random: () => 1 } } });

    await expectCollectedOnce(s, result);
    expect(s.sleeps).toEqual([500, 1000, 2000, 4000, 8000, 16000]);
  });

  it("honours Retry-After given as an HTTP date", async () => {
    const s = await open(SERIAL);
    const until = new Date(Date.now() + 20_000).toUTCString();
    s.simulator.inject({ kind: "status", status: 429, times: 2, retryAfter: until });
    const result = await s.run("throttled-3", { citrix: { client: { maxBackoffMs: 10 } } });

    await expectCollectedOnce(s, result);
    expect(s.sleeps).toHaveLength(2);
    for (const pause of s.sleeps) {
      expect(pause).toBeGreaterThan(15_000);
      expect(pause).toBeLessThanOrEqual(20_000);
    }
  });

  it("rides out a burst of 503s mid-hour inside one invocation", async () => {
    const s = await open();
    s.simulator.inject({ kind: "status", status: 503, times: 7, after: 1 });
    const result = await s.run("unavailable-1");

    await expectCollectedOnce(s, result);
    expect(faultsServed(s)).toHaveLength(7);
    expect(result.invocations.collect).toBe(1);
  });

  it("leaves a storm that outlasts the invocation's budget to the Task's Retry, and still lands every record once", async () => {
    const s = await open();
    s.simulator.inject({ kind: "status", status: 429, times: 7 });
    const thrown: string[] = [];
    const result = await s.run("storm-1", {
      citrix: { client: { maxAttempts: 3 } },
      wrap: recordCollectFailures(thrown),
    });

    await expectCollectedOnce(s, result);
    // 3 + 3 attempts fail two invocations; the third gets through after one more 429.
    expect(thrown).toEqual(["CitrixUnavailableError", "CitrixUnavailableError"]);
    expect(result.retries).toBe(2);
    expect(result.invocations.collect).toBe(3);
  });

  it("hands the pages it has over to the next invocation when a storm starts mid-hour", async () => {
    const s = await open(SERIAL);
    s.simulator.inject({ kind: "status", status: 503, times: 3, after: 1 });
    const thrown: string[] = [];
    const result = await s.run("storm-2", {
      citrix: { client: { maxAttempts: 3 } },
      wrap: recordCollectFailures(thrown),
    });

    await expectCollectedOnce(s, result);
    expect(thrown).toEqual([]);
    expect(result.collected?.[0]?.invocations).toBe(2);
    expect(s.logs.some((line) => line.includes("handing over to the next invocation"))).toBe(true);
  });

  it("fails by its retryable name once every retry is spent (connection refused), leaving everything as it was", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const s = await open({ API_BASE: `http://127.0.0.1:${port}/casodata`, TOKEN_URL: "" });
    const result = await s.run("refused-1", { citrix: { client: { maxAttempts: 2 } } });

    await expectFailedUntouched(s, result, "CitrixUnavailableError");
    expect(result.error?.message).toContain("ECONNREFUSED");
    // The first attempt and the definition's six retries.
    expect(result.invocations.collect).toBe(7);
    expect(result.retries).toBe(6);
  });
});

describe("paging that makes no progress ends: every record once, or CitrixPagingError", () => {
  it("collects a one-page hour once from a server that ignores $skip, dropping the page it serves again", async () => {
    const s = await open();
    s.simulator.setOptions({ volume: { sessions: 400 } });
    s.simulator.inject({ kind: "ignoreSkip", times: ALWAYS });
    const result = await s.run("ignores-skip-1");

    await expectCollectedOnce(s, result);
    expect(dataRequests(s).map((request) => request.skip)).toEqual([0, 400]);
    expect(result.collected?.[0]).toMatchObject({ pages: 2, records: 400 });
    expect(s.logs.some((line) => line.includes("served its only page again; dropped the repeat"))).toBe(true);
  });

  it("notices the repeat across invocations too (the previous page's digest rides in the cursor)", async () => {
    const s = await open(ONE_PAGE_PER_INVOCATION.env);
    s.simulator.setOptions({ volume: { sessions: 400 } });
    s.simulator.inject({ kind: "ignoreSkip", times: ALWAYS });
    const result = await s.run("ignores-skip-2", ONE_PAGE_PER_INVOCATION.run);

    await expectCollectedOnce(s, result);
    expect(result.invocations.collect).toBe(2);
    expect(dataRequests(s)).toHaveLength(2);
  });

  it.each([
    ["one page at a time", "1", {}],
    ["with pages guessed ahead", "4", {}],
    ["one page per invocation", "1", ONE_PAGE_PER_INVOCATION],
  ] as const)(
    "fails by name, unretried, when a server that ignores $skip and gives no links holds more than a page (%s)",
    async (_how, inFlight, budget) => {
      const s = await open({ MAX_PAGES_IN_FLIGHT: inFlight, ...("env" in budget ? budget.env : {}) });
      s.simulator.inject({ kind: "ignoreSkip", times: ALWAYS });
      const result = await s.run("ignores-skip-3", "run" in budget ? budget.run : {});

      await expectFailedUntouched(s, result, "CitrixPagingError");
      const probe = `${s.simulator.apiBase}/sessions?year=2026&month=11&day=24&hour=10&$top=1001&$skip=1000`;
      expect(result.error?.message).toContain(
        `the API ignores $skip: its full first page of 1000 records came again at $skip=1000 without an @odata.nextLink, and asked there for 1001 at ${probe} it returned 1001 records, so the hour holds more records than one page`,
      );
      expect(result.error?.message).toContain("raise TOP_N");
      expect(result.retries).toBe(0);
      // The first page, the repeat, the pages guessed ahead with it, and the probe.
      expect(dataRequests(s).length).toBeLessThanOrEqual(2 + Number(inFlight));
      expect(dataRequests(s).filter((request) => request.top === 1001)).toHaveLength(1);
    },
  );

  it("collects a one-page hour once from a service that pages by opaque $skiptoken links only", async () => {
    const s = await open();
    s.simulator.setOptions({ paging: "skipToken", volume: { sessions: 400 } });
    const result = await s.run("skiptoken-1");

    await expectCollectedOnce(s, result);
    expect(dataRequests(s)).toHaveLength(2);
  });

  it("collects a many-page hour once from that service, by its links", async () => {
    const s = await open({ MAX_PAGES_IN_FLIGHT: "4" });
    s.simulator.setOptions({ paging: "skipToken" });
    const result = await s.run("skiptoken-2");

    await expectCollectedOnce(s, result);
    expect(dataRequests(s).map((request) => request.skip)).toEqual([0, 1000, 2000]);
  });

  it.each([
    ["one page at a time", "1", {}],
    ["with pages guessed ahead", "4", {}],
    ["one page per invocation", "1", ONE_PAGE_PER_INVOCATION],
  ] as const)(
    "collects an hour of exactly TOP_N records once from that service, by one probe with $top = TOP_N + 1 (%s)",
    async (_how, inFlight, budget) => {
      const s = await open({ MAX_PAGES_IN_FLIGHT: inFlight, ...("env" in budget ? budget.env : {}) });
      s.simulator.setOptions({ paging: "skipToken", volume: { sessions: 1000 } });
      const result = await s.run("skiptoken-exact-1", "run" in budget ? budget.run : {});

      await expectCollectedOnce(s, result);
      expect(result.retries).toBe(0);
      expect(result.collected?.[0]).toMatchObject({ pages: 3, records: 1000 });
      // Page one; the repeat at $skip=1000 (and any pages guessed ahead with it, dropped); the probe: $skip=1000
      // asked again with $top=1001, page one served again without a link.
      const requests = dataRequests(s);
      expect(requests.slice(0, 2).map(({ top, skip }) => [top, skip])).toEqual([
        [1000, 0],
        [1000, 1000],
      ]);
      expect(requests.filter((request) => request.top === 1001).map(({ skip }) => skip)).toEqual([1000]);
    },
  );

  it("collects an hour of exactly TOP_N records once from a $skip service that ignored $skip once: the probe is empty", async () => {
    const s = await open(SERIAL);
    s.simulator.setOptions({ volume: { sessions: 1000 } });
    s.simulator.inject({ kind: "ignoreSkip", times: 1, skip: 1000 });
    const result = await s.run("skip-glitch-1");

    await expectCollectedOnce(s, result);
    expect(dataRequests(s).map(({ top, skip, records }) => [top, skip, records])).toEqual([
      [1000, 0, 1000],
      [1000, 1000, 1000],
      [1001, 1000, 0],
    ]);
  });

  it("collects an hour of exactly 2 × TOP_N records once from that service, by its link, with no probe", async () => {
    const s = await open(SERIAL);
    s.simulator.setOptions({ paging: "skipToken", volume: { sessions: 2000 } });
    const result = await s.run("skiptoken-exact-2");

    await expectCollectedOnce(s, result);
    expect(dataRequests(s).map(({ top, skip }) => [top, skip])).toEqual([
      [1000, 0],
      [1000, 1000],
    ]);
  });

  it("fails CollectPage by name on a ~300 KB $skiptoken cursor, naming its length and the bound, before any state limit", async () => {
    stand = await startStand({
      now: NOW,
      simulator: { paging: "skipToken", skipTokenLength: 300_000 },
      env: { ENTITIES: "sessions", FIRST_HOUR_UTC: HOUR },
    });
    const result = await stand.run("long-cursor-1");

    await expectFailedUntouched(stand, result, "CitrixPagingError");
    const page1 = `${stand.simulator.apiBase}/sessions?year=2026&month=11&day=24&hour=10&$top=1000&$skip=0`;
    expect(result.error?.message).toContain(`the API's @odata.nextLink from ${page1} is `);
    const length = Number(/ is (\d+) bytes long, /.exec(result.error?.message ?? "")?.[1]);
    expect(length).toBeGreaterThan(300_000);
    expect(length).toBeLessThan(300_200);
    expect(result.error?.message).toContain(
      `over the ${MAX_CURSOR_BYTES} bytes a cursor may take of a Step Functions state (its quota is ${STATE_PAYLOAD_LIMIT_BYTES} bytes)`,
    );
    expect(result.retries).toBe(0);
    expect(result.redrive?.state).toBe("CollectEntityHours");
    // The Task failed by the walker's error, in CollectPage; Step Functions raised nothing of its own.
    const failures = result.history.filter((event) => event.type === "TaskFailed");
    expect(failures.map((event) => (event.taskFailedEventDetails as { error: string }).error)).toEqual([
      "CitrixPagingError",
    ]);
    const entered = result.history
      .filter((event) => event.type === "TaskStateEntered")
      .map((event) => (event.stateEnteredEventDetails as { name: string }).name);
    expect(entered.at(-1)).toBe("CollectPage");
    expect(JSON.stringify(result.history)).not.toContain("States.DataLimitExceeded");
    expect(dataRequests(stand)).toHaveLength(1);
  });

  it("carries a cursor just within the bound from one invocation to the next, within every state limit", async () => {
    stand = await startStand({
      now: NOW,
      simulator: { paging: "skipToken", skipTokenLength: MAX_CURSOR_BYTES - 200, volume: { sessions: 2000 } },
      env: { ENTITIES: "sessions", FIRST_HOUR_UTC: HOUR, ...ONE_PAGE_PER_INVOCATION.env },
    });
    const result = await stand.run("long-cursor-2", ONE_PAGE_PER_INVOCATION.run);

    await expectCollectedOnce(stand, result);
    expect(result.invocations.collect).toBe(2);
    // Both invocations' outputs carry the cursor (the first hands it to the second), through the local engine,
    // which holds every state to AWS's quota.
    const carried = result.history
      .filter((event) => event.type === "TaskStateExited")
      .map((event) => event.stateExitedEventDetails as { name: string; output: string })
      .filter((details) => details.name === "CollectPage" && details.output.includes("$skiptoken"))
      .map((details) => Buffer.byteLength(details.output));
    expect(carried).toHaveLength(2);
    for (const bytes of carried) {
      expect(bytes).toBeGreaterThan(MAX_CURSOR_BYTES - 300);
      expect(bytes).toBeLessThan(STATE_PAYLOAD_LIMIT_BYTES);
    }
  });

  it("fails by name on a nextLink that points at the page itself, after one request", async () => {
    const s = await open();
    s.simulator.inject({ kind: "selfLink", times: ALWAYS });
    const result = await s.run("self-link-1");

    await expectFailedUntouched(s, result, "CitrixPagingError");
    const page1 = `${s.simulator.apiBase}/sessions?year=2026&month=11&day=24&hour=10&$top=1000&$skip=0`;
    expect(result.error?.message).toContain(`the API's @odata.nextLink points at the page itself: ${page1}`);
    expect(dataRequests(s)).toHaveLength(1);
  });

  it.each([
    ["within an invocation", {}],
    ["across invocations (the recent links ride in the cursor)", ONE_PAGE_PER_INVOCATION],
  ] as const)("fails by name on a nextLink cycle of three pages, %s", async (_how, budget) => {
    const s = await open("env" in budget ? budget.env : {});
    s.simulator.setOptions({ volume: { sessions: 5000 } });
    s.simulator.inject({ kind: "linkCycle", pages: 3, times: ALWAYS });
    const result = await s.run("link-cycle-1", "run" in budget ? budget.run : {});

    await expectFailedUntouched(s, result, "CitrixPagingError");
    expect(result.error?.message).toContain("cycles back to a page already read");
    // $skip=0, then the ring's links to pages 2, 3 and 1; the link from there to page 2 is not followed.
    expect(dataRequests(s).map((request) => request.skip)).toEqual([0, 1000, 2000, 0]);
    expect(result.retries).toBe(0);
  });

  it("fails by name once an entity-hour reaches MAX_PAGES_PER_ENTITY_HOUR before its end", async () => {
    const s = await open({ MAX_PAGES_PER_ENTITY_HOUR: "2", ...SERIAL });
    const result = await s.run("page-bound-1");

    await expectFailedUntouched(s, result, "CitrixPagingError");
    expect(result.error?.message).toContain("(MAX_PAGES_PER_ENTITY_HOUR is 2)");
    expect(dataRequests(s)).toHaveLength(2);
  });
});

describe("hand-over", () => {
  it("carries Retry-After to the next invocation, which waits it out before its first request", async () => {
    const s = await open(SERIAL);
    s.simulator.inject({ kind: "status", status: 429, times: 2, retryAfter: "300", after: 1 });
    const outputs: CollectOutput[] = [];
    const result = await s.run("carried-retry-after-1", {
      citrix: { client: { maxAttempts: 2 } },
      wrap: recordCollectOutputs(outputs),
    });

    await expectCollectedOnce(s, result);
    expect(outputs).toHaveLength(2);
    const notBefore = Date.parse(outputs[0]?.progress?.notBefore ?? "");
    expect(notBefore).toBeGreaterThan(Date.now() + 290_000);
    expect(outputs[1]?.progress?.notBefore).toBeUndefined();
    // The first invocation's own backoff, then the second's wait for the time it was handed.
    expect(s.sleeps).toHaveLength(2);
    expect(s.sleeps[0]).toBe(300_000);
    expect(s.sleeps[1]).toBeGreaterThan(290_000);
    expect(s.sleeps[1]).toBeLessThanOrEqual(300_000);
    const waited = s.logs.findIndex((line) => line.includes("waiting as the Citrix API asked"));
    const resumed = s.logs.findIndex((line, n) => n > waited && line.includes("fetched page"));
    expect(waited).toBeGreaterThan(-1);
    expect(resumed).toBeGreaterThan(waited);
    expect(dataRequests(s).map((request) => request.status)).toEqual([200, 429, 429, 200, 200]);
  });

  it("aborts the requests still in flight when it hands over, and lands every record once", async () => {
    const s = await open({ MAX_PAGES_IN_FLIGHT: "3" });
    s.simulator.setOptions({ volume: { sessions: 5500 } });
    // The window opens to 3 after two full pages. Page 3 then times out (the stand's 5 s HTTP timeout; one
    // attempt per invocation) while pages 4 and 5, asked for ahead, would take 8 s.
    s.simulator.inject({ kind: "slow", delayMs: 6000, times: 1, skip: 2000 });
    s.simulator.inject({ kind: "slow", delayMs: 8000, times: 1, skip: 3000 });
    s.simulator.inject({ kind: "slow", delayMs: 8000, times: 1, skip: 4000 });
    const result = await s.run("abort-in-flight-1", { citrix: { client: { maxAttempts: 1 } } });

    await expectCollectedOnce(s, result);
    expect(result.collected?.[0]?.invocations).toBe(2);
    const slow = dataRequests(s).filter((request) => request.fault === "slow");
    expect(slow.map((request) => request.skip).sort()).toEqual([2000, 3000, 4000]);
    await vi.waitFor(() => expect(slow.every((request) => request.aborted)).toBe(true));
    // Each page the feed holds came from a request that completed.
    for (const skip of [0, 1000, 2000, 3000, 4000, 5000]) {
      expect(
        dataRequests(s).some(
          (request) => request.skip === skip && request.status === 200 && !request.aborted,
        ),
      ).toBe(true);
    }
  });
});

describe("tokens", () => {
  it("fetches a new token once when it expires mid-paging", async () => {
    const s = await open(SERIAL);
    s.simulator.inject({ kind: "expireTokens", after: 1 });
    const result = await s.run("expired-1");

    await expectCollectedOnce(s, result);
    expect(tokenRequests(s)).toHaveLength(2);
    expect(s.simulator.requests.filter((request) => request.status === 401)).toHaveLength(1);
    expect(result.retries).toBe(0);
  });

  it("fails by name, unretried, when a fresh token is rejected right after a refresh", async () => {
    const s = await open();
    s.simulator.inject({ kind: "expireTokens", after: 1 });
    s.simulator.inject({ kind: "expireTokens", after: 2 });
    const result = await s.run("rejected-1");

    await expectFailedUntouched(s, result, "CitrixAuthError");
    expect(result.error?.message).toContain("HTTP 401 to a freshly issued token");
    expect(result.retries).toBe(0);
    expect(result.invocations.collect).toBe(1);
  });

  it("fails by name on a wrong client secret, with one token request and no retry", async () => {
    const s = await open({ CITRIX_CLIENT_SECRET: "wrong-client-secret" });
    const result = await s.run("wrong-secret-1");

    await expectFailedUntouched(s, result, "CitrixAuthError");
    expect(result.error?.message).toContain("HTTP 401");
    expect(result.error?.message).toContain(
      "check CITRIX_CUSTOMER_ID, CITRIX_CLIENT_ID and CITRIX_CLIENT_SECRET",
    );
    expect(result.error?.cause).not.toContain("wrong-client-secret");
    expect(tokenRequests(s)).toHaveLength(1);
    expect(result.invocations.collect).toBe(1);
    expect(result.retries).toBe(0);
  });
});

describe("connections and responses", () => {
  it("retries a connection dropped mid-body and lands every record once", async () => {
    const s = await open();
    s.simulator.inject({ kind: "dropConnection", times: 2, after: 1 });
    const result = await s.run("dropped-1");

    await expectCollectedOnce(s, result);
    expect(faultsServed(s)).toHaveLength(2);
    expect(result.retries).toBe(0);
  });

  it.each([
    ["malformed JSON", "malformedJson", "is not JSON"],
    ["a wrong envelope", "wrongEnvelope", 'has no "value" array'],
  ] as const)(
    "fails by name on %s mid-hour, quoting the URL and a snippet, publishing nothing",
    async (_what, kind, says) => {
      const s = await open();
      s.simulator.inject({ kind, times: 1, after: 1 });
      const result = await s.run(`bad-page-${kind}`);

      await expectFailedUntouched(s, result, "CitrixResponseError");
      const url = `${s.simulator.apiBase}/sessions?year=2026&month=11&day=24&hour=10&$top=1000&$skip=1000`;
      expect(result.error?.message).toContain(`response from ${url} ${says}: "{`);
      for (const token of s.simulator.issuedTokens) expect(result.error?.cause).not.toContain(token);
      expect(result.retries).toBe(0);
    },
  );
});

describe("wrong settings", () => {
  it("names TOKEN_URL when it answers 404, without retrying", async () => {
    const s = await open();
    s.env.TOKEN_URL = `${s.simulator.url}/cctrustoauth2/tokens`;
    const result = await s.run("no-token-endpoint-1");

    await expectFailedUntouched(s, result, "ConfigurationError");
    expect(result.error?.message).toContain("TOKEN_URL leads to no Citrix Cloud token endpoint: HTTP 404");
    expect(result.retries).toBe(0);
  });

  it("names API_BASE when its host does not exist", async () => {
    const s = await open({ API_BASE: "https://api-xx.cloud.example/casodata", TOKEN_URL: "" });
    // What Node's fetch throws for a name DNS does not know; the test sends nothing off 127.0.0.1.
    const unknownHost: typeof fetch = async (input) => {
      const hostname = new URL(String(input)).hostname;
      throw new TypeError("fetch failed", {
        cause: Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND", hostname }),
      });
    };
    const result = await s.run("unknown-host-1", { citrix: { client: { fetch: unknownHost } } });

    await expectFailedUntouched(s, result, "ConfigurationError");
    expect(result.error?.message).toBe(
      "API_BASE names a host that does not exist: api-xx.cloud.example (DNS lookup failed with ENOTFOUND); check API_BASE",
    );
    expect(result.retries).toBe(0);
  });
});

describe("credentials from AWS Secrets Manager", () => {
  it("reads the secret once, in the collect function only, for a whole run of concurrent iterations", async () => {
    const s = await open({ ENTITIES: ENTITIES.join(","), FIRST_HOUR_UTC: HOURS[0] }, "secretsManager");
    expect(s.env.CITRIX_CLIENT_SECRET).toBeUndefined();
    // Plan and commit run as separate functions would: over a runtime that cannot read the secret at all.
    const withoutSecret = runtimeFromEnvironment(
      s.env,
      () => s.client,
      createLogger({}, (line) => s.logs.push(line)),
      {
        secretsManager: () => {
          throw new Error("the plan and commit functions must not read CITRIX_SECRET_ARN");
        },
      },
    );
    const metrics = createMetricsFactory(s.env, (line) => s.logs.push(line));
    const result = await s.run("secret-1", {
      wrap: (key, handler) =>
        key === "plan"
          ? createPlanHandler({
              runtime: withoutSecret,
              now: () => NOW,
              metrics,
              executionStatus: localExecutionStatus,
            })
          : key === "commit"
            ? createCommitHandler({ runtime: withoutSecret, metrics })
            : handler,
    });

    expect(result.error).toBeUndefined();
    expect(result.status).toBe("SUCCEEDED");
    for (const hourUtc of HOURS) {
      for (const entity of ENTITIES) await expectFeedMatchesSimulator(s, entity, hourUtc);
    }
    expect(s.secrets.requests).toHaveLength(1);
    expect(tokenRequests(s)).toHaveLength(1);
  });

  it("fails CollectPage by name, unretried, when the secret does not exist", async () => {
    const s = await open({}, "secretsManager");
    s.secrets.deleteSecret("citrix-analytics-collector");
    const result = await s.run("no-secret-1");

    await expectFailedUntouched(s, result, "ConfigurationError");
    expect(result.error?.message).toContain("CITRIX_SECRET_ARN: cannot read");
    expect(result.error?.message).toContain("ResourceNotFoundException");
    expect(result.retries).toBe(0);
    expect(s.simulator.requests).toEqual([]);
  });

  it("leaves Secrets Manager throttling to the Task's Retry", async () => {
    const s = await open({}, "secretsManager");
    s.secrets.inject({ type: "ThrottlingException", status: 400, times: 2 });
    const thrown: string[] = [];
    const result = await s.run("secret-throttled-1", {
      secretsManager: (_region, credentials) =>
        s.secrets.client({ maxAttempts: 1, ...(credentials ? { credentials } : {}) }),
      wrap: recordCollectFailures(thrown),
    });

    await expectCollectedOnce(s, result);
    expect(thrown).toEqual(["SecretsManagerUnavailableError", "SecretsManagerUnavailableError"]);
    expect(result.retries).toBe(2);
  });
});

describe("secrets stay secret", () => {
  it("puts neither the client secret nor any token in a log line, an error cause or a state output", async () => {
    const s = await open({ ENTITIES: ENTITIES.join(","), FIRST_HOUR_UTC: HOURS[0] }, "secretsManager");
    s.simulator.inject({ kind: "status", status: 429, times: 2, retryAfter: "1" });
    s.simulator.inject({ kind: "expireTokens", after: 4 });
    s.simulator.inject({ kind: "status", status: 503, times: 2, after: 6 });
    s.simulator.inject({ kind: "dropConnection", times: 1, after: 8 });
    const collected = await s.run("leak-1");
    expect(collected.status).toBe("SUCCEEDED");

    // The next hour fails mid-paging: its cause quotes the page that broke.
    s.simulator.inject({ kind: "malformedJson", times: 1, after: 2 });
    const failed = await s.run("leak-2", { now: () => NOW + 3_600_000 });
    expect(failed.error?.name).toBe("CitrixResponseError");

    expect(s.simulator.issuedTokens.length).toBeGreaterThanOrEqual(2);
    const secrets = [s.simulator.clientSecret, ...s.simulator.issuedTokens];
    const everything = [
      ...s.logs,
      JSON.stringify([collected.plan, collected.collected, collected.commit, collected.output]),
      JSON.stringify([failed.plan, failed.collected, failed.commit, failed.output, failed.error]),
    ].join("\n");
    // The logs cover the paths that handle secrets: the secret read, a refresh, retries.
    for (const message of [
      "read the Citrix API credentials",
      "token rejected mid-paging",
      "transient Citrix API",
    ]) {
      expect(s.logs.some((line) => line.includes(message))).toBe(true);
    }
    for (const secret of secrets) expect(everything).not.toContain(secret);
  });
});
