import { readFileSync } from "node:fs";
import path from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { parse } from "yaml";
import { createHandler as createCollectHandler } from "../functions/collect/handler";
import { createHandler as createCommitHandler } from "../functions/commit/handler";
import type { Env } from "../functions/lib/config";
import type { CollectOutput, CommitOutput, PlanOutput } from "../functions/lib/contracts";
import { createLogger, type LogSink, serviceName } from "../functions/lib/log";
import { createMetricsFactory, type MetricsSink } from "../functions/lib/metrics";
import {
  type CitrixDeps,
  runtimeFromEnvironment,
  type StoreRuntime,
  storeRuntimeFromEnvironment,
} from "../functions/lib/runtime";
import { createHandler as createPlanHandler } from "../functions/plan/handler";
import { type JsonValue, type LocalHandler, startLocalExecution } from "./state-machine";

export const SERVERLESS_PATH = path.join(__dirname, "..", "serverless.yml");

/** The functions serverless.yml deploys, with their timeouts (the Lambda context counts down from them). */
export function deployedFunctions(
  file = SERVERLESS_PATH,
): Record<string, { handler: string; timeoutMs: number }> {
  const service = parse(readFileSync(file, "utf8")) as {
    functions: Record<string, { handler: string; timeout?: number }>;
  };
  return Object.fromEntries(
    Object.entries(service.functions).map(([key, fn]) => [
      key,
      { handler: fn.handler, timeoutMs: (fn.timeout ?? 6) * 1000 },
    ]),
  );
}

export interface LocalCollectionOptions {
  env: Env;
  s3: S3Client;
  executionName: string;
  /** Execution input: {} for a scheduled run. */
  input?: JsonValue;
  now?: () => number;
  logSink?: LogSink;
  /** Where the functions' EMF metric lines go; by default with the log lines, as in a Lambda log stream. */
  metricsSink?: MetricsSink;
  /** Overrides the deployed timeouts, e.g. to force the collect loop to continue across invocations. */
  timeoutsMs?: Record<string, number>;
  retryPauseMs?: number;
  /** Wraps each handler, so tests can kill or slow an invocation. */
  wrap?: (functionKey: string, handler: LocalHandler) => LocalHandler;
  /** Redrives a failed execution: starts at the state that failed, with the input it had (see startAt). */
  redrive?: RedrivePoint;
  /** Adjusts each function's per-container runtime once it is built (tests swap in an instrumented store). */
  adaptRuntime?: <R extends StoreRuntime>(runtime: R) => R;
  /** The Secrets Manager client and the Citrix client's backoff the collect function is built over. */
  citrix?: CitrixDeps;
}

/** Where a failed execution stopped: the top-level state that failed and the input it was given. */
export interface RedrivePoint {
  state: string;
  input: JsonValue;
}

export interface LocalCollectionResult {
  status: "SUCCEEDED" | "FAILED";
  /** What each stage handed on, as the console shows it in the states' outputs. */
  plan: PlanOutput | undefined;
  collected: CollectOutput[] | undefined;
  commit: CommitOutput | undefined;
  output: unknown;
  error: { name: string; cause: string } | undefined;
  /** Set when the execution failed: what a Redrive would restart. */
  redrive: RedrivePoint | undefined;
  /** Events per Map iteration, by index: what each item adds to the execution's history. */
  iterationEvents: Record<number, number>;
  /** Task invocations per state name, including retries (Step Functions history grows with these). */
  invocations: Record<string, number>;
  retries: number;
}

/**
 * Runs one execution of the deployed state machine locally: the definition file in
 * aws-local-stepfunctions, each Task bound to the real handler built over the given clients.
 */
export async function runLocalCollection(options: LocalCollectionOptions): Promise<LocalCollectionResult> {
  const functions = deployedFunctions();
  // Built on first use, as in a Lambda container, so a bad configuration fails the first state by name. Plan
  // and commit load theirs without the Citrix settings, as they are deployed without them.
  const service = serviceName(options.env);
  const log = createLogger({}, options.logSink, service);
  const adapt = <R extends StoreRuntime>(build: () => R): (() => R) => {
    let adapted: R | undefined;
    return () => (adapted ??= options.adaptRuntime ? options.adaptRuntime(build()) : build());
  };
  const collectRuntime = adapt(runtimeFromEnvironment(options.env, () => options.s3, log, options.citrix));
  const storeRuntime = adapt(storeRuntimeFromEnvironment(options.env, () => options.s3, log));
  const metrics = createMetricsFactory(service, options.metricsSink ?? options.logSink);
  const handlers: Record<string, LocalHandler> = {
    plan: createPlanHandler({ runtime: storeRuntime, metrics, now: options.now ?? Date.now }),
    collect: createCollectHandler({ runtime: collectRuntime, metrics }),
    commit: createCommitHandler({ runtime: storeRuntime, metrics }),
  };
  const invocations: Record<string, number> = {};
  const wrapped = Object.fromEntries(
    Object.entries(handlers).map(([key, handler]) => {
      const inner = options.wrap ? options.wrap(key, handler) : handler;
      const counted: LocalHandler = (event, context) => {
        invocations[key] = (invocations[key] ?? 0) + 1;
        return inner(event, context);
      };
      return [key, counted];
    }),
  );
  const timeoutsMs = Object.fromEntries(Object.entries(functions).map(([key, fn]) => [key, fn.timeoutMs]));
  const execution = startLocalExecution({
    handlers: wrapped,
    executionName: options.executionName,
    input: options.redrive?.input ?? options.input ?? {},
    startAt: options.redrive?.state,
    timeoutsMs: { ...timeoutsMs, ...options.timeoutsMs },
    retryPauseMs: options.retryPauseMs,
  });

  let retries = 0;
  let failure: LocalCollectionResult["error"];
  const outputs: Record<string, unknown> = {};
  let lastEntered: RedrivePoint | undefined;
  const iterationEvents: Record<number, number> = {};
  const watching = (async () => {
    for await (const event of execution.eventLogs) {
      if (event.type === "StateRetried") retries++;
      if ("index" in event && event.index !== undefined) {
        iterationEvents[event.index] = (iterationEvents[event.index] ?? 0) + 1;
      }
      if (event.type === "ExecutionFailed") failure = { name: event.Error, cause: String(event.Cause ?? "") };
      if (event.type === "StateExited") outputs[event.state.name] = event.state.output;
      // States inside a Map iteration carry the iteration index; top-level states do not.
      if (event.type === "StateEntered" && event.index === undefined) {
        lastEntered = { state: event.state.name, input: event.state.input as JsonValue };
      }
    }
  })();
  let output: unknown;
  try {
    output = await execution.result;
  } catch (error) {
    failure ??= { name: error instanceof Error ? error.name : "Error", cause: String(error) };
  }
  await watching;
  return {
    status: failure ? "FAILED" : "SUCCEEDED",
    plan: outputs.PlanHours as PlanOutput | undefined,
    collected: (outputs.CollectEntityHours as { collected?: CollectOutput[] } | undefined)?.collected,
    commit: outputs.PublishAndAdvance as CommitOutput | undefined,
    output,
    error: failure,
    redrive: failure ? lastEntered : undefined,
    iterationEvents,
    invocations,
    retries,
  };
}
