import { readFileSync } from "node:fs";
import path from "node:path";
import type { CollectorConfig } from "../../functions/lib/config/config";
import type { CollectDeps } from "../../functions/lib/feed/collector";
import type { PlanDeps } from "../../functions/lib/feed/plan-run";
import type { PublishDeps } from "../../functions/lib/feed/publisher";

// What the deployed functions are configured with: the README's configuration tables, the variables behind
// each configuration field, and the fields each function's code reads.

/** Every variable named in the first column of the README's "## Configuration" tables (one per group). */
export function readmeConfigurationVariables(): string[] {
  const readme = readFileSync(path.join(__dirname, "..", "..", "README.md"), "utf8");
  const section = readme.split(/^## Configuration$/m)[1]?.split(/^## /m)[0] ?? "";
  const rows = section.split("\n").filter((line) => /^\| `/.test(line));
  return rows.flatMap((row) =>
    [...(row.split("|")[1] ?? "").matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1] ?? ""),
  );
}

/** Every variable in the first column of the README's "Deploy-time settings" table (section Deploying). */
export function readmeDeploySettings(): string[] {
  const readme = readFileSync(path.join(__dirname, "..", "..", "README.md"), "utf8");
  // The table is the first paragraph after the line that introduces it.
  const table =
    readme
      .split(/^\*\*Deploy-time settings\*\*.*$/m)[1]
      ?.trimStart()
      .split("\n\n")[0] ?? "";
  return table
    .split("\n")
    .filter((line) => /^\| `/.test(line))
    .flatMap((row) => [...(row.split("|")[1] ?? "").matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1] ?? ""));
}

/** Every variable serverless.yml reads from the environment it is deployed from (`${env:NAME, ...}`). */
export function serverlessEnvironmentVariables(): string[] {
  const config = readFileSync(path.join(__dirname, "..", "..", "serverless.yml"), "utf8");
  return [...new Set([...config.matchAll(/\$\{(?:env|deploySetting):([A-Z0-9_]+)/g)].map((m) => m[1] ?? ""))];
}

/** The variables loadConfig builds each field from (functions/lib/config/config.ts); tsc keeps the fields complete. */
export const FIELD_VARIABLES: Record<keyof CollectorConfig, string[]> = {
  bucket: ["S3_BUCKET"],
  feedPrefix: ["S3_PREFIX"],
  controlPrefix: ["S3_PREFIX", "CONTROL_PREFIX"],
  stateKey: ["S3_PREFIX", "CONTROL_PREFIX", "STATE_KEY"],
  seedStateKey: ["SEED_STATE_KEY"],
  citrix: [
    "CITRIX_CUSTOMER_ID",
    "CITRIX_CLIENT_ID",
    "CITRIX_CLIENT_SECRET",
    "CITRIX_SECRET_ARN",
    "API_BASE",
    "TOKEN_URL",
  ],
  entities: ["ENTITIES"],
  pageSize: ["TOP_N"],
  maxPagesInFlight: ["MAX_PAGES_IN_FLIGHT"],
  maxPagesPerEntityHour: ["MAX_PAGES_PER_ENTITY_HOUR"],
  lookbackMinutes: ["LOOKBACK_MINUTES"],
  maxHoursPerRun: ["MAX_HOURS_PER_RUN"],
  firstHourUtc: ["FIRST_HOUR_UTC"],
  partMaxRecords: ["PART_MAX_RECORDS"],
  partMaxBytes: ["PART_MAX_BYTES"],
  gzip: ["GZIP"],
  mapMaxConcurrency: ["MAP_MAX_CONCURRENCY"],
  httpTimeoutMs: ["HTTP_TIMEOUT_MS"],
  invocationReserveMs: ["INVOCATION_RESERVE_MS"],
};

/**
 * The configuration fields each function reads: the config type of its deps, plus the bucket its store is
 * built on (and collect's Citrix client). Exhaustive both ways: tsc rejects a missing or an extra field.
 */
const PLAN_READS: Record<keyof PlanDeps["config"] | "bucket", true> = {
  bucket: true,
  controlPrefix: true,
  stateKey: true,
  seedStateKey: true,
  entities: true,
  lookbackMinutes: true,
  maxHoursPerRun: true,
  firstHourUtc: true,
  mapMaxConcurrency: true,
  pageSize: true,
};
const COLLECT_READS: Record<keyof CollectDeps["config"] | "bucket" | "citrix", true> = {
  bucket: true,
  citrix: true,
  controlPrefix: true,
  pageSize: true,
  maxPagesInFlight: true,
  maxPagesPerEntityHour: true,
  partMaxRecords: true,
  partMaxBytes: true,
  gzip: true,
  invocationReserveMs: true,
  httpTimeoutMs: true,
};
const COMMIT_READS: Record<keyof PublishDeps["config"] | "bucket", true> = {
  bucket: true,
  feedPrefix: true,
  controlPrefix: true,
  stateKey: true,
  entities: true,
};

/** Read by the logger and the metrics in every function: the log level and the metrics switches. */
export const EVERY_FUNCTION_READS = [
  "POWERTOOLS_LOG_LEVEL",
  "POWERTOOLS_METRICS_DISABLED",
  "DETAILED_METRICS",
];

/** Set by serverless.yml itself, not settings: Node's flags and the service name of logs and metrics. */
export const SET_BY_DEPLOYMENT = ["NODE_OPTIONS", "POWERTOOLS_SERVICE_NAME"];

/** Table rows for local runs only: the AWS SDK's own endpoint variable. */
export const LOCAL_ONLY = ["AWS_ENDPOINT_URL_S3"];

/** The settings each deployed function reads, sorted. */
export function settingsReadBy(functionKey: "plan" | "collect" | "commit"): string[] {
  const reads = { plan: PLAN_READS, collect: COLLECT_READS, commit: COMMIT_READS }[functionKey];
  const fields = Object.keys(reads) as (keyof CollectorConfig)[];
  return [...new Set([...fields.flatMap((field) => FIELD_VARIABLES[field]), ...EVERY_FUNCTION_READS])].sort();
}

/** A valid value other than the default for every setting (plain-text credentials, no secret). */
export const NON_DEFAULT_SETTINGS: Record<string, string> = {
  S3_BUCKET: "check-bucket",
  S3_PREFIX: "feed/citrix",
  CONTROL_PREFIX: "control/citrix",
  STATE_KEY: "control/citrix/watermark.json",
  SEED_STATE_KEY: "citrix_analytics/state.json",
  CITRIX_CUSTOMER_ID: "customer-42",
  CITRIX_CLIENT_ID: "api-client-42",
  CITRIX_CLIENT_SECRET: "plain-text-example",
  API_BASE: "https://api-eu.cloud.com/casodata",
  TOKEN_URL: "https://api-eu.cloud.com/cctrustoauth2/customer-42/tokens/clients",
  ENTITIES: "sessions,machines",
  TOP_N: "500",
  MAX_PAGES_IN_FLIGHT: "2",
  MAX_PAGES_PER_ENTITY_HOUR: "5000",
  LOOKBACK_MINUTES: "90",
  MAX_HOURS_PER_RUN: "12",
  FIRST_HOUR_UTC: "2026-11-01T00:00:00Z",
  PART_MAX_RECORDS: "20000",
  PART_MAX_BYTES: "4194304",
  GZIP: "false",
  MAP_MAX_CONCURRENCY: "8",
  HTTP_TIMEOUT_MS: "20000",
  INVOCATION_RESERVE_MS: "45000",
  POWERTOOLS_LOG_LEVEL: "DEBUG",
  POWERTOOLS_METRICS_DISABLED: "true",
  DETAILED_METRICS: "true",
};
