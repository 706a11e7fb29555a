/**
 * One collection, run locally through the deployed state machine definition: `npm start` and
 * `citrix-collector run` (both parse their flags in cli/main.ts and land here).
 * Defaults: the built-in Citrix simulator and a local S3 server on 127.0.0.1, so it works offline.
 *   citrix "env"   use the CITRIX_* / API_BASE environment (a real tenant) instead of the simulator
 *   s3 "env"       use S3_BUCKET and the AWS SDK's own settings (AWS_ENDPOINT_URL_S3, credentials)
 *   hours N        on a first run, collect the last N eligible hours
 *   history FILE   write the execution's history there, in the shape of GetExecutionHistory's response
 * The functions' JSON log and EMF metric lines go to .local-data/run-<time>/collector.log (verbose: stderr).
 */
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { failedStateIn, formatFailedState, type HistoryLink } from "../cli/failure";
import type { Env } from "../functions/lib/config";
import {
  type CollectOutput,
  type CommitOutput,
  collectInputSchema,
  type PlanOutput,
} from "../functions/lib/contracts";
import { formatHour, HOUR_MS } from "../functions/lib/hours";
import { newestEligibleHour } from "../functions/lib/planner";
import { s3ClientFor } from "../functions/lib/runtime";
import { type CitrixSimulator, startCitrixSimulator } from "./citrix-simulator";
import { type LocalCollectionResult, runLocalCollection } from "./collection";
import { executionHistoryResponse } from "./execution-history";
import { CollectionProgress, type Output } from "./progress";
import { type LocalS3, startLocalS3 } from "./s3-server";
import type { LocalHandler } from "./state-machine";

const LOCAL_BUCKET = "citrix-analytics-local";

export interface LocalRunOptions {
  citrix: "simulator" | "env";
  s3: "local" | "env";
  /** On a first run, how many of the newest eligible hours to collect. */
  hours: number;
  /** Log lines to stderr instead of the run's log file. */
  verbose: boolean;
  /** Where to write the execution's history (GetExecutionHistory's response, timestamps as ISO-8601). */
  history?: string;
}

export interface LocalRunIo {
  env: Env;
  stdout: Output;
  stderr: Output;
  now: () => number;
}

/** Runs one execution locally; resolves to the process exit code (0 when it succeeded). */
export async function runLocally(options: LocalRunOptions, io: LocalRunIo): Promise<number> {
  const env: Env = { ...io.env };
  const now = io.now();
  const runDirectory = path.resolve(
    ".local-data",
    `run-${new Date(now).toISOString().replace(/[:.]/g, "-")}`,
  );
  mkdirSync(runDirectory, { recursive: true });
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
      const directory = path.join(runDirectory, "s3");
      mkdirSync(directory, { recursive: true });
      s3Server = await startLocalS3({ directory, buckets: [LOCAL_BUCKET] });
      Object.assign(env, {
        S3_BUCKET: LOCAL_BUCKET,
        AWS_ENDPOINT_URL_S3: s3Server.endpoint,
        AWS_REGION: env.AWS_REGION ?? "us-east-1",
        AWS_ACCESS_KEY_ID: "S3RVER",
        AWS_SECRET_ACCESS_KEY: "S3RVER",
      });
    }
    const lookback = Number(env.LOOKBACK_MINUTES ?? 75);
    env.FIRST_HOUR_UTC ??= formatHour(
      newestEligibleHour(now, Number.isFinite(lookback) ? lookback : 75) - (options.hours - 1) * HOUR_MS,
    );

    const s3 = s3Server ? s3Server.client() : s3ClientFor(env);
    out(
      `Collecting from ${simulator ? `the built-in Citrix simulator (${simulator.apiBase})` : env.API_BASE} into ${
        s3Server ? `local S3 ${s3Server.endpoint} (files in ${s3Server.directory})` : `s3://${env.S3_BUCKET}`
      }`,
    );
    const progress = new CollectionProgress(io.stdout);
    const result = await runLocalCollection({
      env,
      s3,
      executionName: `local-${new Date(now)
        .toISOString()
        .replace(/[^0-9]/g, "")
        .slice(0, 14)}`,
      retryPauseMs: 1000,
      logSink: options.verbose ? (line) => io.stderr.write(line) : (line) => appendFileSync(logFile, line),
      wrap: (key, handler) => reportingTo(progress, key, handler),
    });
    progress.finish();
    if (!options.verbose) out(`\nLog lines: ${logFile}`);
    if (options.history) {
      const history = executionHistoryResponse(result.history, (ms) => new Date(ms).toISOString());
      writeFileSync(options.history, `${JSON.stringify(history, null, 2)}\n`);
      out(`History: ${path.resolve(options.history)} (${result.history.length} events)`);
    }
    printSummary(result, out);
    return result.status === "SUCCEEDED" ? 0 : 1;
  } finally {
    await simulator?.close();
    await s3Server?.close();
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
  const collected = result.collected ?? [];
  if (collected.length > 0) {
    out();
    out(
      `${"entity".padEnd(12)} ${"hour (UTC)".padEnd(21)} ${"pages".padStart(6)} ${"records".padStart(9)} ${"objects".padStart(8)} ${"invocations".padStart(12)}`,
    );
    for (const item of collected) {
      const p = item.progress;
      out(
        `${item.entity.padEnd(12)} ${item.hourUtc.padEnd(21)} ${String(p.pages).padStart(6)} ${String(p.records).padStart(9)} ${String(p.parts).padStart(8)} ${String(p.invocations).padStart(12)}`,
      );
    }
  }
  out();
  if (result.status === "FAILED") {
    out(`FAILED: ${result.error?.name}: ${result.error?.message}`);
    const failedIn = failedStateIn(result.history as HistoryLink[]);
    if (failedIn) out(`failed in ${formatFailedState(failedIn)}`);
    out(`watermark unchanged: ${result.plan?.watermark.hourUtc ?? "(not read)"}`);
  } else if (result.commit) {
    out(
      `watermark: ${result.commit.watermark.before ?? "(none)"} → ${result.commit.watermark.after ?? "(none)"}`,
    );
  } else if (Object.keys(result.plan?.deferred ?? {}).length > 0) {
    out(
      `Nothing to collect: the due hours are being collected by ${Object.keys(result.plan?.deferred ?? {}).join(", ")}.`,
    );
  } else {
    out(
      `Nothing due: the watermark (${result.plan?.watermark.hourUtc ?? "none"}) is at the newest eligible hour.`,
    );
  }
}
