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
 * The functions' JSON log and EMF metric lines go to .local-data/run-<time>/collector.log (verbose: stderr);
 * only the newest few run folders are kept.
 */
import { appendFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { configProblems, type Env, loadConfig } from "../functions/lib/config/config";
import {
  type CollectOutput,
  type CommitOutput,
  collectInputSchema,
  type PlanOutput,
} from "../functions/lib/config/contracts";
import { formatHour, HOUR_MS } from "../functions/lib/config/hours";
import { newestEligibleHour } from "../functions/lib/feed/planner";
import { s3ClientFor } from "../functions/lib/runtime";
import { type LocalCollectionResult, runLocalCollection } from "../local/collection";
import { executionHistoryResponse } from "../local/execution-history";
import { failedStateIn, formatFailedState, type HistoryLink } from "../local/failure";
import type { LocalHandler } from "../local/state-machine";
import { type CitrixSimulator, startCitrixSimulator } from "../stand-ins/citrix-simulator";
import { type LocalS3, startLocalS3 } from "../stand-ins/s3-server";
import { formatCount, missingCredentials, noCredentialsProblem, type Output, UsageError } from "./context";
import { CollectionProgress } from "./progress";

const LOCAL_BUCKET = "citrix-analytics-local";
/** Under the working directory: a folder per run, holding its log and (without --data) its bucket. */
const LOCAL_DATA = ".local-data";
/** Run folders kept, this run's included: each holds 5–11 MB, and only the latest are ever looked at. */
const KEPT_RUN_FOLDERS = 5;

/** The clock a run plans by: a fixed UTC time, or some hours ahead of the real clock. */
export type RunClock = { at: number } | { hoursAhead: number };

export interface LocalRunOptions {
  citrix: "simulator" | "env";
  s3: "local" | "env";
  /** On a first run, how many of the newest eligible hours to collect. */
  hours: number;
  /** A directory (relative to the working directory) that keeps the local bucket between runs. */
  data?: string;
  /** Default: the real clock. */
  now?: RunClock;
  /** Log lines to stderr instead of the run's log file. */
  verbose: boolean;
  /** Where to write the execution's history (GetExecutionHistory's response, timestamps as ISO-8601). */
  history?: string;
}

export interface LocalRunIo {
  env: Env;
  cwd: string;
  stdout: Output;
  stderr: Output;
  now: () => number;
}

/**
 * Runs one execution locally; resolves to the process exit code (0 when it succeeded). Settings the run
 * lacks throw a UsageError naming all of them, before anything is started or requested.
 */
export async function runLocally(options: LocalRunOptions, io: LocalRunIo): Promise<number> {
  if (options.data !== undefined && options.s3 === "env") {
    throw new UsageError(
      "--data keeps the local S3 bucket between runs: with --s3 env the bucket is S3_BUCKET",
    );
  }
  const problems = await missingSettings(options, io.env);
  if (problems.length > 0) {
    const sources = [options.citrix === "env" && "--citrix env", options.s3 === "env" && "--s3 env"];
    throw new UsageError(`run ${sources.filter(Boolean).join(" ")}: ${problems.join("; ")}`);
  }
  const env: Env = { ...io.env };
  const started = io.now();
  const offsetMs =
    options.now === undefined
      ? 0
      : "at" in options.now
        ? options.now.at - started
        : options.now.hoursAhead * HOUR_MS;
  const now = () => io.now() + offsetMs;
  const localData = path.resolve(io.cwd, LOCAL_DATA);
  // Named by the real clock, so the folders sort in the order the runs happened.
  const runDirectory = path.join(localData, `run-${new Date(started).toISOString().replace(/[:.]/g, "-")}`);
  const bucketDirectory =
    options.data === undefined ? path.join(runDirectory, "s3") : path.resolve(io.cwd, options.data);
  mkdirSync(runDirectory, { recursive: true });
  removeOldRunFolders(localData, bucketDirectory);
  const logFile = path.join(runDirectory, "collector.log");
  const out = (line = "") => io.stdout.write(`${line}\n`);
  let simulator: CitrixSimulator | undefined;
  let s3Server: LocalS3 | undefined;
  try {
    if (options.citrix === "simulator") {
      simulator = await startCitrixSimulator();
      Object.assign(env, {
        API_BASE: simulator.apiBase,
        TOKEN_URL: simulator.tokenUrl,
        CITRIX_CUSTOMER_ID: simulator.customerId,
        CITRIX_CLIENT_ID: simulator.clientId,
        CITRIX_CLIENT_SECRET: simulator.clientSecret,
        // The simulator's credentials replace a secret this shell may name for a real tenant.
        CITRIX_SECRET_ARN: undefined,
      });
    }
    if (options.s3 === "local") {
      s3Server = await startLocalS3({ directory: bucketDirectory, buckets: [LOCAL_BUCKET] });
      Object.assign(env, {
        S3_BUCKET: LOCAL_BUCKET,
        AWS_ENDPOINT_URL_S3: s3Server.endpoint,
        AWS_REGION: env.AWS_REGION ?? "us-east-1",
        AWS_ACCESS_KEY_ID: "S3RVER",
        AWS_SECRET_ACCESS_KEY: "S3RVER",
      });
    }
    const config = loadConfig(env);
    // Only a first run (no watermark in the bucket) starts here; later ones continue from the watermark.
    env.FIRST_HOUR_UTC ??= formatHour(
      newestEligibleHour(now(), config.lookbackMinutes) - (options.hours - 1) * HOUR_MS,
    );

    const s3 = s3Server ? s3Server.client() : s3ClientFor(env);
    const kept = options.data === undefined ? "" : ", kept for the next run";
    out(
      `Collecting from ${simulator ? `the built-in Citrix simulator (${simulator.apiBase})` : config.citrix.apiBase} into ${
        s3Server
          ? `local S3 ${s3Server.endpoint} (files in ${s3Server.directory}${kept})`
          : `s3://${config.bucket}`
      }`,
    );
    const progress = new CollectionProgress(io.stdout);
    const result = await runLocalCollection({
      env,
      s3: (credentials) => (credentials && s3Server ? s3Server.client(credentials) : s3),
      // Against a bucket in AWS, AWS enforces the caller's own permissions; the local one enforces the roles.
      roles: s3Server ? "deployed" : "caller",
      now,
      executionName: `local-${new Date(now())
        .toISOString()
        .replace(/[^0-9]/g, "")
        .slice(0, 14)}`,
      retryPauseMs: 1000,
      logSink: options.verbose ? (line) => io.stderr.write(line) : (line) => appendFileSync(logFile, line),
      wrap: (key, handler) => reportingTo(progress, key, handler),
    });
    progress.finish();
    printSummary(result, out);
    if (!options.verbose) out(`Log lines: ${logFile}`);
    if (options.history) {
      const history = executionHistoryResponse(result.history, (ms) => new Date(ms).toISOString());
      writeFileSync(options.history, `${JSON.stringify(history, null, 2)}\n`);
      out(`History: ${path.resolve(options.history)} (${result.history.length} events)`);
    }
    return result.status === "SUCCEEDED" ? 0 : 1;
  } finally {
    await simulator?.close();
    await s3Server?.close();
  }
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

/** Removes all but the newest run folders (their names sort by time), never one holding the kept bucket. */
function removeOldRunFolders(localData: string, bucketDirectory: string): void {
  const runs = readdirSync(localData, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && entry.name.startsWith("run-"))
    .map((entry) => path.join(localData, entry.name))
    .sort();
  for (const folder of runs.slice(0, -KEPT_RUN_FOLDERS)) {
    if (!`${bucketDirectory}${path.sep}`.startsWith(`${folder}${path.sep}`)) {
      rmSync(folder, { recursive: true, force: true });
    }
  }
}

/** Tells the progress display what each invocation was given and what it returned. */
function reportingTo(progress: CollectionProgress, key: string, handler: LocalHandler): LocalHandler {
  return async (event, context) => {
    const item = key === "collect" ? collectInputSchema.safeParse(event).data : undefined;
    if (item) progress.invoking(item.entity, item.hourUtc);
    try {
      const result = await handler(event, context);
      // The handlers' own outputs, as their contracts declare them.
      if (key === "plan") progress.planned(result as PlanOutput);
      if (key === "collect") progress.invoked(result as CollectOutput);
      if (key === "commit") progress.committed(result as CommitOutput);
      return result;
    } catch (error) {
      if (item) progress.failed(item.entity, item.hourUtc, error);
      throw error;
    }
  };
}

function printSummary(result: LocalCollectionResult, out: (line?: string) => void): void {
  out();
  const collected = result.collected ?? [];
  if (collected.length > 0) {
    const total = (count: "pages" | "records" | "parts" | "invocations") =>
      formatCount(collected.reduce((sum, item) => sum + item.progress[count], 0));
    out(
      `Collected ${formatCount(collected.length)} entity-hour(s): ${total("pages")} pages, ${total("records")} records, ${total("parts")} parts, ${total("invocations")} invocations`,
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
