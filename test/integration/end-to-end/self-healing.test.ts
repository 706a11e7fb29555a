import { afterEach, describe, expect, it } from "vitest";
import { StorageError } from "../../../functions/lib/config/errors";
import { stepFunctionsExecutionStatus } from "../../../functions/lib/execution-status";
import type { LocalCollectionResult } from "../../../local/collection";
import { startLocalStepFunctions } from "../../../local/sfn-api-server";
import { type InstrumentedStore, instrument, lambdaDied } from "../../support/instrumented-store";
import {
  expectFeedMatchesSimulator,
  FEED_PREFIX,
  STATE_KEY,
  type Stand,
  startStand,
} from "../../support/stand";

// At 11:20 UTC with LOOKBACK_MINUTES 75 the newest eligible hour is 10:00.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOUR = 3_600_000;
const HOURS = ["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z"];
const CONTROL = "_citrix_collector/citrix_analytics";
const ENTITIES = ["sessions", "machines", "users"];

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

async function open(env: Record<string, string> = {}): Promise<Stand> {
  stand = await startStand({ now: NOW, env: { FIRST_HOUR_UTC: HOURS[0] as string, ...env } });
  return stand;
}

async function expectPublishedOnce(s: Stand, hours: string[], store: InstrumentedStore): Promise<void> {
  for (const hourUtc of hours)
    for (const entity of ENTITIES) await expectFeedMatchesSimulator(s, entity, hourUtc);
  expect(store.feedWrites.length).toBe(new Set(store.feedWrites).size);
}

describe("S3 trouble in Commit", () => {
  it("rides out a run of 503 SlowDown on the copies and publishes every hour once", async () => {
    const s = await open();
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    // Copies run in parallel, so each attempt meets several of these: more than one attempt's worth, fewer
    // than the Task's ten.
    const fault = s.s3.inject({ operation: "CopyObject", status: 503, code: "SlowDown", times: 20 });
    const result = await s.run("slowdown-1", { adaptRuntime });

    expect(result.status).toBe("SUCCEEDED");
    expect(fault.times).toBe(0);
    expect(result.retries).toBeGreaterThanOrEqual(2);
    await expectPublishedOnce(s, HOURS, store);
    expect(await s.watermark()).toBe(HOURS[2]);
  });

  it("retries a 400 RequestTimeout and a 409 on an unconditional write like any transient error", async () => {
    const s = await open();
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    s.s3.inject({
      operation: "PutObject",
      keyPrefix: `${CONTROL}/manifests/`,
      status: 400,
      code: "RequestTimeout",
      times: 2,
    });
    // A staging part: before, a 409 there failed the execution for good.
    s.s3.inject({
      operation: "PutObject",
      keyPrefix: `${CONTROL}/staging/`,
      status: 409,
      code: "OperationAborted",
      times: 1,
    });
    const result = await s.run("transient-1", { adaptRuntime });

    expect(result.status).toBe("SUCCEEDED");
    await expectPublishedOnce(s, HOURS, store);
  });

  it("repeats a create-only copy answered 409 ConditionalRequestConflict inside one attempt", async () => {
    const s = await open({ ENTITIES: "sessions" });
    s.s3.inject({ operation: "CopyObject", status: 409, code: "ConditionalRequestConflict", times: 2 });
    const result = await s.run("conflict-1");

    expect(result.status).toBe("SUCCEEDED");
    expect(result.retries).toBe(0);
    for (const hourUtc of HOURS) await expectFeedMatchesSimulator(s, "sessions", hourUtc);
  });

  it("fails by name, not retried, on access denied, with the watermark unmoved", async () => {
    const s = await open();
    s.s3.inject({
      operation: "PutObject",
      keyPrefix: `${CONTROL}/manifests/`,
      status: 403,
      code: "AccessDenied",
      times: 1,
    });
    const result = await s.run("denied-1");

    expect(result.error?.name).toBe("StorageError");
    expect(result.error?.message).toContain("AccessDenied");
    expect(result.retries).toBe(0);
    expect(await s.watermark()).toBeNull();
  });
});

describe("a held hour", () => {
  it("two executions finishing the same dead execution's claim at once write each part once", async () => {
    const s = await open();
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    let copies = 0;
    store.beforeCopy = () => {
      if (++copies === 5) throw new StorageError("injected: the Commit died half-way");
    };
    const dead = await s.run("dead-1", { adaptRuntime });
    expect(dead.status).toBe("FAILED");
    store.beforeCopy = () => undefined;

    const [a, b] = await Promise.all([
      s.run("helper-a", { adaptRuntime }),
      s.run("helper-b", { adaptRuntime }),
    ]);

    expect([a.status, b.status]).toEqual(["SUCCEEDED", "SUCCEEDED"]);
    const finished = [a, b]
      .flatMap((run) => run.commit?.hours ?? [])
      .filter((hour) => hour.hourUtc === HOURS[1]);
    expect(finished.map((hour) => hour.publisher)).toEqual(finished.map(() => "dead-1"));
    await expectPublishedOnce(s, HOURS, store);
    expect(await s.watermark()).toBe(HOURS[2]);
  });

  it("of an execution that died in Commit after publishing is counted by the next Plan, which moves the watermark", async () => {
    const s = await open();
    s.s3.inject({
      operation: "PutObject",
      keyPrefix: STATE_KEY,
      status: 403,
      code: "AccessDenied",
      times: 1,
    });
    const dead = await s.run("dead-2");
    expect(dead.error?.name).toBe("StorageError");
    expect(await s.watermark()).toBeNull();

    const next = await s.run("next-2");
    expect(next.status).toBe("SUCCEEDED");
    expect(next.plan?.watermark.hourUtc).toBe(HOURS[2]);
    expect(next.plan?.hours).toEqual([]);
    expect(await s.watermark()).toBe(HOURS[2]);
  });
});

describe("collection leases", () => {
  it("of an execution that failed are not honoured: the next run collects its hours and removes the lease", async () => {
    const s = await open();
    s.simulator.inject({ kind: "wrongEnvelope", times: 1, entity: "users" });
    const failed = await s.run("failed-1");
    expect(failed.error?.name).toBe("CitrixResponseError");
    expect(await s.keys(`${CONTROL}/leases/`)).toEqual([`${CONTROL}/leases/failed-1.json`]);

    const next = await s.run("next-1");
    expect(next.plan?.deferred).toEqual({});
    expect(next.plan?.hours).toEqual(HOURS);
    expect(next.status).toBe("SUCCEEDED");
    expect(await s.keys(`${CONTROL}/leases/`)).toEqual([]);
  });

  it("are judged by Step Functions' DescribeExecution: running, ended, unknown", async () => {
    let finish: () => void = () => undefined;
    const sfn = await startLocalStepFunctions({
      execute: () =>
        new Promise<LocalCollectionResult>((resolve) => {
          finish = () =>
            resolve({
              status: "SUCCEEDED",
              plan: undefined,
              collected: undefined,
              commit: undefined,
              output: {},
              error: undefined,
              redrive: undefined,
              history: [],
              iterationEvents: {},
              invocations: {},
              retries: 0,
            });
        }),
    });
    try {
      const client = sfn.client();
      const lookup = stepFunctionsExecutionStatus(client);
      const own = `${sfn.stateMachineArn.replace(":stateMachine:", ":execution:")}:me`;
      const { StartExecutionCommand } = await import("@aws-sdk/client-sfn");
      await client.send(new StartExecutionCommand({ stateMachineArn: sfn.stateMachineArn, name: "holder" }));

      expect(await lookup("holder", own)).toBe("running");
      finish();
      await sfn.settled();
      expect(await lookup("holder", own)).toBe("ended");
      expect(await lookup("never-started", own)).toBe("ended");
      expect(await lookup("holder", undefined)).toBe("unknown");
      expect(await lookup("holder", "not-an-arn")).toBe("unknown");
    } finally {
      await sfn.close();
    }
    // No service to ask: collect rather than wait.
    const unreachable = stepFunctionsExecutionStatus(sfn.client());
    expect(await unreachable("holder", "arn:aws:states:us-east-1:000000000000:execution:m:me")).toBe(
      "unknown",
    );
  });
});

describe("a lost state file", () => {
  it("continues after the newest published hour, without FIRST_HOUR_UTC and without collecting anything twice", async () => {
    const s = await open();
    expect((await s.run("first-1")).status).toBe("SUCCEEDED");
    expect(await s.watermark()).toBe(HOURS[2]);
    await s.store.deleteKeys([STATE_KEY]);
    const requestsBefore = s.simulator.requests.length;

    // Two hours later, with FIRST_HOUR_UTC unset: 11:00 and 12:00 are due, and 08:00-10:00 are published.
    const next = await s.run("after-loss-1", {
      env: { ...s.env, FIRST_HOUR_UTC: "" },
      now: () => NOW + 2 * HOUR,
    });
    expect(next.status).toBe("SUCCEEDED");
    expect(next.plan?.hours).toEqual(["2026-11-24T11:00:00Z", "2026-11-24T12:00:00Z"]);
    expect(
      s.simulator.requests.slice(requestsBefore).every((r) => !r.hourUtc || r.hourUtc > (HOURS[2] as string)),
    ).toBe(true);
    expect(await s.watermark()).toBe("2026-11-24T12:00:00Z");
  });
});

describe("a collect invocation that ran out of memory", () => {
  it("is retried (Lambda.Unknown) under a new attempt id and lands every record once", async () => {
    const s = await open({ ENTITIES: "sessions", PART_MAX_RECORDS: "400", TOP_N: "500" });
    const { store, adaptRuntime } = instrument(s.store, FEED_PREFIX);
    let staging = 0;
    store.beforePut = (key) => {
      if (key.includes("/staging/") && ++staging === 3) throw lambdaDied("Lambda.Unknown");
    };
    const result = await s.run("oom-1", { adaptRuntime });

    expect(result.status).toBe("SUCCEEDED");
    expect(result.retries).toBe(1);
    for (const hourUtc of HOURS) await expectFeedMatchesSimulator(s, "sessions", hourUtc);
  });
});
