/**
 * What the local commands run against: the built-in Citrix simulator (or a real tenant), a local S3 server
 * (or S3_BUCKET), and the local Step Functions API in front of the engine, each execution bound to the real
 * handlers. With --data DIR the bucket and the executions (DIR/step-functions/NAME.json) outlive the process,
 * so `run`, `backfill`, `status` and `redrive` in separate invocations act on the same state machine, as
 * they do on AWS.
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import {
  type CollectorConfig,
  type Env,
  loadConfig,
  loadWatermarkLocation,
  type WatermarkLocation,
} from "../functions/lib/config/config";
import {
  type CollectOutput,
  type CommitOutput,
  collectInputSchema,
  type PlanOutput,
} from "../functions/lib/config/contracts";
import { formatHour, HOUR_MS } from "../functions/lib/config/hours";
import type { ExecutionStatusLookup } from "../functions/lib/feed/plan-run";
import { newestEligibleHour } from "../functions/lib/feed/planner";
import { s3ClientFor } from "../functions/lib/runtime";
import { type LocalCollectionResult, runLocalCollection } from "../local/collection";
import { directoryExecutionStore, type ExecutionStore } from "../local/execution-store";
import { type LocalStepFunctions, startLocalStepFunctions } from "../local/sfn-api-server";
import type { LocalHandler } from "../local/state-machine";
import { type CitrixSimulator, type Fault, startCitrixSimulator } from "../stand-ins/citrix-simulator";
import { type LocalS3, startLocalS3 } from "../stand-ins/s3-server";
import { type CliContext, FIRST_RUN_HOURS, type Output, UsageError } from "./context";
import { CollectionProgress } from "./progress";

export const LOCAL_BUCKET = "citrix-analytics-local";
/** Under the working directory: a folder per run, holding its log and (without --data) its bucket. */
const LOCAL_DATA = ".local-data";
/** Run folders kept, this run's included: each holds 5–11 MB, and only the latest are ever looked at. */
const KEPT_RUN_FOLDERS = 5;
/** Under --data DIR, beside the bucket's folder: one file per execution. */
const EXECUTIONS_FOLDER = "step-functions";

export interface LocalStandOptions {
  citrix: "simulator" | "env";
  s3: "local" | "env";
  /** On a first run, how many of the newest eligible hours to collect. */
  hours: number;
  /** A directory (relative to the working directory) that keeps the bucket and the executions. */
  data?: string;
  /** The clock the functions plan by. */
  now: () => number;
  /** Log lines to stderr instead of the run's log file. */
  verbose: boolean;
  /** A fault the built-in simulator answers with while this process runs (its data is not touched). */
  fault?: Fault;
}

export interface LocalStandIo {
  env: Env;
  cwd: string;
  stdout: Output;
  stderr: Output;
  now: () => number;
}

export interface LocalStand {
  /** The functions' environment: this shell's, with the simulator's and the local bucket's settings. */
  env: Env;
  config: CollectorConfig;
  simulator: CitrixSimulator | undefined;
  s3Server: LocalS3 | undefined;
  api: LocalStepFunctions;
  progress: CollectionProgress;
  /** Where the functions' log lines go, unless verbose. */
  logFile: string;
  /** The engine's result of each execution's latest run here, by execution name. */
  results: Map<string, LocalCollectionResult>;
  /** The operator CLI's context with Step Functions and S3 pointed at this stand. */
  operatorContext(ctx: CliContext): CliContext;
  /** Waits for every execution started here to stop, then stops the servers. */
  close(): Promise<void>;
}

export async function openLocalStand(options: LocalStandOptions, io: LocalStandIo): Promise<LocalStand> {
  const env: Env = { ...io.env };
  const started = io.now();
  const localData = path.resolve(io.cwd, LOCAL_DATA);
  // Named by the real clock, so the folders sort in the order the runs happened.
  const runDirectory = path.join(localData, `run-${new Date(started).toISOString().replace(/[:.]/g, "-")}`);
  const dataDirectory =
    options.data === undefined ? path.join(runDirectory, "s3") : path.resolve(io.cwd, options.data);
  mkdirSync(runDirectory, { recursive: true });
  removeOldRunFolders(localData, dataDirectory);
  const logFile = path.join(runDirectory, "collector.log");
  let simulator: CitrixSimulator | undefined;
  let s3Server: LocalS3 | undefined;
  let api: LocalStepFunctions | undefined;
  try {
    if (options.citrix === "simulator") {
      simulator = await startCitrixSimulator();
      if (options.fault) simulator.inject(options.fault);
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
      s3Server = await startLocalS3({ directory: dataDirectory, buckets: [LOCAL_BUCKET] });
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
      newestEligibleHour(options.now(), config.lookbackMinutes) - (options.hours - 1) * HOUR_MS,
    );
    const s3: S3Client = s3Server ? s3Server.client() : s3ClientFor(env);
    const store =
      options.data === undefined
        ? undefined
        : directoryExecutionStore(path.join(dataDirectory, EXECUTIONS_FOLDER));
    const progress = new CollectionProgress(io.stdout);
    const results = new Map<string, LocalCollectionResult>();
    const write = options.verbose
      ? (line: string) => io.stderr.write(line)
      : (line: string) => appendFileSync(logFile, line);
    const logSink = (line: string) => {
      write(line);
      progress.logged(line);
    };
    const localApi = await startLocalStepFunctions({
      store,
      execute: async ({ name, input, redrive }) => {
        const result = await runLocalCollection({
          env,
          s3: (credentials) => (credentials && s3Server ? s3Server.client(credentials) : s3),
          // Against a bucket in AWS, AWS enforces the caller's own permissions; the local one enforces the roles.
          roles: s3Server ? "deployed" : "caller",
          now: options.now,
          executionName: name,
          input,
          redrive,
          retryPauseMs: 1000,
          logSink,
          wrap: (key, handler) => reportingTo(progress, key, handler),
          executionStatus: store && executionStatusIn(store),
        });
        results.set(name, result);
        return result;
      },
    });
    api = localApi;
    const servers = { simulator, s3Server };
    return {
      env,
      config,
      ...servers,
      api: localApi,
      progress,
      logFile,
      results,
      operatorContext: (ctx) => ({
        ...ctx,
        env: { ...env, STATE_MACHINE_ARN: localApi.stateMachineArn },
        sfn: () => localApi.client(),
        s3: () => s3,
      }),
      async close() {
        await localApi.close();
        await servers.simulator?.close();
        await servers.s3Server?.close();
      },
    };
  } catch (error) {
    await api?.close();
    await simulator?.close();
    await s3Server?.close();
    throw error;
  }
}

/**
 * `status`, `backfill` and `redrive` with --data DIR: the command as against AWS, but through the local Step
 * Functions API over DIR's executions and bucket, started in this process. An execution it starts or redrives
 * runs here, so the process ends when that execution stopped, --wait or not.
 */
export async function operateLocally(
  ctx: CliContext,
  data: string,
  command: (local: CliContext) => Promise<number>,
): Promise<number> {
  const stand = await openLocalStand(
    { citrix: "simulator", s3: "local", hours: FIRST_RUN_HOURS, data, now: ctx.now, verbose: false },
    ctx,
  );
  try {
    return await command({ ...stand.operatorContext(ctx), localData: data });
  } finally {
    await stand.close();
    stand.progress.finish();
  }
}

/**
 * `feed --data DIR`: the bucket that `run --data DIR` keeps, served by the local S3 stand-in on DIR in this
 * process (s3rver's files are an internal format), read by the operator's layout settings in this shell.
 */
export async function readLocalBucket(
  ctx: CliContext,
  data: string,
  read: (s3: S3Client, location: WatermarkLocation) => Promise<number>,
): Promise<number> {
  const directory = path.resolve(ctx.cwd, data);
  if (!existsSync(path.join(directory, LOCAL_BUCKET))) {
    throw new UsageError(
      `${data} holds no local bucket (${LOCAL_BUCKET}): \`citrix-collector run --data ${data}\` makes one`,
    );
  }
  const location = loadWatermarkLocation({ ...ctx.env, S3_BUCKET: LOCAL_BUCKET });
  const s3Server = await startLocalS3({ directory, buckets: [LOCAL_BUCKET] });
  try {
    return await read(s3Server.client(), location);
  } finally {
    await s3Server.close();
  }
}

/**
 * Plan asks whether a lease holder still runs: with the executions kept in a directory, one running in another
 * process (a `run` started in a second shell) counts, and one whose process is gone does not.
 */
function executionStatusIn(store: ExecutionStore): ExecutionStatusLookup {
  return async (executionName) => (store.get(executionName)?.status === "RUNNING" ? "running" : "ended");
}

/** Removes all but the newest run folders (their names sort by time), never one holding the kept bucket. */
function removeOldRunFolders(localData: string, dataDirectory: string): void {
  const runs = readdirSync(localData, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && entry.name.startsWith("run-"))
    .map((entry) => path.join(localData, entry.name))
    .sort();
  for (const folder of runs.slice(0, -KEPT_RUN_FOLDERS)) {
    if (!`${dataDirectory}${path.sep}`.startsWith(`${folder}${path.sep}`)) {
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
