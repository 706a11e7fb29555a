import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NON_DEFAULT_SETTINGS, settingsReadBy } from "../../support/settings";

// `serverless package` with the configuration check (serverless/config-check.js): a bad setting stops it
// before anything is built, with the Lambdas' own message; a valid one packages, every setting reaching the
// functions that read it. Each run takes several seconds.

const ROOT = path.join(__dirname, "..", "..", "..");
const SERVERLESS = path.join(ROOT, "node_modules", "serverless", "bin", "serverless.js");
const SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:citrix-analytics-collector-AbC123";
const scratch = mkdtempSync(path.join(os.tmpdir(), "deploy-check-"));
// Serverless packages in a copy of the service: every `serverless package` deletes the service's .serverless/,
// which the other deployment tests read.
const service = path.join(scratch, "service");
beforeAll(() => {
  for (const entry of [
    "serverless.yml",
    "package.json",
    "tsconfig.json",
    "functions",
    "serverless",
    "statemachine",
  ]) {
    cpSync(path.join(ROOT, entry), path.join(service, entry), { recursive: true });
  }
  symlinkSync(path.join(ROOT, "node_modules"), path.join(service, "node_modules"));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface PackageRun {
  code: number;
  output: string;
  template: string;
}

/** `serverless package` into a directory of its own, with only the given settings in its environment. */
function serverlessPackage(name: string, settings: Record<string, string>): Promise<PackageRun> {
  const target = path.join(scratch, name);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVERLESS, "package", "--package", target], {
      cwd: service,
      env: {
        PATH: process.env.PATH,
        HOME: scratch,
        SLS_TELEMETRY_DISABLED: "1",
        SLS_NOTIFICATIONS_MODE: "off",
        ...settings,
      },
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

describe("serverless package runs the Lambdas' configuration check first", () => {
  it.each([
    [
      "TOP_N=0",
      { TOP_N: "0" },
      'ConfigurationError: Invalid configuration: TOP_N must be an integer from 1 to 10000 (got "0") (function collect)',
    ],
    [
      "the how-to's STATE_KEY, inside the feed prefix",
      { STATE_KEY: "citrix_analytics/state.json" },
      'ConfigurationError: Invalid configuration: STATE_KEY "citrix_analytics/state.json" is inside the feed prefix "citrix_analytics/"',
    ],
  ])(
    "fails on %s, naming the variable, before packaging anything",
    { concurrent: true, timeout: 120_000 },
    async (_what, settings, message) => {
      const run = await serverlessPackage(`bad-${Object.keys(settings)[0]}`, {
        CITRIX_SECRET_ARN: SECRET_ARN,
        ...settings,
      });
      expect(run.code).not.toBe(0);
      expect(run.output).toContain("The configuration would fail every execution");
      expect(run.output).toContain(message);
      expect(existsSync(run.template)).toBe(false);
    },
  );

  it.each([
    [
      "LOOKBACK_MINUTES=59 (it sets the schedule's minute too)",
      { LOOKBACK_MINUTES: "59" },
      `Cannot resolve variable at "custom.scheduleMinute": the schedule's minute comes from LOOKBACK_MINUTES: Invalid configuration: LOOKBACK_MINUTES must be an integer from 60 to 10080 (got "59")`,
    ],
    [
      "TRACING=yes",
      { TRACING: "yes" },
      `Cannot resolve variable at "params.default.tracing": Invalid "strToBool" input: Expected either "true", "false", "0", or "1". Received: yes`,
    ],
  ])(
    "fails on %s while serverless.yml is read, naming it",
    { concurrent: true, timeout: 120_000 },
    async (_what, settings, message) => {
      const run = await serverlessPackage(`bad-${Object.keys(settings)[0]}`, {
        CITRIX_SECRET_ARN: SECRET_ARN,
        ...settings,
      });
      expect(run.code).not.toBe(0);
      expect(run.output).toContain(message);
      expect(existsSync(run.template)).toBe(false);
    },
  );

  it("packages valid settings, each reaching the functions that read it, and warns once about a plain-text secret", async () => {
    const run = await serverlessPackage("valid", NON_DEFAULT_SETTINGS);
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
