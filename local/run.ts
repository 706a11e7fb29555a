/**
 * `npm start`: one collection, run locally through the deployed state machine definition.
 * Defaults: the built-in Citrix simulator and a local S3 server on 127.0.0.1, so it works offline.
 *   --citrix env   use the CITRIX_* / API_BASE environment (a real tenant) instead of the simulator
 *   --s3 env       use S3_BUCKET and the AWS SDK's own settings (AWS_ENDPOINT_URL_S3, credentials)
 *   --hours N      on a first run, collect the last N eligible hours (default 3)
 * The functions' JSON log lines go to .local-data/run-<time>/collector.log (--verbose: to stderr).
 */
import { appendFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { Env } from "../functions/lib/config";
import { formatHour, HOUR_MS } from "../functions/lib/hours";
import { newestEligibleHour } from "../functions/lib/planner";
import { s3ClientFor } from "../functions/lib/runtime";
import { type CitrixSimulator, startCitrixSimulator } from "./citrix-simulator";
import { runLocalCollection } from "./collection";
import { type LocalS3, startLocalS3 } from "./s3-server";

const LOCAL_BUCKET = "citrix-analytics-local";

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      citrix: { type: "string", default: "simulator" },
      s3: { type: "string", default: "local" },
      hours: { type: "string", default: "3" },
      verbose: { type: "boolean", default: false },
    },
  });
  const hours = Number(values.hours);
  if (
    !["simulator", "env"].includes(values.citrix) ||
    !["local", "env"].includes(values.s3) ||
    !(hours >= 1)
  ) {
    process.stderr.write(
      "usage: npm start -- [--citrix simulator|env] [--s3 local|env] [--hours N] [--verbose]\n",
    );
    return 2;
  }
  const env: Env = { ...process.env };
  const runDirectory = path.resolve(".local-data", `run-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  mkdirSync(runDirectory, { recursive: true });
  const logFile = path.join(runDirectory, "collector.log");
  let simulator: CitrixSimulator | undefined;
  let s3Server: LocalS3 | undefined;
  try {
    if (values.citrix === "simulator") {
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
    if (values.s3 === "local") {
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
    const now = Date.now();
    const lookback = Number(env.LOOKBACK_MINUTES ?? 75);
    env.FIRST_HOUR_UTC ??= formatHour(
      newestEligibleHour(now, Number.isFinite(lookback) ? lookback : 75) - (hours - 1) * HOUR_MS,
    );

    const s3 = s3Server ? s3Server.client() : s3ClientFor(env);
    process.stdout.write(
      `Collecting from ${simulator ? `the built-in Citrix simulator (${simulator.apiBase})` : env.API_BASE} into ${
        s3Server ? `local S3 ${s3Server.endpoint} (files in ${s3Server.directory})` : `s3://${env.S3_BUCKET}`
      }\n`,
    );
    const result = await runLocalCollection({
      env,
      s3,
      executionName: `local-${new Date(now)
        .toISOString()
        .replace(/[^0-9]/g, "")
        .slice(0, 14)}`,
      retryPauseMs: 1000,
      logSink: values.verbose
        ? (line) => process.stderr.write(line)
        : (line) => appendFileSync(logFile, line),
    });
    if (!values.verbose) process.stdout.write(`\nLog lines: ${logFile}\n`);
    printSummary(result);
    return result.status === "SUCCEEDED" ? 0 : 1;
  } finally {
    await simulator?.close();
    await s3Server?.close();
  }
}

function printSummary(result: Awaited<ReturnType<typeof runLocalCollection>>): void {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const collected = result.collected ?? [];
  if (collected.length > 0) {
    out("");
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
  out("");
  if (result.status === "FAILED") {
    out(`FAILED: ${result.error?.name}: ${result.error?.cause}`);
    out(`watermark unchanged: ${result.plan?.watermark.hourUtc ?? "(not read)"}`);
  } else if (result.commit?.status === "superseded") {
    out(`Stopped early: ${result.commit.reason}`);
  } else if (result.commit) {
    out(
      `watermark: ${result.commit.watermark.before ?? "(none)"} → ${result.commit.watermark.after ?? "(none)"}`,
    );
  } else {
    out(
      `Nothing due: the watermark (${result.plan?.watermark.hourUtc ?? "none"}) is at the newest eligible hour.`,
    );
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}\n`);
    process.exit(1);
  },
);
