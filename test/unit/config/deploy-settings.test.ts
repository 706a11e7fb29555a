import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  deploySettingsProblems,
  type Env,
  KNOWN_VARIABLES,
  loadConfig,
  loadDeployOnlySettings,
  loadDeploySettings,
} from "../../../functions/lib/config/config";
import { ConfigurationError } from "../../../functions/lib/config/errors";
import { serverlessEnvironmentVariables } from "../../support/settings";

// The check serverless/config-check.js runs before `serverless package` builds anything, and `citrix-collector
// check-config` runs on the same settings: the deployer's whole environment.

const SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:citrix-analytics-collector-AbC123";
const KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const valid: Env = { S3_BUCKET: "feed-bucket", CITRIX_SECRET_ARN: SECRET_ARN };

/** The variable each problem names first. */
const named = (env: Env) => deploySettingsProblems(env).map((problem) => problem.split(" ")[0]);

describe("loadDeploySettings", () => {
  it("reads the deploy-only settings, with serverless.yml's defaults", () => {
    expect(loadDeploySettings(valid).deploy).toEqual({
      createBucket: false,
      tracing: false,
      kmsKeyArn: undefined,
      alarmEmail: undefined,
      lagAlarmHours: 3,
    });
    const set = {
      ...valid,
      CREATE_BUCKET: "true",
      TRACING: "true",
      KMS_KEY_ARN: KEY_ARN,
      ALARM_EMAIL: "soc@example.com",
      LAG_ALARM_HOURS: "6",
    };
    expect(loadDeploySettings(set).deploy).toEqual({
      createBucket: true,
      tracing: true,
      kmsKeyArn: KEY_ARN,
      alarmEmail: "soc@example.com",
      lagAlarmHours: 6,
    });
    // The functions' part is loadConfig's, as the collect function (the widest) reads it.
    expect(loadDeploySettings(set).collector).toEqual(loadConfig(set));
  });

  it("throws one ConfigurationError listing every bad variable, of the functions' and the deploy's alike", () => {
    let error: unknown;
    try {
      loadDeploySettings({ CITRIX_SECRET_ARN: SECRET_ARN, TOP_N: "0", TRACING: "yes", ENTITES: "users" });
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(
      /^Invalid configuration: S3_BUCKET is required .*; TOP_N must .*; TRACING must .*; ENTITES is not one/,
    );
  });

  it.each([
    ["S3_BUCKET", undefined, "is required (the destination bucket's name; there is no default)"],
    ["S3_BUCKET", "   ", "is required"],
    ["TRACING", "yes", 'must be "true" or "false"'],
    ["TRACING", "1", 'must be "true" or "false"'],
    ["CREATE_BUCKET", "yes", 'must be "true" or "false"'],
    ["CREATE_BUCKET", "TRUE", 'must be "true" or "false"'],
    ["GZIP", "no", 'must be "true" or "false"'],
    ["DETAILED_METRICS", "on", 'must be "true" or "false"'],
    ["POWERTOOLS_METRICS_DISABLED", "0", 'must be "true" or "false"'],
    ["LAG_ALARM_HOURS", "abc", 'must be an integer from 1 to 168 (got "abc")'],
    ["LAG_ALARM_HOURS", "0", "must be an integer from 1 to 168"],
    ["LAG_ALARM_HOURS", "2.5", "must be an integer from 1 to 168"],
    ["LAG_ALARM_HOURS", "169", "must be an integer from 1 to 168"],
    ["TOP_N", "10001", "must be an integer from 1 to 10000"],
    ["LOOKBACK_MINUTES", "59", "must be an integer from 60 to 10080"],
    ["ALARM_EMAIL", "soc", "must be one email address"],
    ["ALARM_EMAIL", "soc@example.com,noc@example.com", "must be one email address"],
    ["KMS_KEY_ARN", "alias/feed", "must be the ARN of a KMS key"],
    ["KMS_KEY_ARN", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "must be the ARN of a KMS key"],
    ["KMS_KEY_ARN", "arn:aws:kms:eu-west-1:123456789012:alias/feed", "must be the ARN of a KMS key"],
    ["KMS_KEY_ARN", SECRET_ARN, "must be the ARN of a KMS key"],
    ["CITRIX_SECRET_ARN", KEY_ARN, "must be the full ARN of a Secrets Manager secret"],
  ])("refuses %s=%j, naming it", (variable, value, message) => {
    const problems = deploySettingsProblems({ ...valid, [variable]: value });
    expect(problems).toEqual([expect.stringContaining(`${variable} ${message}`)]);
  });

  it("checks the settings only serverless.yml reads on their own, for the template values made of them", () => {
    expect(loadDeployOnlySettings({ TRACING: "true" }).tracing).toBe(true);
    expect(() => loadDeployOnlySettings({ TRACING: "yes" })).toThrow(/^Invalid configuration: TRACING must/);
  });
});

describe("S3_BUCKET (the Lambdas' check too)", () => {
  it.each([
    ["s3://feed-bucket/citrix/", "set S3_BUCKET=feed-bucket and S3_PREFIX=citrix"],
    ["s3://feed-bucket", "set S3_BUCKET=feed-bucket"],
    ["feed-bucket/citrix/logs", "set S3_BUCKET=feed-bucket and S3_PREFIX=citrix/logs"],
    ["arn:aws:s3:::feed-bucket", "set S3_BUCKET=feed-bucket"],
  ])("refuses the URI, path or ARN %j, saying what to set instead", (bucket, instead) => {
    const [problem] = deploySettingsProblems({ ...valid, S3_BUCKET: bucket });
    expect(problem).toMatch(/^S3_BUCKET must be the bucket's name alone, not a URI, ARN or path/);
    expect(problem).toContain(`: ${instead}`);
    expect(problem?.endsWith(instead)).toBe(true);
  });

  it.each([
    "Feed-Bucket",
    "ab",
    "a".repeat(64),
    "192.168.10.20",
    "feed..bucket",
    "-feed",
    "feed-",
    "feed_bucket",
    "xn--feed",
    "feed-s3alias",
  ])("refuses %j, which S3 would not take as a bucket name", (bucket) => {
    expect(deploySettingsProblems({ ...valid, S3_BUCKET: bucket })).toEqual([
      expect.stringMatching(/^S3_BUCKET must be an S3 bucket name: 3 to 63 lower-case letters/),
    ]);
    expect(() => loadConfig({ ...valid, S3_BUCKET: bucket })).toThrow(ConfigurationError);
  });

  it.each(["abc", "a".repeat(63), "feed.bucket-01", "1-2-3", "10.0.0.1.example"])("accepts %j", (bucket) => {
    expect(deploySettingsProblems({ ...valid, S3_BUCKET: bucket })).toEqual([]);
  });
});

describe("variables that look like the collector's but are not", () => {
  it.each([
    ["ENTITES", "ENTITIES"],
    ["ENTITEIS", "ENTITIES"],
    ["TOPN", "TOP_N"],
    ["TOP_M", "TOP_N"],
    ["S3_BUCKETS", "S3_BUCKET"],
    ["S3_BUCKET_NAME", "S3_BUCKET"],
    ["S3BUCKET", "S3_BUCKET"],
    ["MAXHOURSPERRUN", "MAX_HOURS_PER_RUN"],
    ["LOOKBACK_MINUTE", "LOOKBACK_MINUTES"],
    ["LAG_ALARM_HOUR", "LAG_ALARM_HOURS"],
    ["TRACNG", "TRACING"],
    ["CITRIX_SECRET", "CITRIX_SECRET_ARN"],
    ["CITRIX_CLIENTID", "CITRIX_CLIENT_ID"],
  ])("refuses %s, suggesting %s", (variable, meant) => {
    expect(deploySettingsProblems({ ...valid, [variable]: "x" })).toEqual([
      `${variable} is not one of the collector's settings: did you mean ${meant}? (unset ${variable})`,
    ]);
  });

  it("flags a look-alike even when blank, and only when it is set", () => {
    expect(named({ ...valid, ENTITES: "" })).toEqual(["ENTITES"]);
    expect(named({ ...valid, ENTITES: undefined })).toEqual([]);
  });

  it("never flags the rest of a deployer's shell, a CI runner's or npm's", () => {
    const unrelated = [
      "PATH",
      "HOME",
      "USER",
      "SHELL",
      "TERM",
      "LANG",
      "LC_ALL",
      "PWD",
      "OLDPWD",
      "SHLVL",
      "TZ",
      "TMPDIR",
      "EDITOR",
      "PAGER",
      "HOSTNAME",
      "DISPLAY",
      "DEBUG",
      "CI",
      "TEST",
      "MODE",
      "DEV",
      "PROD",
      "STAGE",
      "REGION",
      "TOKEN",
      "GITHUB_ACTIONS",
      "GITHUB_TOKEN",
      "RUNNER_OS",
      "NODE_ENV",
      "NODE_OPTIONS",
      "NODE_EXTRA_CA_CERTS",
      "HTTP_PROXY",
      "HTTPS_PROXY",
      "NO_PROXY",
      "http_proxy",
      "AWS_PROFILE",
      "AWS_REGION",
      "AWS_DEFAULT_REGION",
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "AWS_SESSION_TOKEN",
      "AWS_ENDPOINT_URL_S3",
      "AWS_S3_BUCKET",
      "npm_config_cache",
      "npm_lifecycle_event",
      "npm_package_name",
      "SLS_TELEMETRY_DISABLED",
      "SLS_NOTIFICATIONS_MODE",
      "SERVERLESS_PLATFORM_STAGE",
      "VITEST",
      "VITEST_POOL_ID",
      "FORCE_COLOR",
      "NO_COLOR",
      "JAVA_HOME",
      "GOPATH",
      "SSH_AUTH_SOCK",
      "XDG_RUNTIME_DIR",
      "BENCH_NOW",
    ];
    expect(named({ ...valid, ...Object.fromEntries(unrelated.map((name) => [name, "x"])) })).toEqual([]);
  });

  it("knows every variable serverless.yml reads, so none of its own settings is taken for a misspelling", () => {
    const read = serverlessEnvironmentVariables();
    expect(read).toEqual(expect.arrayContaining(["S3_BUCKET", "TRACING", "LAG_ALARM_HOURS"]));
    expect(read.filter((name) => !name.startsWith("AWS_") && !KNOWN_VARIABLES.includes(name))).toEqual([]);
  });
});

describe(".env.example, the template of the settings file serverless reads (useDotenv)", () => {
  const example = readFileSync(path.join(__dirname, "..", "..", "..", ".env.example"), "utf8");

  it("lists every variable serverless.yml reads from the deployer's environment, and no other", () => {
    const listed = [...example.matchAll(/^(?:# )?([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]);
    const read = serverlessEnvironmentVariables().filter((name) => !name.startsWith("AWS_"));
    expect([...listed].sort()).toEqual([...read].sort());
  });
});
