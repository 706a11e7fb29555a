import { z } from "zod";
import { ConfigurationError } from "./errors";
import { parseHour } from "./hours";

/**
 * The collector's configuration, parsed once per container from the Lambda environment. Names from the
 * seed how-to are kept (S3_BUCKET, S3_PREFIX, STATE_KEY, CITRIX_*, API_BASE, ENTITIES, TOP_N,
 * LOOKBACK_MINUTES) so its users can move their environment over unchanged.
 */
export interface CollectorConfig {
  bucket: string;
  feedPrefix: string;
  controlPrefix: string;
  stateKey: string;
  seedStateKey: string | undefined;
  citrix: {
    customerId: string;
    clientId: string;
    clientSecret: string;
    apiBase: string;
    tokenUrl: string;
  };
  entities: string[];
  pageSize: number;
  lookbackMinutes: number;
  maxHoursPerRun: number;
  firstHourUtc: string | undefined;
  partMaxRecords: number;
  mapMaxConcurrency: number;
  httpTimeoutMs: number;
  invocationReserveMs: number;
}

export type Env = Record<string, string | undefined>;

const trimmedSlashes = (value: string) => value.replace(/^\/+|\/+$/g, "");
const blankToUndefined = (value: unknown) =>
  typeof value === "string" && value.trim() === "" ? undefined : value;

const required = (what: string) =>
  z.preprocess(
    blankToUndefined,
    z.string({ error: `is required (${what})` }).transform((s) => s.trim()),
  );
const optional = () => z.preprocess(blankToUndefined, z.string().trim().optional());

const integer = (fallback: number, min: number, max: number) =>
  z.preprocess(
    blankToUndefined,
    z
      .string()
      .optional()
      .transform((raw, ctx) => {
        if (raw === undefined) return fallback;
        const value = Number(raw);
        if (!Number.isInteger(value) || value < min || value > max) {
          ctx.addIssue({
            code: "custom",
            message: `must be an integer from ${min} to ${max} (got "${raw}")`,
          });
          return z.NEVER;
        }
        return value;
      }),
  );

const httpUrl = z.string().transform((raw, ctx) => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    ctx.addIssue({ code: "custom", message: `must be an absolute http(s) URL (got "${raw}")` });
    return z.NEVER;
  }
  const local = url.hostname === "127.0.0.1" || url.hostname === "localhost" || url.hostname === "[::1]";
  if (url.protocol !== "https:" && !(url.protocol === "http:" && local)) {
    ctx.addIssue({
      code: "custom",
      message: `must use https:// (plain http only for localhost) (got "${raw}")`,
    });
    return z.NEVER;
  }
  return raw.replace(/\/+$/, "");
});

const ENTITY_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;

const envSchema = z.object({
  S3_BUCKET: required("the destination bucket"),
  S3_PREFIX: z.preprocess(blankToUndefined, z.string().default("citrix_analytics").transform(trimmedSlashes)),
  CONTROL_PREFIX: optional(),
  STATE_KEY: optional(),
  SEED_STATE_KEY: optional(),
  CITRIX_CUSTOMER_ID: required("Citrix Cloud customer id"),
  CITRIX_CLIENT_ID: required("Citrix Cloud API client id"),
  CITRIX_CLIENT_SECRET: required("Citrix Cloud API client secret"),
  API_BASE: z.preprocess(
    blankToUndefined,
    z.string().default("https://api.cloud.com/casodata").pipe(httpUrl),
  ),
  TOKEN_URL: z.preprocess(blankToUndefined, httpUrl.optional()),
  ENTITIES: z.preprocess(
    blankToUndefined,
    z
      .string()
      .default("sessions,machines,users")
      .transform((raw, ctx) => {
        const names = raw
          .split(",")
          .map((name) => name.trim())
          .filter((name) => name !== "");
        const bad = names.filter((name) => !ENTITY_NAME.test(name));
        if (names.length === 0 || bad.length > 0 || new Set(names).size !== names.length) {
          ctx.addIssue({
            code: "custom",
            message: `must be a comma-separated list of distinct OData entity set names like "sessions,machines,users" (got "${raw}")`,
          });
          return z.NEVER;
        }
        return names;
      }),
  ),
  TOP_N: integer(1000, 1, 10_000),
  LOOKBACK_MINUTES: integer(75, 60, 7 * 24 * 60),
  MAX_HOURS_PER_RUN: integer(24, 1, 168),
  FIRST_HOUR_UTC: z.preprocess(
    blankToUndefined,
    z
      .string()
      .optional()
      .refine((raw) => raw === undefined || parseHour(raw) !== undefined, {
        message: 'must be a UTC hour like "2026-11-24T08:00:00Z"',
      }),
  ),
  PART_MAX_RECORDS: integer(50_000, 1, 1_000_000),
  MAP_MAX_CONCURRENCY: integer(4, 1, 40),
  HTTP_TIMEOUT_MS: integer(30_000, 100, 300_000),
  INVOCATION_RESERVE_MS: integer(30_000, 0, 600_000),
});

/**
 * Parses and validates the environment. Throws one ConfigurationError listing every bad variable, so an
 * operator fixes them all in one go; nothing here touches the network.
 */
export function loadConfig(env: Env): CollectorConfig {
  const parsed = envSchema.safeParse(env);
  const problems: string[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const variable = String(issue.path[0] ?? "environment");
      const message = issue.code === "invalid_type" ? "is required" : issue.message;
      problems.push(`${variable} ${message}`);
    }
  }
  const feedPrefix = trimmedSlashes(nonBlank(env.S3_PREFIX) ?? "citrix_analytics");
  const controlPrefix = trimmedSlashes(nonBlank(env.CONTROL_PREFIX) ?? `_citrix_collector/${feedPrefix}`);
  const stateKey = nonBlank(env.STATE_KEY) ?? `${controlPrefix}/state.json`;
  problems.push(...feedIsolationProblems(feedPrefix, controlPrefix, stateKey));
  if (!parsed.success || problems.length > 0) {
    throw new ConfigurationError(`Invalid configuration: ${problems.join("; ")}`);
  }
  const values = parsed.data;
  const apiOrigin = new URL(values.API_BASE).origin;
  return {
    bucket: values.S3_BUCKET,
    feedPrefix,
    controlPrefix,
    stateKey,
    seedStateKey: values.SEED_STATE_KEY,
    citrix: {
      customerId: values.CITRIX_CUSTOMER_ID,
      clientId: values.CITRIX_CLIENT_ID,
      clientSecret: values.CITRIX_CLIENT_SECRET,
      apiBase: values.API_BASE,
      tokenUrl:
        values.TOKEN_URL ??
        `${apiOrigin}/cctrustoauth2/${encodeURIComponent(values.CITRIX_CUSTOMER_ID)}/tokens/clients`,
    },
    entities: values.ENTITIES,
    pageSize: values.TOP_N,
    lookbackMinutes: values.LOOKBACK_MINUTES,
    maxHoursPerRun: values.MAX_HOURS_PER_RUN,
    firstHourUtc: values.FIRST_HOUR_UTC,
    partMaxRecords: values.PART_MAX_RECORDS,
    mapMaxConcurrency: values.MAP_MAX_CONCURRENCY,
    httpTimeoutMs: values.HTTP_TIMEOUT_MS,
    invocationReserveMs: values.INVOCATION_RESERVE_MS,
  };
}

function nonBlank(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

/** SecOps ingests every object under the feed prefix, so control objects there would become log lines. */
function feedIsolationProblems(feedPrefix: string, controlPrefix: string, stateKey: string): string[] {
  if (feedPrefix === "") return ["S3_PREFIX must not be empty: the feed needs a prefix of its own"];
  const within = (inner: string, outer: string) => `${inner}/`.startsWith(`${outer}/`);
  const problems: string[] = [];
  if (within(controlPrefix, feedPrefix) || within(feedPrefix, controlPrefix)) {
    problems.push(
      `CONTROL_PREFIX "${controlPrefix}" and S3_PREFIX "${feedPrefix}" must not contain one another`,
    );
  }
  if (within(stateKey, feedPrefix)) {
    problems.push(
      `STATE_KEY "${stateKey}" is inside the feed prefix "${feedPrefix}/", where SecOps would ingest it; ` +
        "unset it (the default is outside the feed) and set SEED_STATE_KEY to the old key to migrate its watermark",
    );
  }
  return problems;
}
