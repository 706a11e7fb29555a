import { readFileSync } from "node:fs";
import path from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { parse } from "yaml";
import { createHandler as createCollectHandler } from "../functions/collect/handler";
import { createHandler as createCommitHandler } from "../functions/commit/handler";
import type { Env } from "../functions/lib/config";
import type { CollectOutput, CommitOutput, PlanOutput } from "../functions/lib/contracts";
import { createLogger, type LogSink } from "../functions/lib/log";
import { runtimeFromEnvironment } from "../functions/lib/runtime";
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
  /** Overrides the deployed timeouts, e.g. to force the collect loop to continue across invocations. */
  timeoutsMs?: Record<string, number>;
  retryPauseMs?: number;
  /** Wraps each handler, so tests can kill or slow an invocation. */
  wrap?: (functionKey: string, handler: LocalHandler) => LocalHandler;
}

export interface LocalCollectionResult {
  status: "SUCCEEDED" | "FAILED";
  /** What each stage handed on, as the console shows it in the states' outputs. */
  plan: PlanOutput | undefined;
  collected: CollectOutput[] | undefined;
  commit: CommitOutput | undefined;
  /** Set when PublishAndAdvance stood down because another execution published first. */
  supersededBy: { Error: string; Cause: string } | undefined;
  output: unknown;
  error: { name: string; cause: string } | undefined;
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
  // Built on first use, as in a Lambda container, so a bad configuration fails the Plan state by name.
  const deps = {
    runtime: runtimeFromEnvironment(options.env, () => options.s3, createLogger({}, options.logSink)),
  };
  const handlers: Record<string, LocalHandler> = {
    plan: createPlanHandler({ ...deps, now: options.now ?? Date.now }),
    collect: createCollectHandler(deps),
    commit: createCommitHandler(deps),
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
    input: options.input ?? {},
    timeoutsMs: { ...timeoutsMs, ...options.timeoutsMs },
    retryPauseMs: options.retryPauseMs,
  });

  let retries = 0;
  let failure: LocalCollectionResult["error"];
  const outputs: Record<string, unknown> = {};
  const watching = (async () => {
    for await (const event of execution.eventLogs) {
      if (event.type === "StateRetried") retries++;
      if (event.type === "ExecutionFailed") failure = { name: event.Error, cause: String(event.Cause ?? "") };
      if (event.type === "StateExited") outputs[event.state.name] = event.state.output;
    }
  })();
  let output: unknown;
  try {
    output = await execution.result;
  } catch (error) {
    failure ??= { name: error instanceof Error ? error.name : "Error", cause: String(error) };
  }
  await watching;
  const superseded = outputs.SupersededByAnotherExecution as
    | { supersededBy?: { Error: string; Cause: string } }
    | undefined;
  return {
    status: failure ? "FAILED" : "SUCCEEDED",
    plan: outputs.PlanHours as PlanOutput | undefined,
    collected: (outputs.CollectEntityHours as { collected?: CollectOutput[] } | undefined)?.collected,
    commit: outputs.PublishAndAdvance as CommitOutput | undefined,
    supersededBy: superseded?.supersededBy,
    output,
    error: failure,
    invocations,
    retries,
  };
}
