import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../../cli/main";
import type { Env } from "../../../functions/lib/config/config";
import { copyService } from "../../../local/deployed-roles";
import { NON_DEFAULT_SETTINGS, settingsReadBy } from "../../support/settings";

// `serverless package` with the configuration check (serverless/config-check.js): a bad setting stops it
// before anything is built, naming the variable, by the same check `citrix-collector check-config` runs; a
// valid one packages, every setting reaching the functions that read it. A refusal takes about 4 s, a package
// about 13 s, so the table runs every case through check-config and one of each kind through serverless too.

const ROOT = path.join(__dirname, "..", "..", "..");
const SERVERLESS = path.join(ROOT, "node_modules", "serverless", "bin", "serverless.js");
const SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:citrix-analytics-collector-AbC123";
const KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
/** What a refusal prints each problem after, one per line, indented. */
const REFUSAL = "The settings would deploy something broken";
const scratch = mkdtempSync(path.join(os.tmpdir(), "deploy-check-"));
// Serverless packages in a copy of the service: every `serverless package` deletes the service's .serverless/,
// which the other deployment tests read.
const service = path.join(scratch, "service");
beforeAll(() => copyService(service));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface PackageRun {
  code: number;
  output: string;
  template: string;
}

/** A deployer's shell: nothing of the collector's but the given settings. */
const deployerShell = (settings: Env): Env => ({
  PATH: process.env.PATH,
  HOME: scratch,
  SLS_TELEMETRY_DISABLED: "1",
  SLS_NOTIFICATIONS_MODE: "off",
  ...settings,
});

/** `serverless package` into a directory of its own, in a deployer's shell with the given settings. */
function serverlessPackage(name: string, settings: Env): Promise<PackageRun> {
  const target = path.join(scratch, name);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVERLESS, "package", "--package", target], {
      cwd: service,
      env: deployerShell(settings),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) =>
      resolve({
        code: code ?? -1,
        output,
        template: path.join(target, "cloudformation-template-update-stack.json"),
      }),
    );
  });
}

/** `citrix-collector check-config` in the service directory, in the same shell. */
async function checkConfig(settings: Env): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await main(["check-config"], {
    env: deployerShell(settings),
    cwd: service,
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  });
  return { code, stdout, stderr };
}

/** Runs `work` over `items`, `width` at a time (the machine's two cores), keeping their order. */
async function inBatches<T, R>(
  items: readonly T[],
  width: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < items.length; index = next++) {
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return results;
}

// Valid apart from the case's own setting; undefined unsets a variable.
const VALID: Env = { S3_BUCKET: NON_DEFAULT_SETTINGS.S3_BUCKET, CITRIX_SECRET_ARN: SECRET_ARN };

/**
 * Each setting that would deploy something wrong, and the variables a refusal must name, in the order the
 * check lists them; none: accepted. Settings of different variables share a row where they are of one kind: the
 * check names every bad variable, so each is still shown refused by name, and the table takes half the runs.
 */
const CASES: [string, Env, string[]][] = [
  ["every setting valid, none at its default", NON_DEFAULT_SETTINGS, []],
  ["no S3_BUCKET (there is no default bucket)", { S3_BUCKET: undefined }, ["S3_BUCKET"]],
  ["S3_BUCKET as an s3:// URI", { S3_BUCKET: "s3://citrix-feed/citrix" }, ["S3_BUCKET"]],
  ["S3_BUCKET as a path", { S3_BUCKET: "citrix-feed/citrix" }, ["S3_BUCKET"]],
  ["S3_BUCKET in upper case", { S3_BUCKET: "Citrix-Feed" }, ["S3_BUCKET"]],
  ["S3_BUCKET of 2 characters", { S3_BUCKET: "cf" }, ["S3_BUCKET"]],
  ["S3_BUCKET in IP form", { S3_BUCKET: "192.168.5.4" }, ["S3_BUCKET"]],
  ["S3_BUCKET with ..", { S3_BUCKET: "citrix..feed" }, ["S3_BUCKET"]],
  [
    "booleans that are not true or false",
    {
      GZIP: "1",
      DETAILED_METRICS: "on",
      POWERTOOLS_METRICS_DISABLED: "no",
      CREATE_BUCKET: "yes",
      TRACING: "yes",
    },
    ["GZIP", "POWERTOOLS_METRICS_DISABLED", "DETAILED_METRICS", "CREATE_BUCKET", "TRACING"],
  ],
  [
    "numbers that are not numbers or out of range, the schedule's and the alarm's included",
    { TOP_N: "0", LOOKBACK_MINUTES: "59", LAG_ALARM_HOURS: "abc" },
    ["TOP_N", "LOOKBACK_MINUTES", "LAG_ALARM_HOURS"],
  ],
  ["LAG_ALARM_HOURS=0", { LAG_ALARM_HOURS: "0" }, ["LAG_ALARM_HOURS"]],
  [
    "an address that is none, and ARNs of the wrong service",
    { CITRIX_SECRET_ARN: KEY_ARN, KMS_KEY_ARN: "alias/citrix-feed", ALARM_EMAIL: "soc-team" },
    ["CITRIX_SECRET_ARN", "KMS_KEY_ARN", "ALARM_EMAIL"],
  ],
  [
    "the how-to's STATE_KEY, inside the feed prefix",
    { STATE_KEY: "citrix_analytics/state.json" },
    ["STATE_KEY"],
  ],
  [
    "misspelt ENTITIES, TOP_N and S3_BUCKET",
    { ENTITES: "sessions", TOPN: "500", S3_BUCKETS: "citrix-feed" },
    ["ENTITES", "TOPN", "S3_BUCKETS"],
  ],
];

/** The variables a refusal names, in order: serverless's indented lines, check-config's prefixed ones. */
const namedBy = (lines: string, prefix: RegExp) =>
  lines
    .split("\n")
    .map((line) => new RegExp(`${prefix.source}([A-Z][A-Z0-9_]*) `).exec(line)?.[1])
    .filter((name) => name !== undefined);

let validRun: Promise<PackageRun> | undefined;
/** The valid case's package, run once for the table and the template's checks. */
const packageValidSettings = () => {
  validRun ??= serverlessPackage("valid", NON_DEFAULT_SETTINGS);
  return validRun;
};

/**
 * The cases `serverless package` itself runs too: the valid one and one of each kind of refusal (a missing
 * variable, several bad ones named in order, a look-alike). The plugin and check-config call the same check
 * (loadDeploySettings), so the other cases run through check-config alone: each `serverless package` costs
 * 4–13 s of CPU, and the table once ran 14 of them.
 */
const THROUGH_SERVERLESS = new Set([
  "every setting valid, none at its default",
  "no S3_BUCKET (there is no default bucket)",
  "booleans that are not true or false",
  "misspelt ENTITIES, TOP_N and S3_BUCKET",
]);

describe("serverless package refuses what would deploy something wrong, as check-config does", () => {
  it("refuses each bad setting before building anything, naming it, exactly where check-config does", async () => {
    expect(CASES.filter(([what]) => THROUGH_SERVERLESS.has(what))).toHaveLength(THROUGH_SERVERLESS.size);
    const results = await inBatches([...CASES.entries()], 2, async ([index, [what, settings, variables]]) => {
      // The valid case packages with nothing else set; each bad one is valid but for its own settings.
      const valid = variables.length === 0;
      const env = valid ? settings : { ...VALID, ...settings };
      const check = await checkConfig(env);
      const checked = { refused: check.code !== 0, named: namedBy(check.stderr, /^citrix-collector: /) };
      if (!THROUGH_SERVERLESS.has(what)) return { what, checkConfig: checked };
      const run = await (valid ? packageValidSettings() : serverlessPackage(`case-${index}`, env));
      const refusal = run.output.split(REFUSAL)[1] ?? "";
      return {
        what,
        checkConfig: checked,
        serverless: { refused: run.code !== 0, named: namedBy(refusal, /^ {2}/) },
        // A refusal stops before the plugin logs "Packaging …", before esbuild, and writes no template.
        packaged: run.output.includes("Packaging citrix-analytics-collector") && existsSync(run.template),
      };
    });
    expect(results).toEqual(
      CASES.map(([what, , variables]) => {
        const expected = { refused: variables.length > 0, named: variables };
        if (!THROUGH_SERVERLESS.has(what)) return { what, checkConfig: expected };
        return { what, checkConfig: expected, serverless: expected, packaged: variables.length === 0 };
      }),
    );
    // 4 runs of serverless, two at a time: about 15 s on an idle 2-core machine.
  }, 420_000);

  it("reads the settings from the stage's .env file, as check-config does, so a fresh shell deploys them", async () => {
    const dotenv = path.join(service, ".env.prod");
    writeFileSync(dotenv, "S3_BUCKET=s3://citrix-feed/citrix/\nENTITES=sessions\n");
    try {
      const shell = { CITRIX_SECRET_ARN: SECRET_ARN };
      const [run, check] = await Promise.all([serverlessPackage("dotenv", shell), checkConfig(shell)]);
      const instead = "set S3_BUCKET=citrix-feed and S3_PREFIX=citrix";
      expect(namedBy(run.output.split(REFUSAL)[1] ?? "", /^ {2}/)).toEqual(["S3_BUCKET", "ENTITES"]);
      expect(run.output).toContain(instead);
      expect(namedBy(check.stderr, /^citrix-collector: /)).toEqual(["S3_BUCKET", "ENTITES"]);
      expect(check.stderr).toContain(instead);
    } finally {
      rmSync(dotenv);
    }
  }, 120_000);

  it("packages valid settings, each reaching the functions that read it, and warns once about a plain-text secret", async () => {
    const run = await packageValidSettings();
    expect(run.output).not.toContain("Error:");
    expect(run.code).toBe(0);
    expect(run.output.split("CITRIX_CLIENT_SECRET is deployed in plain text")).toHaveLength(2);
    expect(run.output).toContain("the CloudFormation template uploaded to the deployment bucket");

    const template = JSON.parse(readFileSync(run.template, "utf8")) as {
      Resources: Record<string, { Properties: { Environment?: { Variables: Record<string, string> } } }>;
    };
    for (const functionKey of ["plan", "collect", "commit"] as const) {
      const id = `${functionKey[0]?.toUpperCase()}${functionKey.slice(1)}LambdaFunction`;
      const variables = template.Resources[id]?.Properties.Environment?.Variables ?? {};
      // Unset where the package ran: deployed blank, so the plain-text credentials apply.
      expect(variables.CITRIX_SECRET_ARN).toBe(functionKey === "collect" ? "" : undefined);
      for (const setting of settingsReadBy(functionKey).filter((name) => name !== "CITRIX_SECRET_ARN")) {
        expect({ functionKey, setting, value: variables[setting] }).toEqual({
          functionKey,
          setting,
          value: NON_DEFAULT_SETTINGS[setting],
        });
      }
    }
  }, 120_000);
});
