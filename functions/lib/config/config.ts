import * as z from "zod/mini";
import { ConfigurationError } from "./errors";
import { parseHour } from "./hours";
import "./zod-english";

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
    credentials: CitrixCredentialsConfig;
    apiBase: string;
    /** TOKEN_URL when set; otherwise derived from API_BASE once the customer id is known (citrixTokenUrl). */
    tokenUrl: string | undefined;
  };
  entities: string[];
  pageSize: number;
  maxPagesInFlight: number;
  maxPagesPerEntityHour: number;
  lookbackMinutes: number;
  maxHoursPerRun: number;
  firstHourUtc: string | undefined;
  partMaxRecords: number;
  partMaxBytes: number;
  gzip: boolean;
  mapMaxConcurrency: number;
  httpTimeoutMs: number;
  invocationReserveMs: number;
}

/** Where the Citrix API client's credentials come from: plain variables (local runs) or a secret (AWS). */
export type CitrixCredentialsConfig =
  | { source: "environment"; customerId: string; clientId: string; clientSecret: string }
  | { source: "secretsManager"; secretArn: string; region: string };

export type Env = Record<string, string | undefined>;

/** The variables a secret in CITRIX_SECRET_ARN replaces; its JSON SecretString uses the same names as keys. */
export const CITRIX_CREDENTIAL_VARIABLES = [
  "CITRIX_CUSTOMER_ID",
  "CITRIX_CLIENT_ID",
  "CITRIX_CLIENT_SECRET",
] as const;

/** The SPEC's client-credentials endpoint for a customer, on the host (region) API_BASE names. */
export function citrixTokenUrl(apiBase: string, customerId: string): string {
  return `${new URL(apiBase).origin}/cctrustoauth2/${encodeURIComponent(customerId)}/tokens/clients`;
}

const trimmedSlashes = (value: string) => value.replace(/^\/+|\/+$/g, "");
const blankToUndefined = (value: unknown) =>
  typeof value === "string" && value.trim() === "" ? undefined : value;

/** A blank variable counts as unset, then `schema` reads it (what zod's classic `preprocess` did). */
const blankAsUnset = <T extends z.ZodMiniType>(schema: T) => z.pipe(z.transform(blankToUndefined), schema);

/** Rejects the value with `message` as the problem reported for its variable. */
function reject(ctx: z.core.ParsePayload, message: string): never {
  ctx.issues.push({ code: "custom", message, input: ctx.value });
  return z.NEVER;
}

const required = (what: string) =>
  blankAsUnset(
    z.pipe(
      z.string({ error: `is required (${what})` }),
      z.transform((s: string) => s.trim()),
    ),
  );
const optional = () => blankAsUnset(z.optional(z.string().check(z.trim())));

const integer = (fallback: number, min: number, max: number) =>
  blankAsUnset(
    z.pipe(
      z.optional(z.string()),
      z.transform((raw: string | undefined, ctx) => {
        if (raw === undefined) return fallback;
        const value = Number(raw);
        if (!Number.isInteger(value) || value < min || value > max) {
          return reject(ctx, `must be an integer from ${min} to ${max} (got "${raw}")`);
        }
        return value;
      }),
    ),
  );

/** "true" or "false" or unset, kept as text: log.ts and metrics.ts read these variables themselves. */
const flag = () =>
  blankAsUnset(z.optional(z.enum(["true", "false"], { error: 'must be "true" or "false"' })));

const httpUrl = z.pipe(
  z.string(),
  z.transform((raw: string, ctx) => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return reject(ctx, `must be an absolute http(s) URL (got "${raw}")`);
    }
    const local = url.hostname === "127.0.0.1" || url.hostname === "localhost" || url.hostname === "[::1]";
    if (url.protocol !== "https:" && !(url.protocol === "http:" && local)) {
      return reject(ctx, `must use https:// (plain http only for localhost) (got "${raw}")`);
    }
    return raw.replace(/\/+$/, "");
  }),
);

// At most 64 characters: entity names are repeated in every entity-hour Plan hands on (see executionSizeProblems).
const ENTITY_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/**
 * Entity-hours (hours × entities) one execution may plan. Step Functions fails an execution at 25,000 history
 * events, and one that did cannot be redriven. At worst an entity-hour takes an invocation of its own (a big
 * one, or one in a run of one): then it adds 11 events (map iteration started/succeeded, task state
 * entered/scheduled/started/succeeded/exited, choice entered/exited, pass entered/exited), 7 per continuation
 * and 3 per retry; the execution itself 22. A run of entity-hours (see planRuns) that share invocations adds
 * fewer. 1,000 entity-hours take at most 11,022, leaving ~14,000 events for about two continuations or retries
 * each. The same bound keeps Plan's output (about 40 bytes + the entity name per entity-hour, at most ~110 KB)
 * under the 256 KiB state payload limit.
 */
export const MAX_ENTITY_HOURS_PER_EXECUTION = 1000;
const HISTORY_EVENTS_PER_ENTITY_HOUR = 11;

// The full ARN ends in "-" and six random characters; IAM matches the grant on exactly this ARN, which a
// partial ARN (without the suffix) would never equal.
const SECRET_ARN =
  /^arn:aws[a-z-]*:secretsmanager:([a-z]{2}(?:-[a-z]+)+-\d+):\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/;

const secretArn = z.pipe(
  z.string(),
  z.transform((raw: string, ctx) => {
    const region = SECRET_ARN.exec(raw)?.[1];
    if (region === undefined) {
      return reject(
        ctx,
        `must be the full ARN of a Secrets Manager secret as create-secret prints it, arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX (got "${raw}")`,
      );
    }
    return { secretArn: raw, region };
  }),
);

/**
 * S3's rules for a general purpose bucket's name. A URI, an ARN or a path in S3_BUCKET would otherwise reach
 * the IAM grants as `arn:aws:s3:::s3://…` and every request as a bucket that cannot exist.
 */
function bucketNameProblem(name: string): string | undefined {
  const uri = /^(?:[a-z0-9]+:\/\/|arn:aws[a-z-]*:s3:::)?([^/]*)\/*(.*)$/.exec(name);
  if (name.includes("/") || name.startsWith("arn:")) {
    const bucket = uri?.[1] ?? "";
    const prefix = trimmedSlashes(uri?.[2] ?? "");
    const instead = prefix === "" ? `S3_BUCKET=${bucket}` : `S3_BUCKET=${bucket} and S3_PREFIX=${prefix}`;
    return `must be the bucket's name alone, not a URI, ARN or path (got "${name}"): set ${instead}`;
  }
  const rules =
    "3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit, " +
    'no "..", not an IP address';
  const valid =
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) &&
    !name.includes("..") &&
    !/^\d{1,3}(\.\d{1,3}){3}$/.test(name) &&
    !/^(xn--|sthree-|amzn-s3-demo-)/.test(name) &&
    !/(-s3alias|--ol-s3|\.mrap|--x-s3|--table-s3)$/.test(name);
  return valid ? undefined : `must be an S3 bucket name: ${rules} (got "${name}")`;
}

const bucketName = z.pipe(
  required("the destination bucket's name; there is no default"),
  z.transform((name: string, ctx) => {
    const problem = bucketNameProblem(name);
    return problem === undefined ? name : reject(ctx, problem);
  }),
);

const envSchema = z.object({
  S3_BUCKET: bucketName,
  S3_PREFIX: blankAsUnset(z.pipe(z._default(z.string(), "citrix_analytics"), z.transform(trimmedSlashes))),
  CONTROL_PREFIX: optional(),
  STATE_KEY: optional(),
  SEED_STATE_KEY: optional(),
  // Required unless CITRIX_SECRET_ARN is set; citrixCredentialProblems checks the combination.
  CITRIX_CUSTOMER_ID: optional(),
  CITRIX_CLIENT_ID: optional(),
  CITRIX_CLIENT_SECRET: optional(),
  CITRIX_SECRET_ARN: blankAsUnset(z.optional(secretArn)),
  API_BASE: blankAsUnset(z.pipe(z._default(z.string(), "https://api.cloud.com/casodata"), httpUrl)),
  TOKEN_URL: blankAsUnset(z.optional(httpUrl)),
  ENTITIES: blankAsUnset(
    z.pipe(
      z._default(z.string(), "sessions,machines,users"),
      z.transform((raw: string, ctx) => {
        const names = raw
          .split(",")
          .map((name) => name.trim())
          .filter((name) => name !== "");
        const bad = names.filter((name) => !ENTITY_NAME.test(name));
        if (names.length === 0 || bad.length > 0 || new Set(names).size !== names.length) {
          return reject(
            ctx,
            `must be a comma-separated list of distinct OData entity set names like "sessions,machines,users" (got "${raw}")`,
          );
        }
        return names;
      }),
    ),
  ),
  TOP_N: integer(1000, 1, 10_000),
  // The ceiling of the adaptive page window (see PageWindow); 1: each page is requested when the previous
  // one arrived. More only in $skip paging, and only while the API honours TOP_N.
  MAX_PAGES_IN_FLIGHT: integer(32, 1, 64),
  // A backstop against paging that makes no progress in a way PageWalker does not recognise. At least 2:
  // in $skip paging an hour that fits in one page takes a second request to show it has no more.
  MAX_PAGES_PER_ENTITY_HOUR: integer(100_000, 2, 10_000_000),
  LOOKBACK_MINUTES: integer(75, 60, 7 * 24 * 60),
  MAX_HOURS_PER_RUN: integer(24, 1, 168),
  FIRST_HOUR_UTC: blankAsUnset(
    z.optional(z.string()).check(
      z.refine((raw) => raw === undefined || parseHour(raw) !== undefined, {
        message: 'must be a UTC hour like "2026-11-24T08:00:00Z"',
      }),
    ),
  ),
  PART_MAX_RECORDS: integer(50_000, 1, 1_000_000),
  // Uncompressed bytes per part; with one upload in flight the collect Lambda holds about two parts.
  PART_MAX_BYTES: integer(8 * 2 ** 20, 1024, 256 * 2 ** 20),
  GZIP: blankAsUnset(
    z.pipe(
      // On by default: SecOps reads gzip, and the feed's transfer and storage shrink about 10× (README, Cost).
      z._default(z.enum(["true", "false"], { error: 'must be "true" or "false"' }), "true"),
      z.transform((value: "true" | "false") => value === "true"),
    ),
  ),
  MAP_MAX_CONCURRENCY: integer(4, 1, 40),
  HTTP_TIMEOUT_MS: integer(30_000, 100, 300_000),
  INVOCATION_RESERVE_MS: integer(30_000, 0, 600_000),
  // Read by log.ts and metrics.ts (under Powertools' names), which would ignore a value they do not know:
  // checked here so a typo fails the deploy.
  POWERTOOLS_LOG_LEVEL: blankAsUnset(
    z.optional(
      z.enum(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "SILENT"], {
        error: "must be one of TRACE, DEBUG, INFO, WARN, ERROR, CRITICAL, SILENT (upper case)",
      }),
    ),
  ),
  POWERTOOLS_METRICS_DISABLED: flag(),
  // Read by createMetricsFactory: true makes every figure a CloudWatch metric, not only the alarms' ones.
  DETAILED_METRICS: flag(),
});

/** The variables only the Citrix API client reads: the collect function's, and only its. */
const CITRIX_CLIENT_VARIABLES: readonly string[] = [
  ...CITRIX_CREDENTIAL_VARIABLES,
  "CITRIX_SECRET_ARN",
  "API_BASE",
  "TOKEN_URL",
];

/** What the functions that never call Citrix (plan, commit) are configured with. */
export type ConfigWithoutCitrix = Omit<CollectorConfig, "citrix">;

export interface LoadOptions {
  /**
   * false for the functions that never call Citrix: the CITRIX_* credentials, API_BASE and TOKEN_URL are
   * neither read nor required, so those functions are deployed without the credentials.
   */
  citrix?: boolean;
}

/**
 * Parses and validates the environment. Throws one ConfigurationError listing every bad variable, so an
 * operator fixes them all in one go; nothing here touches the network.
 */
export function loadConfig(env: Env): CollectorConfig;
export function loadConfig(env: Env, options: LoadOptions & { citrix: false }): ConfigWithoutCitrix;
export function loadConfig(env: Env, options: LoadOptions = {}): CollectorConfig | ConfigWithoutCitrix {
  const parsed = parseConfig(env, options);
  if ("problems" in parsed) {
    throw new ConfigurationError(`Invalid configuration: ${parsed.problems.join("; ")}`);
  }
  return parsed.config;
}

/**
 * Every problem loadConfig would report, one per entry, none when the environment is valid: for the deploy
 * check and `citrix-collector check-config`, which print one line per problem.
 */
export function configProblems(env: Env, options: LoadOptions = {}): string[] {
  const parsed = parseConfig(env, options);
  return "problems" in parsed ? parsed.problems : [];
}

function parseConfig(
  env: Env,
  { citrix = true }: LoadOptions,
): { config: CollectorConfig | ConfigWithoutCitrix } | { problems: string[] } {
  const read = citrix
    ? env
    : Object.fromEntries(Object.entries(env).filter(([name]) => !CITRIX_CLIENT_VARIABLES.includes(name)));
  const parsed = envSchema.safeParse(read);
  const problems = parsed.success ? [] : schemaProblems(parsed.error.issues);
  const { feedPrefix, controlPrefix, stateKey } = bucketLayout(env);
  problems.push(...feedIsolationProblems(feedPrefix, controlPrefix, stateKey));
  if (citrix) problems.push(...citrixCredentialProblems(env));
  if (parsed.success)
    problems.push(...executionSizeProblems(parsed.data.MAX_HOURS_PER_RUN, parsed.data.ENTITIES));
  if (!parsed.success || problems.length > 0) return { problems };
  const values = parsed.data;
  const config: CollectorConfig = {
    bucket: values.S3_BUCKET,
    feedPrefix,
    controlPrefix,
    stateKey,
    seedStateKey: values.SEED_STATE_KEY,
    citrix: {
      credentials: values.CITRIX_SECRET_ARN
        ? { source: "secretsManager", ...values.CITRIX_SECRET_ARN }
        : {
            source: "environment",
            customerId: values.CITRIX_CUSTOMER_ID ?? "",
            clientId: values.CITRIX_CLIENT_ID ?? "",
            clientSecret: values.CITRIX_CLIENT_SECRET ?? "",
          },
      apiBase: values.API_BASE,
      tokenUrl: values.TOKEN_URL,
    },
    entities: values.ENTITIES,
    pageSize: values.TOP_N,
    maxPagesInFlight: values.MAX_PAGES_IN_FLIGHT,
    maxPagesPerEntityHour: values.MAX_PAGES_PER_ENTITY_HOUR,
    lookbackMinutes: values.LOOKBACK_MINUTES,
    maxHoursPerRun: values.MAX_HOURS_PER_RUN,
    firstHourUtc: values.FIRST_HOUR_UTC,
    partMaxRecords: values.PART_MAX_RECORDS,
    partMaxBytes: values.PART_MAX_BYTES,
    gzip: values.GZIP,
    mapMaxConcurrency: values.MAP_MAX_CONCURRENCY,
    httpTimeoutMs: values.HTTP_TIMEOUT_MS,
    invocationReserveMs: values.INVOCATION_RESERVE_MS,
  };
  if (citrix) return { config };
  const { citrix: _notRead, ...withoutCitrix } = config;
  return { config: withoutCitrix };
}

/** Where the watermark lives, for the operator CLI's `status`: no Citrix credentials needed. */
export type WatermarkLocation = Pick<
  CollectorConfig,
  "bucket" | "feedPrefix" | "controlPrefix" | "stateKey" | "seedStateKey"
>;

/** The rules Plan holds a backfill range to, for the operator CLI to check a range before starting it. */
export type PlanningRules = Pick<CollectorConfig, "lookbackMinutes" | "maxHoursPerRun">;

/** The subset of loadConfig that `status` needs, validated the same way (same names, same messages). */
export function loadWatermarkLocation(env: Env): WatermarkLocation {
  const parsed = z.pick(envSchema, { S3_BUCKET: true, SEED_STATE_KEY: true }).safeParse(env);
  const problems = parsed.success ? [] : schemaProblems(parsed.error.issues);
  const layout = bucketLayout(env);
  problems.push(...feedIsolationProblems(layout.feedPrefix, layout.controlPrefix, layout.stateKey));
  if (!parsed.success || problems.length > 0) {
    throw new ConfigurationError(`Invalid configuration: ${problems.join("; ")}`);
  }
  return { bucket: parsed.data.S3_BUCKET, ...layout, seedStateKey: parsed.data.SEED_STATE_KEY };
}

/** The subset of loadConfig that `backfill` checks a range against. */
export function loadPlanningRules(env: Env): PlanningRules {
  const parsed = z.pick(envSchema, { LOOKBACK_MINUTES: true, MAX_HOURS_PER_RUN: true }).safeParse(env);
  if (!parsed.success) {
    throw new ConfigurationError(`Invalid configuration: ${schemaProblems(parsed.error.issues).join("; ")}`);
  }
  return { lookbackMinutes: parsed.data.LOOKBACK_MINUTES, maxHoursPerRun: parsed.data.MAX_HOURS_PER_RUN };
}

function schemaProblems(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const variable = String(issue.path[0] ?? "environment");
    // A required() variable's own message says what it is; zod's type message would only confuse.
    const required = issue.code === "invalid_type" && !issue.message.startsWith("is required");
    return `${variable} ${required ? "is required" : issue.message}`;
  });
}

/** The feed prefix, the control prefix and the watermark key, with their defaults. */
function bucketLayout(env: Env): { feedPrefix: string; controlPrefix: string; stateKey: string } {
  const feedPrefix = trimmedSlashes(nonBlank(env.S3_PREFIX) ?? "citrix_analytics");
  const controlPrefix = trimmedSlashes(nonBlank(env.CONTROL_PREFIX) ?? `_citrix_collector/${feedPrefix}`);
  return { feedPrefix, controlPrefix, stateKey: nonBlank(env.STATE_KEY) ?? `${controlPrefix}/state.json` };
}

function nonBlank(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

/**
 * The credentials come from exactly one place: all three variables, or a secret holding them. A plain-text
 * copy left beside a secret is rejected, so moving to Secrets Manager really takes the secret out of the
 * Lambda environment.
 */
function citrixCredentialProblems(env: Env): string[] {
  const secretSet = nonBlank(env.CITRIX_SECRET_ARN) !== undefined;
  const meaning: Record<(typeof CITRIX_CREDENTIAL_VARIABLES)[number], string> = {
    CITRIX_CUSTOMER_ID: "Citrix Cloud customer id",
    CITRIX_CLIENT_ID: "Citrix Cloud API client id",
    CITRIX_CLIENT_SECRET: "Citrix Cloud API client secret",
  };
  return CITRIX_CREDENTIAL_VARIABLES.flatMap((variable) => {
    const set = nonBlank(env[variable]) !== undefined;
    if (secretSet && set) {
      return [`${variable} must be unset when CITRIX_SECRET_ARN is set: the secret holds it`];
    }
    if (!secretSet && !set) {
      return [
        `${variable} is required (${meaning[variable]}), unless CITRIX_SECRET_ARN names a secret holding it`,
      ];
    }
    return [];
  });
}

/** The combinations of accepted values that would not fit one execution, with the numbers. */
function executionSizeProblems(maxHoursPerRun: number, entities: readonly string[]): string[] {
  const items = maxHoursPerRun * entities.length;
  if (items <= MAX_ENTITY_HOURS_PER_EXECUTION) return [];
  const hoursThatFit = Math.floor(MAX_ENTITY_HOURS_PER_EXECUTION / entities.length);
  return [
    `MAX_HOURS_PER_RUN (${maxHoursPerRun}) × ENTITIES (${entities.length}) = ${items} entity-hours per execution, more than the ${MAX_ENTITY_HOURS_PER_EXECUTION} that fit: ` +
      `each adds up to ${HISTORY_EVENTS_PER_ENTITY_HOUR} events to the execution's history (more when it continues or retries) and Step Functions fails an execution at 25,000; ` +
      `set MAX_HOURS_PER_RUN to ${hoursThatFit} or less`,
  ];
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

/** "true" or "false", read as a boolean; anything else (yes, 1, TRUE) is refused rather than guessed. */
const booleanSetting = (fallback: "true" | "false") =>
  blankAsUnset(
    z.pipe(
      z._default(z.enum(["true", "false"], { error: 'must be "true" or "false"' }), fallback),
      z.transform((value: "true" | "false") => value === "true"),
    ),
  );

// A key's ARN, not an alias's: IAM grants and bucket encryption name the key itself.
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z]{2}(?:-[a-z]+)+-\d+:\d{12}:key\/[A-Za-z0-9-]+$/;

/**
 * What only serverless.yml reads, at deploy time: none of it reaches a function's environment. Defaults are
 * serverless.yml's.
 */
const deployOnlySchema = z.object({
  // Whether the stack creates S3_BUCKET; compared as text by the template's CreateBucket condition.
  CREATE_BUCKET: booleanSetting("false"),
  TRACING: booleanSetting("false"),
  KMS_KEY_ARN: blankAsUnset(
    z.optional(
      z.string().check(
        z.refine((raw) => KMS_KEY_ARN.test(raw), {
          message:
            "must be the ARN of a KMS key, arn:aws:kms:REGION:ACCOUNT:key/KEY-ID (not an alias or a bare key id)",
        }),
      ),
    ),
  ),
  ALARM_EMAIL: blankAsUnset(
    z.optional(
      z.string().check(
        z.refine((raw) => /^[^\s@,;]+@[^\s@,;]+\.[^\s@,;]+$/.test(raw), {
          message: "must be one email address, like soc@example.com",
        }),
      ),
    ),
  ),
  // The lag alarm's threshold, in hours behind the newest eligible hour.
  LAG_ALARM_HOURS: integer(3, 1, 168),
});

/** The settings serverless.yml reads from the deployer's environment that no function reads. */
export interface DeployOnlySettings {
  createBucket: boolean;
  tracing: boolean;
  kmsKeyArn: string | undefined;
  alarmEmail: string | undefined;
  lagAlarmHours: number;
}

/** Everything a deploy is made of: the collector's configuration (as collect reads it) and the deploy's own. */
export interface DeploySettings {
  collector: CollectorConfig;
  deploy: DeployOnlySettings;
}

/**
 * Variables of this project that are read but are not settings checked here: the CLI's state machine, the
 * service name serverless.yml sets itself. Known, so never taken for a misspelling.
 */
const OTHER_KNOWN_VARIABLES = ["STATE_MACHINE_ARN", "POWERTOOLS_SERVICE_NAME"];

/** Every variable the collector's deploy, functions or CLI read (AWS_* apart: the AWS tools' own). */
export const KNOWN_VARIABLES: readonly string[] = [
  ...Object.keys(envSchema.shape),
  ...Object.keys(deployOnlySchema.shape),
  ...OTHER_KNOWN_VARIABLES,
];

/**
 * Prefixes only this collector's settings use: a variable under one of them that is not a setting is a
 * mistake however far it is from every name (CITRIX_SECRET for CITRIX_SECRET_ARN, S3_BUCKET_NAME).
 */
const SETTING_FAMILIES = ["CITRIX_", "S3_"];

/**
 * The deploy's check (serverless/config-check.js) and `citrix-collector check-config`: the deployer's whole
 * environment, as the collect function reads it (the widest of the three functions), plus the settings only
 * serverless.yml reads, plus variables that look like ours but are not. Throws one ConfigurationError
 * listing every bad variable.
 */
export function loadDeploySettings(env: Env): DeploySettings {
  const parsed = parseDeploySettings(env);
  if ("problems" in parsed) {
    throw new ConfigurationError(`Invalid configuration: ${parsed.problems.join("; ")}`);
  }
  return parsed.settings;
}

/**
 * Only the settings serverless.yml alone reads, for a template value resolved from one of them (TRACING's
 * boolean): the same parse and message as loadDeploySettings, without requiring the rest.
 */
export function loadDeployOnlySettings(env: Env): DeployOnlySettings {
  const deploy = deployOnlySchema.safeParse(env);
  if (!deploy.success) {
    throw new ConfigurationError(`Invalid configuration: ${schemaProblems(deploy.error.issues).join("; ")}`);
  }
  return deployOnlySettings(deploy.data);
}

/** Every problem loadDeploySettings would report, one per entry: `check-config` prints one line each. */
export function deploySettingsProblems(env: Env): string[] {
  const parsed = parseDeploySettings(env);
  return "problems" in parsed ? parsed.problems : [];
}

function parseDeploySettings(env: Env): { settings: DeploySettings } | { problems: string[] } {
  const collector = parseConfig(env, {});
  const deploy = deployOnlySchema.safeParse(env);
  const problems = [
    ...("problems" in collector ? collector.problems : []),
    ...(deploy.success ? [] : schemaProblems(deploy.error.issues)),
    ...lookalikeProblems(env),
  ];
  if ("problems" in collector || !deploy.success || problems.length > 0) return { problems };
  return {
    settings: { collector: collector.config as CollectorConfig, deploy: deployOnlySettings(deploy.data) },
  };
}

function deployOnlySettings(values: z.infer<typeof deployOnlySchema>): DeployOnlySettings {
  return {
    createBucket: values.CREATE_BUCKET,
    tracing: values.TRACING,
    kmsKeyArn: values.KMS_KEY_ARN,
    alarmEmail: values.ALARM_EMAIL,
    lagAlarmHours: values.LAG_ALARM_HOURS,
  };
}

/**
 * The variables that look like one of ours but are not (ENTITES, TOPN, S3_BUCKETS), each with the name it
 * probably meant. Only upper-case names outside AWS_ are considered, and only when they are a small edit away
 * from a known name, equal one but for underscores, or share a prefix only our settings use, so the rest of a
 * shell (PATH, HOME, CI, npm_*, AWS_PROFILE) is never flagged.
 */
function lookalikeProblems(env: Env): string[] {
  return Object.keys(env)
    .filter((name) => env[name] !== undefined && !KNOWN_VARIABLES.includes(name))
    .filter((name) => /^[A-Z][A-Z0-9_]*$/.test(name) && !name.startsWith("AWS_"))
    .flatMap((name) => {
      const nearest = nearestKnownVariable(name);
      const withoutUnderscores = (text: string) => text.replaceAll("_", "");
      const looksLikeIt =
        nearest.distance <= (nearest.name.length <= 5 ? 1 : 2) ||
        withoutUnderscores(name) === withoutUnderscores(nearest.name) ||
        SETTING_FAMILIES.some((family) => name.startsWith(family));
      return looksLikeIt
        ? [`${name} is not one of the collector's settings: did you mean ${nearest.name}? (unset ${name})`]
        : [];
    });
}

function nearestKnownVariable(name: string): { name: string; distance: number } {
  let nearest = { name: KNOWN_VARIABLES[0] ?? "", distance: Number.POSITIVE_INFINITY };
  for (const known of KNOWN_VARIABLES) {
    const distance = editDistance(name, known);
    if (distance < nearest.distance) nearest = { name: known, distance };
  }
  return nearest;
}

/** Insertions, deletions, substitutions and swaps of neighbours that turn `a` into `b` (ENTITEIS: 1). */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number) => rows[i]?.[j] ?? Number.POSITIVE_INFINITY;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const substitution = at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1);
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, substitution);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, at(i - 2, j - 2) + 1);
      (rows[i] as number[])[j] = best;
    }
  }
  return at(a.length, b.length);
}
