import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  GetExecutionHistoryCommand,
  HistoryEventType,
  paginateGetExecutionHistory,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigurationError, StorageUnavailableError } from "../../../functions/lib/config/errors";
import type { LocalCollectionResult } from "../../../local/collection";
import {
  executionHistoryResponse,
  HISTORY_EVENT_LIMIT,
  type HistoryEvent,
  STATE_PAYLOAD_LIMIT_BYTES,
} from "../../../local/execution-history";
import { type LocalStepFunctions, startLocalStepFunctions } from "../../../local/sfn-api-server";
import {
  type AslDefinition,
  type EngineLatencies,
  type JsonValue,
  LAMBDA_RESPONSE_LIMIT_BYTES,
  type LocalHandler,
  startLocalExecution,
} from "../../../local/state-machine";
import { type Stand, startStand } from "../../support/stand";

/** Runs a definition (the deployed one by default) in the local engine with the given handlers. */
async function execute(options: {
  definition?: AslDefinition;
  handlers?: Record<string, LocalHandler>;
  input?: JsonValue;
  latencies?: EngineLatencies;
}) {
  const invocations: Record<string, number> = {};
  const handlers = Object.fromEntries(
    Object.entries(options.handlers ?? {}).map(([key, handler]): [string, LocalHandler] => [
      key,
      (event, context) => {
        invocations[key] = (invocations[key] ?? 0) + 1;
        return handler(event, context);
      },
    ]),
  );
  const execution = startLocalExecution({
    definition: options.definition,
    handlers: { plan: unused, collect: unused, commit: unused, ...handlers },
    executionName: "engine-test",
    input: options.input,
    timeoutsMs: {},
    retryPauseMs: 0,
    latencies: options.latencies,
  });
  let status = "SUCCEEDED";
  await execution.result.catch(() => {
    status = "FAILED";
  });
  const events = execution.history.events;
  const last = events.at(-1);
  const failure = last?.executionFailedEventDetails as { error: string; cause: string } | undefined;
  return { status, events, failure, invocations, iterationEvents: execution.history.iterationEvents() };
}

const unused: LocalHandler = async () => {
  throw new Error("not invoked in this test");
};

const types = (events: readonly HistoryEvent[]) => events.map((event) => event.type);

/** Plan's output for the deployed definition: one work item per entity, all in one hour. */
function planFor(entities: string[]): LocalHandler {
  return async () => ({
    runId: "engine-test",
    mode: "scheduled",
    hours: ["2026-11-24T08:00:00Z"],
    entities,
    deferred: {},
    items: entities.map((entity) => ({ entity, hourUtc: "2026-11-24T08:00:00Z", rest: [] })),
    watermark: { hourUtc: null, etag: null },
    maxConcurrency: 1,
    lagHours: 0,
  });
}

/** A Pass state whose output is `{"blob": <text>}`. */
const passing = (text: string, next: Record<string, unknown> = { End: true }) => ({
  Type: "Pass",
  Result: { blob: text },
  ...next,
});

describe("the 256 KiB state payload quota", () => {
  it("holds for a Pass state's output, in UTF-8 bytes: 262,144 pass, one byte more fails the execution in place", async () => {
    // {"blob":"…"} is 11 bytes around the text.
    const fits = await execute({
      definition: {
        StartAt: "Fits",
        States: {
          Fits: passing("x".repeat(STATE_PAYLOAD_LIMIT_BYTES - 11), { Next: "After" }),
          After: { Type: "Succeed" },
        },
      },
    });
    expect(fits.status).toBe("SUCCEEDED");

    // 87,378 characters, 262,145 bytes: three bytes each for "€".
    const text = `${"€".repeat(87_378)}`;
    expect(Buffer.byteLength(JSON.stringify({ blob: text }))).toBe(STATE_PAYLOAD_LIMIT_BYTES + 1);
    const over = await execute({
      definition: {
        StartAt: "TooBig",
        States: { TooBig: passing(text, { Next: "After" }), After: { Type: "Succeed" } },
      },
    });
    expect(over.status).toBe("FAILED");
    expect(over.failure?.error).toBe("States.DataLimitExceeded");
    expect(over.failure?.cause).toContain("'TooBig'");
    expect(types(over.events)).toEqual(["ExecutionStarted", "PassStateEntered", "ExecutionFailed"]);
  });

  it("holds for a Map state's aggregated output though each iteration's is small, before the next state runs", async () => {
    const commit: LocalHandler = async () => ({ committed: true });
    const result = await execute({
      definition: {
        StartAt: "Items",
        States: {
          Items: {
            Type: "Pass",
            Result: { items: Array.from({ length: 40 }, (_, index) => index) },
            Next: "EachItem",
          },
          EachItem: {
            Type: "Map",
            ItemsPath: "$.items",
            ItemProcessor: { StartAt: "Small", States: { Small: passing("x".repeat(7_000)) } },
            Next: "Commit",
          },
          Commit: {
            Type: "Task",
            Resource: "arn:aws:states:::lambda:invoke",
            Parameters: { FunctionName: { "Fn::GetAtt": ["commit", "Arn"] }, "Payload.$": "$" },
            End: true,
          },
        },
      },
      handlers: { commit },
    });
    expect(result.status).toBe("FAILED");
    expect(result.failure?.error).toBe("States.DataLimitExceeded");
    expect(result.failure?.cause).toContain("'EachItem' returned a result");
    expect(result.invocations.commit).toBeUndefined();
    expect(types(result.events).filter((type) => type === "MapIterationSucceeded")).toHaveLength(40);
    expect(types(result.events).slice(-2)).toEqual(["MapIterationSucceeded", "ExecutionFailed"]);
  });

  it("holds for a Task's result: a handler returning more than 256 KiB fails, and is not retried", async () => {
    const result = await execute({
      handlers: {
        plan: planFor(["sessions"]),
        collect: async (event) => ({ ...(event as object), done: true, padding: "x".repeat(300_000) }),
      },
    });
    expect(result.failure?.error).toBe("States.DataLimitExceeded");
    expect(result.invocations.collect).toBe(1);
    expect(types(result.events)).toContain("TaskFailed");
  });
});

describe("Lambda's 6 MB synchronous response quota", () => {
  it("fails an invocation whose response is larger, as Lambda does", async () => {
    const result = await execute({
      handlers: {
        plan: planFor(["sessions"]),
        collect: async () => ({ done: true, padding: "x".repeat(LAMBDA_RESPONSE_LIMIT_BYTES) }),
      },
    });
    expect(result.failure?.error).toBe("Function.ResponseSizeTooLarge");
    expect(JSON.parse(result.failure?.cause ?? "")).toEqual({
      errorType: "Function.ResponseSizeTooLarge",
      errorMessage: "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
    });
  });
});

describe("the 25,000-event history quota", () => {
  /** Count → MoreToCount loops `loops` times: 4 events per loop, 4 more for the start and the end. */
  const counting = (loops: number): AslDefinition => ({
    StartAt: "Count",
    States: {
      Count: { Type: "Pass", Parameters: { "n.$": "States.MathAdd($.n, 1)" }, Next: "MoreToCount" },
      MoreToCount: {
        Type: "Choice",
        Choices: [{ Variable: "$.n", NumericLessThan: loops, Next: "Count" }],
        Default: "Counted",
      },
      Counted: { Type: "Succeed" },
    },
  });

  it("lets event 25,000 be ExecutionSucceeded, and fails with States.Runtime when it would be anything else", async () => {
    const fits = await execute({ definition: counting(6249), input: { n: 0 } });
    expect(fits.status).toBe("SUCCEEDED");
    expect(fits.events).toHaveLength(HISTORY_EVENT_LIMIT);
    expect(fits.events.at(-1)?.type).toBe("ExecutionSucceeded");

    const over = await execute({ definition: counting(6250), input: { n: 0 } });
    expect(over.status).toBe("FAILED");
    expect(over.events).toHaveLength(HISTORY_EVENT_LIMIT);
    expect(over.events.at(-1)).toMatchObject({
      type: "ExecutionFailed",
      id: 25_000,
      previousEventId: 24_999,
      executionFailedEventDetails: {
        error: "States.Runtime",
        cause: "The execution reached the maximum number of history events (25000).",
      },
    });
    expect(over.events.at(-2)?.type).toBe("PassStateExited");
  });

  it("stops the deployed definition's collect loop at the quota: Commit never runs", async () => {
    const result = await execute({
      handlers: {
        plan: planFor(["sessions"]),
        collect: async (event) => ({ ...(event as object), done: false }),
      },
    });
    expect(result.failure?.error).toBe("States.Runtime");
    expect(result.events).toHaveLength(HISTORY_EVENT_LIMIT);
    expect(result.invocations.commit).toBeUndefined();
    // Each loop adds 7 events: ~3,570 invocations fit, where the engine's own count (4 each) allowed 6,000+.
    expect(result.invocations.collect).toBeGreaterThan(3_500);
    expect(result.invocations.collect).toBeLessThan(3_580);
  });

  it("counts events per item as AWS does: 11 for one invocation, 7 per further one, 3 per retry", async () => {
    let failOnce = true;
    const result = await execute({
      handlers: {
        plan: planFor(["sessions", "machines", "users"]),
        collect: async (event) => {
          const { entity, calls = 0 } = event as { entity: string; calls?: number };
          if (entity === "users" && failOnce) {
            failOnce = false;
            throw new StorageUnavailableError("S3 answered 503");
          }
          return {
            ...(event as object),
            calls: calls + 1,
            done: entity !== "machines" || calls + 1 === 3,
            runTotals: { entityHours: 1, records: calls + 1, parts: 1 },
          };
        },
        commit: async () => ({ status: "committed" }),
      },
    });
    expect(result.status).toBe("SUCCEEDED");
    expect(result.iterationEvents).toEqual({ 0: 11, 1: 4 + 3 * 7, 2: 11 + 3 });
    const users = result.events.filter(
      (event) => (event.mapIterationStartedEventDetails as { index?: number } | undefined)?.index === 2,
    )[0];
    const chain = result.events.filter((event) => event.id > (users?.id ?? 0)).slice(0, 13);
    expect(types(chain)).toEqual([
      "TaskStateEntered",
      "TaskScheduled",
      "TaskStarted",
      "TaskFailed",
      "TaskScheduled",
      "TaskStarted",
      "TaskSucceeded",
      "TaskStateExited",
      "ChoiceStateEntered",
      "ChoiceStateExited",
      "PassStateEntered",
      "PassStateExited",
      "MapIterationSucceeded",
    ]);
  });
});

describe("AWS-like latencies (the benchmark's --aws-overheads)", () => {
  // Lower bounds only: a slow machine makes an execution longer, never shorter.
  it("waits each state entered, a cold start per new container and a warm invocation per reused one", async () => {
    const latencies = { stateTransitionMs: 40, warmInvokeMs: 15, coldInvokeMs: 120 };
    const startedAt: Record<string, number[]> = {};
    const timed =
      (key: string, handler: LocalHandler): LocalHandler =>
      (event, context) => {
        startedAt[key] = [...(startedAt[key] ?? []), performance.now()];
        return handler(event, context);
      };
    const begin = performance.now();
    const result = await execute({
      latencies,
      handlers: {
        plan: timed("plan", planFor(["sessions", "machines", "users"])),
        collect: timed("collect", async (event) => ({
          ...(event as object),
          done: true,
          runTotals: { entityHours: 1, records: 1, parts: 1 },
        })),
        commit: timed("commit", async () => ({ status: "committed" })),
      },
    });
    const wallMs = performance.now() - begin;
    expect(result.status).toBe("SUCCEEDED");
    const entered = result.events.filter((event) => event.type.endsWith("StateEntered")).length;
    // PlanHours, AnyHoursDue, the Map, PublishAndAdvance, Collected; three per iteration.
    expect(entered).toBe(5 + 3 * 3);
    const invokeMs = 3 * latencies.coldInvokeMs + 2 * latencies.warmInvokeMs;
    expect(wallMs).toBeGreaterThanOrEqual(entered * latencies.stateTransitionMs + invokeMs);
    const [first = 0, second = 0, third = 0] = startedAt.collect ?? [];
    // One iteration at a time: the second and third reuse the first's container, after the Choice and the
    // Pass ending the iteration before and their own Task.
    expect(second - first).toBeGreaterThanOrEqual(3 * latencies.stateTransitionMs + latencies.warmInvokeMs);
    expect(third - second).toBeGreaterThanOrEqual(3 * latencies.stateTransitionMs + latencies.warmInvokeMs);
    // The first waited PlanHours' transition and a cold start before Plan ran.
    expect(startedAt.plan?.[0] ?? 0).toBeGreaterThanOrEqual(
      begin + latencies.stateTransitionMs + latencies.coldInvokeMs,
    );
  });
});

describe("a failed Task's error, as Step Functions reports a lambda:invoke failure", () => {
  it("has the runtime's errorType as Error and its JSON error object as Cause", async () => {
    const result = await execute({
      handlers: {
        plan: async () => {
          throw new ConfigurationError("Invalid configuration: TOP_N must be an integer");
        },
      },
    });
    expect(result.failure?.error).toBe("ConfigurationError");
    const cause = JSON.parse(result.failure?.cause ?? "") as Record<string, unknown>;
    expect(cause).toMatchObject({
      errorType: "ConfigurationError",
      errorMessage: "Invalid configuration: TOP_N must be an integer",
    });
    expect((cause.trace as string[])[0]).toBe(
      "ConfigurationError: Invalid configuration: TOP_N must be an integer",
    );
    expect(result.events.find((event) => event.type === "TaskFailed")?.taskFailedEventDetails).toEqual({
      resourceType: "lambda",
      resource: "invoke",
      error: "ConfigurationError",
      cause: result.failure?.cause,
    });
  });
});

describe("the history of a real collection", () => {
  const NOW = Date.parse("2026-11-24T11:20:00Z");
  let stand: Stand;
  let api: LocalStepFunctions;
  const results: LocalCollectionResult[] = [];
  beforeAll(async () => {
    stand = await startStand({
      now: NOW,
      simulator: { volume: { sessions: 300, machines: 40 } },
      env: { FIRST_HOUR_UTC: "2026-11-24T09:00:00Z", ENTITIES: "sessions,machines" },
    });
    api = await startLocalStepFunctions({
      execute: async ({ name, input, redrive }) => {
        const result = await stand.run(name, { input, redrive });
        results.push(result);
        return result;
      },
    });
  });
  afterAll(async () => {
    await api.close();
    await stand.close();
  });

  it("is served by GetExecutionHistory to the real SDK, page by page, every field one AWS's model knows", async () => {
    const sfn = api.client();
    const { executionArn } = await sfn.send(
      new StartExecutionCommand({ stateMachineArn: api.stateMachineArn, name: "history-1", input: "{}" }),
    );
    await api.settled();
    const events = [];
    for await (const page of paginateGetExecutionHistory({ client: sfn, pageSize: 25 }, { executionArn })) {
      events.push(...(page.events ?? []));
    }
    const recorded = results.at(-1)?.history ?? [];
    expect(recorded.length).toBeGreaterThan(25);
    // The SDK keeps only members of AWS's model: what it parsed equals what the engine recorded.
    expect(events).toEqual(executionHistoryResponse(recorded, (ms) => new Date(ms)).events);
    const known = new Set<string>(Object.values(HistoryEventType));
    for (const event of events) expect(known).toContain(event.type);
    expect(events.map((event) => event.id)).toEqual(events.map((_, index) => index + 1));
    for (const event of events) expect(event.previousEventId).toBeLessThan(event.id ?? 0);
    expect(events.at(-1)?.type).toBe("ExecutionSucceeded");
    const mapStarted = events.find((event) => event.type === "MapStateStarted");
    // 2 hours × 2 entities in one run: the API's limit is not known yet, so one iteration (see planRuns)
    expect(mapStarted?.mapStateStartedEventDetails).toEqual({ length: 1 });

    const reversed = await sfn.send(
      new GetExecutionHistoryCommand({
        executionArn,
        reverseOrder: true,
        maxResults: 1,
        includeExecutionData: false,
      }),
    );
    expect(reversed.events?.[0]).toMatchObject({
      type: "ExecutionSucceeded",
      executionSucceededEventDetails: {},
    });
    expect(reversed.events?.[0]?.executionSucceededEventDetails?.output).toBeUndefined();
  });

  it("is written by `citrix-collector run --history FILE` in GetExecutionHistory's shape", async () => {
    const directory = mkdtempSync(path.join(os.tmpdir(), "citrix-collector-history-"));
    const file = path.join(directory, "history.json");
    try {
      // A process of its own, in a scratch directory: `run` keeps its local data under the working directory.
      const { code, stdout } = await spawnCli(["run", "--hours", "1", "--history", file], directory, {
        ENTITIES: "machines",
      });
      expect(code).toBe(0);
      const written = JSON.parse(readFileSync(file, "utf8")) as { events: Record<string, unknown>[] };
      expect(stdout).toContain(`History: ${file} (${written.events.length} events)`);
      expect(Object.keys(written)).toEqual(["events"]);
      const known = new Set<string>(Object.values(HistoryEventType));
      written.events.forEach((event, index) => {
        expect(event.id).toBe(index + 1);
        expect(known).toContain(event.type);
        expect(new Date(String(event.timestamp)).toISOString()).toBe(event.timestamp);
      });
      expect(written.events.map((event) => event.type)).toEqual([
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ChoiceStateEntered",
        "ChoiceStateExited",
        "MapStateEntered",
        "MapStateStarted",
        "MapIterationStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ChoiceStateEntered",
        "ChoiceStateExited",
        "PassStateEntered",
        "PassStateExited",
        "MapIterationSucceeded",
        "MapStateSucceeded",
        "MapStateExited",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "SucceedStateEntered",
        "SucceedStateExited",
        "ExecutionSucceeded",
      ]);
      const entered = written.events[1]?.stateEnteredEventDetails as { name: string; input: string };
      expect(entered.name).toBe("PlanHours");
      expect(JSON.parse(entered.input)).toEqual({});
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

const BIN = path.join(__dirname, "..", "..", "..", "bin", "citrix-collector.js");

function spawnCli(
  args: string[],
  cwd: string,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      env: { PATH: process.env.PATH, HOME: cwd, AWS_EC2_METADATA_DISABLED: "true", ...env },
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 30_000,
    });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout }));
  });
}
