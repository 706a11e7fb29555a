import { describe, expect, it } from "vitest";
import { citrixTokenUrl, configProblems, type Env, loadConfig } from "../../../functions/lib/config/config";
import { ConfigurationError } from "../../../functions/lib/config/errors";
import { EVERY_FUNCTION_READS, FIELD_VARIABLES, NON_DEFAULT_SETTINGS } from "../../support/settings";

const SECRET = "Sup3r-s3cret-VALUE";
const base: Env = {
  S3_BUCKET: "my-bucket",
  CITRIX_CUSTOMER_ID: "acme123",
  CITRIX_CLIENT_ID: "client-id",
  CITRIX_CLIENT_SECRET: SECRET,
};

/** Runs loadConfig expecting it to throw, and returns the error. */
function configError(env: Env): Error {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return error as Error;
  }
  throw new Error("loadConfig did not throw");
}

describe("loadConfig defaults", () => {
  const config = loadConfig(base);

  it("keeps the required values", () => {
    expect(config.bucket).toBe("my-bucket");
    expect(config.citrix.credentials).toEqual({
      source: "environment",
      customerId: "acme123",
      clientId: "client-id",
      clientSecret: SECRET,
    });
  });

  it("uses the SPEC defaults", () => {
    expect(config.feedPrefix).toBe("citrix_analytics");
    expect(config.citrix.apiBase).toBe("https://api.cloud.com/casodata");
    // Derived by the client once it knows the customer id (which may come from a secret).
    expect(config.citrix.tokenUrl).toBeUndefined();
    expect(citrixTokenUrl(config.citrix.apiBase, "acme123")).toBe(
      "https://api.cloud.com/cctrustoauth2/acme123/tokens/clients",
    );
    expect(config.entities).toEqual(["sessions", "machines", "users"]);
    expect(config.pageSize).toBe(1000);
    expect(config.maxPagesPerEntityHour).toBe(100_000);
    expect(config.lookbackMinutes).toBe(75);
    expect(config.firstHourUtc).toBeUndefined();
    expect(config.seedStateKey).toBeUndefined();
  });

  it("puts the watermark and control objects outside the feed prefix", () => {
    expect(config.stateKey.startsWith("citrix_analytics/")).toBe(false);
    expect(config.stateKey).not.toBe("citrix_analytics/state.json");
    expect(config.stateKey.endsWith(".json")).toBe(true);
    expect(`${config.controlPrefix}/`.startsWith("citrix_analytics/")).toBe(false);
  });

  it("treats blank values as unset", () => {
    const blank = loadConfig({ ...base, S3_PREFIX: "  ", TOP_N: "", API_BASE: "", ENTITIES: " " });
    expect(blank.feedPrefix).toBe("citrix_analytics");
    expect(blank.pageSize).toBe(1000);
    expect(blank.citrix.apiBase).toBe("https://api.cloud.com/casodata");
    expect(blank.entities).toEqual(["sessions", "machines", "users"]);
  });
});

describe("loadConfig values", () => {
  it("strips slashes around S3_PREFIX and a trailing slash from API_BASE", () => {
    const config = loadConfig({
      ...base,
      S3_PREFIX: "/logs/citrix/",
      API_BASE: "https://api.cloud.com/casodata/",
    });
    expect(config.feedPrefix).toBe("logs/citrix");
    expect(config.citrix.apiBase).toBe("https://api.cloud.com/casodata");
  });

  it("parses ENTITIES, TOP_N, MAX_PAGES_PER_ENTITY_HOUR, LOOKBACK_MINUTES and FIRST_HOUR_UTC", () => {
    const config = loadConfig({
      ...base,
      ENTITIES: " sessions , machines ",
      TOP_N: "500",
      MAX_PAGES_PER_ENTITY_HOUR: "2",
      LOOKBACK_MINUTES: "90",
      FIRST_HOUR_UTC: "2026-11-24T08:00:00Z",
    });
    expect(config.entities).toEqual(["sessions", "machines"]);
    expect(config.pageSize).toBe(500);
    expect(config.maxPagesPerEntityHour).toBe(2);
    expect(config.lookbackMinutes).toBe(90);
    expect(config.firstHourUtc).toBe("2026-11-24T08:00:00Z");
  });

  it.each([
    ["https://api-eu.cloud.com/casodata", "https://api-eu.cloud.com/cctrustoauth2/acme123/tokens/clients"],
    [
      "https://api-ap-s.cloud.com/casodata",
      "https://api-ap-s.cloud.com/cctrustoauth2/acme123/tokens/clients",
    ],
    [
      "https://api.citrixcloud.jp/casodata",
      "https://api.citrixcloud.jp/cctrustoauth2/acme123/tokens/clients",
    ],
    ["http://127.0.0.1:8080/casodata", "http://127.0.0.1:8080/cctrustoauth2/acme123/tokens/clients"],
  ])("derives TOKEN_URL from the origin of API_BASE %s", (apiBase, tokenUrl) => {
    const config = loadConfig({ ...base, API_BASE: apiBase });
    expect(config.citrix.apiBase).toBe(apiBase);
    expect(citrixTokenUrl(config.citrix.apiBase, "acme123")).toBe(tokenUrl);
  });

  it("uses TOKEN_URL when it is set", () => {
    const config = loadConfig({
      ...base,
      API_BASE: "https://api-eu.cloud.com/casodata",
      TOKEN_URL: "https://trust.example.com/oauth/token",
    });
    expect(config.citrix.tokenUrl).toBe("https://trust.example.com/oauth/token");
  });

  it("accepts http:// only for 127.0.0.1 and localhost", () => {
    expect(loadConfig({ ...base, API_BASE: "http://localhost:4010/casodata" }).citrix.apiBase).toBe(
      "http://localhost:4010/casodata",
    );
    expect(loadConfig({ ...base, API_BASE: "http://127.0.0.1:4010/casodata" }).citrix.apiBase).toBe(
      "http://127.0.0.1:4010/casodata",
    );
  });

  it.each([
    "http://api.cloud.com/casodata",
    "http://localhost.example.com/casodata",
    "http://127.0.0.1.nip.io/casodata",
    "ftp://api.cloud.com/casodata",
  ])("rejects the insecure or non-http API_BASE %s", (apiBase) => {
    const error = configError({ ...base, API_BASE: apiBase });
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain("API_BASE");
  });

  it("rejects a plain-http TOKEN_URL to a remote host", () => {
    const error = configError({ ...base, TOKEN_URL: "http://api.cloud.com/cctrustoauth2/x/tokens/clients" });
    expect(error.message).toContain("TOKEN_URL");
  });
});

describe("loadConfig errors", () => {
  it("reports every bad variable in one ConfigurationError", () => {
    const error = configError({
      CITRIX_CUSTOMER_ID: "acme123",
      CITRIX_CLIENT_ID: "client-id",
      TOP_N: "abc",
      LOOKBACK_MINUTES: "-5",
      API_BASE: "not a url",
      ENTITIES: "sessions,,bad name",
    });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.name).toBe("ConfigurationError");
    for (const variable of [
      "S3_BUCKET",
      "CITRIX_CLIENT_SECRET",
      "TOP_N",
      "LOOKBACK_MINUTES",
      "API_BASE",
      "ENTITIES",
    ]) {
      expect(error.message).toContain(variable);
    }
    for (const fine of ["CITRIX_CUSTOMER_ID", "CITRIX_CLIENT_ID", "S3_PREFIX", "STATE_KEY"]) {
      expect(error.message).not.toContain(fine);
    }
  });

  it("names a missing required variable as required", () => {
    const { S3_BUCKET: _omit, ...withoutBucket } = base;
    expect(configError(withoutBucket).message).toMatch(/S3_BUCKET is required/);
    expect(configError({ ...base, CITRIX_CLIENT_ID: "   " }).message).toMatch(/CITRIX_CLIENT_ID is required/);
  });

  it.each([
    ["TOP_N", "0"],
    ["TOP_N", "2.5"],
    ["MAX_PAGES_PER_ENTITY_HOUR", "1"],
    ["MAX_PAGES_PER_ENTITY_HOUR", "many"],
    ["LOOKBACK_MINUTES", "ten"],
    ["MAX_HOURS_PER_RUN", "0"],
    ["FIRST_HOUR_UTC", "2026-11-24T08:30:00Z"],
    ["ENTITIES", "sessions,sessions"],
    ["ENTITIES", "sessions;machines"],
    ["S3_PREFIX", "/"],
  ])("rejects %s=%j, naming it", (variable, value) => {
    const error = configError({ ...base, [variable]: value });
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain(variable);
  });

  it("rejects more hours × entities than one execution's history holds, with the numbers and the fix", () => {
    const tenEntities = Array.from({ length: 10 }, (_, i) => `entity${i}`).join(",");
    const error = configError({ ...base, MAX_HOURS_PER_RUN: "168", ENTITIES: tenEntities });
    expect(error.message).toContain(
      "MAX_HOURS_PER_RUN (168) × ENTITIES (10) = 1680 entity-hours per execution",
    );
    expect(error.message).toContain("set MAX_HOURS_PER_RUN to 100 or less");
    // The largest combinations accepted: 100 hours of 10 entities, 168 hours of the default 3 (and of 5).
    expect(loadConfig({ ...base, MAX_HOURS_PER_RUN: "100", ENTITIES: tenEntities }).maxHoursPerRun).toBe(100);
    expect(loadConfig({ ...base, MAX_HOURS_PER_RUN: "168" }).maxHoursPerRun).toBe(168);
    expect(loadConfig({ ...base, MAX_HOURS_PER_RUN: "168", ENTITIES: "a,b,c,d,e" }).entities).toHaveLength(5);
    expect(configError({ ...base, MAX_HOURS_PER_RUN: "168", ENTITIES: "a,b,c,d,e,f" }).message).toContain(
      "set MAX_HOURS_PER_RUN to 166 or less",
    );
  });

  it("rejects an entity name longer than 64 characters", () => {
    expect(loadConfig({ ...base, ENTITIES: `a${"b".repeat(63)}` }).entities).toHaveLength(1);
    expect(configError({ ...base, ENTITIES: `a${"b".repeat(64)}` }).message).toContain("ENTITIES");
  });

  it("never puts the client secret value in the message", () => {
    const error = configError({
      ...base,
      TOP_N: "abc",
      API_BASE: "not a url",
      STATE_KEY: "citrix_analytics/state.json",
      ENTITIES: "bad name",
    });
    expect(error.message).not.toContain(SECRET);
    const stateError = configError({ ...base, STATE_KEY: "citrix_analytics/state.json" });
    expect(stateError.message).not.toContain(SECRET);
  });

  it("rejects a STATE_KEY inside the feed prefix, pointing to SEED_STATE_KEY", () => {
    const error = configError({ ...base, STATE_KEY: "citrix_analytics/state.json" });
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain("STATE_KEY");
    expect(error.message).toContain("SEED_STATE_KEY");
  });

  it("rejects a STATE_KEY inside a custom feed prefix", () => {
    const error = configError({ ...base, S3_PREFIX: "logs/citrix", STATE_KEY: "logs/citrix/sub/state.json" });
    expect(error.message).toContain("STATE_KEY");
  });

  it("accepts a STATE_KEY that merely shares the prefix's first characters", () => {
    const config = loadConfig({ ...base, STATE_KEY: "citrix_analytics_state/state.json" });
    expect(config.stateKey).toBe("citrix_analytics_state/state.json");
  });

  it("accepts SEED_STATE_KEY inside the feed prefix (it is only read, for migration)", () => {
    const config = loadConfig({ ...base, SEED_STATE_KEY: "citrix_analytics/state.json" });
    expect(config.seedStateKey).toBe("citrix_analytics/state.json");
    expect(config.stateKey.startsWith("citrix_analytics/")).toBe(false);
  });

  it("rejects a CONTROL_PREFIX inside the feed prefix", () => {
    const error = configError({ ...base, CONTROL_PREFIX: "citrix_analytics/_control" });
    expect(error.message).toContain("CONTROL_PREFIX");
  });

  // The feed-isolation checks run alongside the schema, so every bad variable is named at once.
  it("reports a STATE_KEY inside the feed prefix together with other bad variables", () => {
    const { S3_BUCKET: _omit, ...withoutBucket } = base;
    const error = configError({ ...withoutBucket, STATE_KEY: "citrix_analytics/state.json" });
    expect(error.message).toContain("S3_BUCKET");
    expect(error.message).toContain("STATE_KEY");
  });
});

describe("loadConfig with CITRIX_SECRET_ARN", () => {
  const ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:citrix/analytics-collector-a1B2c3";
  const {
    CITRIX_CUSTOMER_ID: _c,
    CITRIX_CLIENT_ID: _i,
    CITRIX_CLIENT_SECRET: _s,
    ...withoutCredentials
  } = base;

  it("takes the credentials from the secret, in the secret's region, and needs none of the three variables", () => {
    const config = loadConfig({ ...withoutCredentials, CITRIX_SECRET_ARN: ARN });
    expect(config.citrix.credentials).toEqual({
      source: "secretsManager",
      secretArn: ARN,
      region: "eu-west-1",
    });
    expect(config.citrix.tokenUrl).toBeUndefined();
  });

  it("accepts the ARNs of other partitions and blank credential variables (serverless.yml's defaults)", () => {
    const govArn = "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:citrix-Zz9Yy8";
    const config = loadConfig({
      ...base,
      CITRIX_CUSTOMER_ID: "",
      CITRIX_CLIENT_ID: " ",
      CITRIX_CLIENT_SECRET: "",
      CITRIX_SECRET_ARN: govArn,
    });
    expect(config.citrix.credentials).toEqual({
      source: "secretsManager",
      secretArn: govArn,
      region: "us-gov-west-1",
    });
  });

  it("rejects plain-text credentials left beside the secret, naming each", () => {
    const error = configError({ ...base, CITRIX_SECRET_ARN: ARN });
    expect(error.name).toBe("ConfigurationError");
    for (const variable of ["CITRIX_CUSTOMER_ID", "CITRIX_CLIENT_ID", "CITRIX_CLIENT_SECRET"]) {
      expect(error.message).toContain(`${variable} must be unset when CITRIX_SECRET_ARN is set`);
    }
    expect(error.message).not.toContain(SECRET);
  });

  it.each([
    ["a secret name", "citrix/analytics-collector"],
    [
      "a partial ARN without the random suffix",
      "arn:aws:secretsmanager:eu-west-1:123456789012:secret:citrix",
    ],
    ["an SSM parameter ARN", "arn:aws:ssm:eu-west-1:123456789012:parameter/citrix-a1B2c3"],
    ["an ARN without an account", "arn:aws:secretsmanager:eu-west-1::secret:citrix-a1B2c3"],
  ])("rejects %s as CITRIX_SECRET_ARN, alongside every other bad variable", (_what, value) => {
    const error = configError({ ...withoutCredentials, CITRIX_SECRET_ARN: value, TOP_N: "0" });
    expect(error.message).toContain(`CITRIX_SECRET_ARN must be the full ARN of a Secrets Manager secret`);
    expect(error.message).toContain("TOP_N");
  });

  it("without a secret, names each missing credential variable and the secret alternative", () => {
    const error = configError(withoutCredentials);
    for (const variable of ["CITRIX_CUSTOMER_ID", "CITRIX_CLIENT_ID", "CITRIX_CLIENT_SECRET"]) {
      expect(error.message).toContain(
        `${variable} is required (${variable === "CITRIX_CUSTOMER_ID" ? "Citrix Cloud customer id" : variable === "CITRIX_CLIENT_ID" ? "Citrix Cloud API client id" : "Citrix Cloud API client secret"}), unless CITRIX_SECRET_ARN names a secret holding it`,
      );
    }
  });
});

describe("loadConfig for the functions that never call Citrix (plan, commit)", () => {
  const {
    CITRIX_CUSTOMER_ID: _c,
    CITRIX_CLIENT_ID: _i,
    CITRIX_CLIENT_SECRET: _s,
    ...withoutCredentials
  } = base;

  it("needs none of the Citrix settings and returns no Citrix configuration", () => {
    const config = loadConfig(withoutCredentials, { citrix: false });
    expect(config.bucket).toBe("my-bucket");
    expect("citrix" in config).toBe(false);
    // The same environment is not enough for the collect function.
    expect(configError(withoutCredentials).message).toContain("CITRIX_CLIENT_SECRET is required");
  });

  it("neither reads nor checks the Citrix settings, and still checks everything else", () => {
    const citrixOnly = { CITRIX_SECRET_ARN: "not-an-arn", API_BASE: "not a url", TOKEN_URL: "ftp://x" };
    expect(() => loadConfig({ ...withoutCredentials, ...citrixOnly }, { citrix: false })).not.toThrow();
    const problems = configProblems(
      { ...citrixOnly, TOP_N: "0", STATE_KEY: "citrix_analytics/state.json" },
      {
        citrix: false,
      },
    );
    expect(problems.map((problem) => problem.split(" ")[0])).toEqual(["S3_BUCKET", "TOP_N", "STATE_KEY"]);
  });
});

describe("configProblems", () => {
  it("lists each problem loadConfig reports, one per entry, and none for a valid environment", () => {
    const env = { ...base, TOP_N: "0", STATE_KEY: "citrix_analytics/state.json" };
    const problems = configProblems(env);
    expect(problems).toHaveLength(2);
    expect(configError(env).message).toBe(`Invalid configuration: ${problems.join("; ")}`);
    expect(configProblems(base)).toEqual([]);
  });
});

describe("the logging and metrics switches (read by log.ts and metrics.ts, under Powertools' names)", () => {
  const LEVELS = "must be one of TRACE, DEBUG, INFO, WARN, ERROR, CRITICAL, SILENT (upper case)";
  it.each([
    ["POWERTOOLS_LOG_LEVEL", "debug", LEVELS],
    ["POWERTOOLS_LOG_LEVEL", "VERBOSE", LEVELS],
    ["POWERTOOLS_METRICS_DISABLED", "yes", 'must be "true" or "false"'],
    ["DETAILED_METRICS", "1", 'must be "true" or "false"'],
  ])("rejects %s=%j, naming it", (variable, value, message) => {
    expect(configProblems({ ...base, [variable]: value })).toEqual([`${variable} ${message}`]);
  });

  it("accepts the levels and flags they know, and blanks", () => {
    for (const env of [
      { POWERTOOLS_LOG_LEVEL: "DEBUG", POWERTOOLS_METRICS_DISABLED: "true", DETAILED_METRICS: "true" },
      { POWERTOOLS_LOG_LEVEL: "", POWERTOOLS_METRICS_DISABLED: "", DETAILED_METRICS: "" },
    ]) {
      expect(configProblems({ ...base, ...env })).toEqual([]);
    }
  });
});

describe("the variables behind each configuration field (test/support/settings.ts, used by the deployment tests)", () => {
  it.each(
    Object.entries(NON_DEFAULT_SETTINGS).filter(([variable]) => !EVERY_FUNCTION_READS.includes(variable)),
  )("%s changes exactly the fields said to be built from it", (variable, value) => {
    const before = loadConfig(base);
    const after = loadConfig({ ...base, [variable]: value });
    const fields = Object.keys(FIELD_VARIABLES) as (keyof typeof FIELD_VARIABLES)[];
    const changed = fields.filter((field) => JSON.stringify(before[field]) !== JSON.stringify(after[field]));
    expect(changed).toEqual(fields.filter((field) => FIELD_VARIABLES[field].includes(variable)));
  });
});
