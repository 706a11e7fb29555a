/**
 * One collection, run locally through the deployed state machine definition: `npm start` and
 * `citrix-collector run` (both parse their flags in cli/main.ts and land here).
 * Defaults: the built-in Citrix simulator and a local S3 server on 127.0.0.1, so it works offline.
 *   citrix "env"   use the CITRIX_* / API_BASE environment (a real tenant) instead of the simulator
 *   s3 "env"       use S3_BUCKET and the AWS SDK's own settings (AWS_ENDPOINT_URL_S3, credentials)
 *   hours N        on a first run, collect the last N eligible hours
 *   data DIR       keep the local bucket in DIR, so the next run continues from its watermark
 *   now TIME       plan as if the clock read TIME (or N hours from now), to see a later run's hours at once
 *   history FILE   write the execution's history there, in the shape of GetExecutionHistory's response
 *   from/to HOUR   a backfill of those hours (the input {"backfill": {from, to}}) instead of a scheduled run
 *   name NAME      the execution's name (default: local-<time>-<random>, or backfill-<hours>-<random>)
 *   fault S[:E]    the built-in simulator answers (entity E's) data requests with HTTP status S, this run only
 * The functions' JSON log and EMF metric lines go to .local-data/run-<time>/collector.log (verbose: stderr);
 * only the newest few run folders are kept.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { DescribeExecutionCommand, StartExecutionCommand } from "@aws-sdk/client-sfn";
import { configProblems, type Env, loadPlanningRules } from "../functions/lib/config/config";
import { HOUR_MS } from "../functions/lib/config/hours";
import { s3ClientFor } from "../functions/lib/runtime";
import type { LocalCollectionResult } from "../local/collection";
import { executionHistoryResponse } from "../local/execution-history";
import { failedStateIn, formatFailedState, type HistoryLink } from "../local/failure";
import { backfillExecutionName, checkedBackfillHours } from "./backfill";
import {
  executionNameProblem,
  formatCount,
  missingCredentials,
  noCredentialsProblem,
  type Output,
  UsageError,
} from "./context";
import { LOCAL_BUCKET, openLocalStand } from "./local-stand";

/** The clock a run plans by: a fixed UTC time, or some hours ahead of the real clock. */
export type RunClock = { at: number } | { hoursAhead: number };

export interface LocalRunOptions {
  citrix: "simulator" | "env";
  s3: "local" | "env";
  /** On a first run, how many of the newest eligible hours to collect. */
  hours: number;
  /** A directory (relative to the working directory) that keeps the local bucket and executions between runs. */
  data?: string;
  /** Default: the real clock. */
  now?: RunClock;
  /** Log lines to stderr instead of the run's log file. */
  verbose: boolean;
  /** Where to write the execution's history (GetExecutionHistory's response, timestamps as ISO-8601). */
  history?: string;
  /** With `to`: backfill these hours (UTC, inclusive) instead of running as the schedule does. */
  from?: string;
  to?: string;
  /** The execution's name; by default one no other run can have. */
  name?: string;
  /** The built-in simulator answers the data requests (of one entity) with this HTTP status during this run. */
  fault?: SimulatedFault;
}

/** `run --fault 403:users`: an HTTP status, and the entity whose requests get it (default: every entity). */
export interface SimulatedFault {
  status: number;
  entity?: string;
}

export interface LocalRunIo {
  env: Env;
  cwd: string;
  stdout: Output;
  stderr: Output;
  now: () => number;
}

/**
 * Runs one execution locally through the local Step Functions API; resolves to the process exit code (0 when
 * it succeeded). Settings the run lacks, a bad range or name throw a UsageError naming all of them, before
 * anything is started or requested.
 */
export async function runLocally(options: LocalRunOptions, io: LocalRunIo): Promise<number> {
  if (options.data !== undefined && options.s3 === "env") {
    throw new UsageError(
      "--data keeps the local S3 bucket between runs: with --s3 env the bucket is S3_BUCKET",
    );
  }
  if ((options.from === undefined) !== (options.to === undefined)) {
    throw new UsageError("a backfill run takes both --from and --to");
  }
  if (options.fault !== undefined && options.citrix === "env") {
    throw new UsageError("--fault is answered by the built-in Citrix simulator: leave out --citrix env");
  }
  const nameProblem = options.name === undefined ? undefined : executionNameProblem(options.name);
  if (nameProblem) throw new UsageError(`--name: ${nameProblem}`);
  const problems = await missingSettings(options, io.env);
  if (problems.length > 0) {
    const sources = [options.citrix === "env" && "--citrix env", options.s3 === "env" && "--s3 env"];
    throw new UsageError(`run ${sources.filter(Boolean).join(" ")}: ${problems.join("; ")}`);
  }
  const started = io.now();
  const offsetMs =
    options.now === undefined
      ? 0
      : "at" in options.now
        ? options.now.at - started
        : options.now.hoursAhead * HOUR_MS;
  const now = () => io.now() + offsetMs;
  const backfillHours =
    options.from !== undefined && options.to !== undefined
      ? checkedBackfillHours(options.from, options.to, now(), loadPlanningRules(io.env))
      : undefined;
  const backfill = backfillHours && { from: backfillHours[0] as string, to: backfillHours.at(-1) as string };
  const name =
    options.name ?? (backfill ? backfillExecutionName(backfill.from, backfill.to) : localRunName(now()));
  const out = (line = "") => io.stdout.write(`${line}\n`);
  // Lasts as long as this process: a redrive in the next one finds the API well again.
  const fault = options.fault && {
    kind: "status" as const,
    times: Number.MAX_SAFE_INTEGER,
    ...options.fault,
  };
  const stand = await openLocalStand({ ...options, now, fault }, io);
  try {
    const kept = options.data === undefined ? "" : ", kept for the next run";
    out(
      `Collecting from ${stand.simulator ? `the built-in Citrix simulator (${stand.simulator.apiBase})` : stand.config.citrix.apiBase} into ${
        stand.s3Server
          ? `local S3 ${stand.s3Server.endpoint} (files in ${stand.s3Server.directory}${kept})`
          : `s3://${stand.config.bucket}`
      }`,
    );
    if (backfill) {
      out(`Backfill of ${backfillHours?.length} hour(s), ${backfill.from} … ${backfill.to}`);
    }
    const sfn = stand.api.client();
    const { executionArn } = await sfn.send(
      new StartExecutionCommand({
        stateMachineArn: stand.api.stateMachineArn,
        name,
        input: JSON.stringify(backfill ? { backfill } : {}),
      }),
    );
    out(`Execution ${name}`);
    await stand.api.settled();
    const result = stand.results.get(name);
    if (!result) {
      // The engine itself failed (no state's error): the API recorded what it threw.
      const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
      throw new Error(`${described.error}: ${described.cause}`);
    }
    stand.progress.finish();
    printSummary(result, out);
    if (result.status === "FAILED" && options.data !== undefined) {
      out(`Once the cause is fixed: citrix-collector redrive ${name} --data ${options.data}`);
    }
    if (!options.verbose) out(`Log lines: ${stand.logFile}`);
    if (options.history) {
      const history = executionHistoryResponse(result.history, (ms) => new Date(ms).toISOString());
      writeFileSync(options.history, `${JSON.stringify(history, null, 2)}\n`);
      out(`History: ${path.resolve(options.history)} (${result.history.length} events)`);
    }
    return result.status === "SUCCEEDED" ? 0 : 1;
  } finally {
    await stand.close();
  }
}

/**
 * "local-20261124T112000-9f86d081": the run's time, readable, and 32 random bits, so that runs started at the
 * same second in two shells never share a name (Step Functions refuses a name used before). Letters, digits
 * and "-" only, as Plan requires.
 */
export function localRunName(nowMs: number): string {
  const time = new Date(nowMs).toISOString().replace(/[-:]/g, "").slice(0, 15);
  return `local-${time}-${randomBytes(4).toString("hex")}`;
}

/**
 * Every setting a run with these options lacks: the Lambdas' own check of what the run takes from this shell
 * (the simulator and the local bucket bring their own), then AWS credentials, and a region for S3, when the
 * run calls AWS. Resolving credentials reads the SDK's sources (variables, profile files, instance metadata)
 * and sends no request to S3, Secrets Manager or Citrix.
 */
async function missingSettings(options: LocalRunOptions, env: Env): Promise<string[]> {
  const own = options.s3 === "local" ? { ...env, S3_BUCKET: LOCAL_BUCKET } : env;
  const problems = configProblems(own, { citrix: options.citrix === "env" });
  const readsSecret = options.citrix === "env" && (env.CITRIX_SECRET_ARN ?? "").trim() !== "";
  if (options.s3 === "local" && !readsSecret) return problems;
  const client = s3ClientFor(env);
  try {
    await client.config.credentials();
  } catch (error) {
    const missing = missingCredentials(error);
    if (!missing) throw error;
    problems.push(noCredentialsProblem(missing));
  }
  if (options.s3 === "env") {
    // The SDK's "Region is missing" when neither AWS_REGION nor the profile's config names one.
    await client.config.region().catch(() => {
      problems.push("AWS_REGION is required (the bucket's region), unless the AWS profile's config sets one");
    });
  }
  client.destroy();
  return problems;
}

function printSummary(result: LocalCollectionResult, out: (line?: string) => void): void {
  out();
  const collected = result.collected ?? [];
  if (collected.length > 0) {
    const total = (count: "pages" | "records" | "parts") =>
      formatCount(collected.reduce((sum, item) => sum + item[count], 0));
    // Invocations of the collect function, not summed over entity-hours: one collects a run of them in turn.
    out(
      `Collected ${formatCount(collected.length)} entity-hour(s): ${total("pages")} pages, ${total("records")} records, ${total("parts")} parts, ${formatCount(result.invocations.collect ?? 0)} collect invocation(s)`,
    );
  }
  if (result.status === "FAILED") {
    out(`FAILED: ${result.error?.name}: ${result.error?.message}`);
    const failedIn = failedStateIn(result.history as HistoryLink[]);
    if (failedIn) out(`failed in ${formatFailedState(failedIn)}`);
    out(`watermark unchanged: ${result.plan?.watermark.hourUtc ?? "(not read)"}`);
  } else if (result.commit === undefined) {
    // A Commit's outcome is on the progress display's "Published" line; without one, say why.
    const deferred = Object.keys(result.plan?.deferred ?? {});
    out(
      deferred.length > 0
        ? `Nothing to collect: the due hours are being collected by ${deferred.join(", ")}.`
        : `Nothing due: the watermark (${result.plan?.watermark.hourUtc ?? "none"}) is at the newest eligible hour.`,
    );
  }
}
