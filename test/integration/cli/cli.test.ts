import { spawn } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { StartExecutionCommand } from "@aws-sdk/client-sfn";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../../cli/main";
import type { Env } from "../../../functions/lib/config/config";
import { type LocalStepFunctions, startLocalStepFunctions } from "../../../local/sfn-api-server";
import { startCitrixSimulator } from "../../../stand-ins/citrix-simulator";
import { LOCAL_S3_CREDENTIALS } from "../../../stand-ins/s3-server";
import { BUCKET, expectFeedMatchesSimulator, FEED_PREFIX, type Stand, startStand } from "../../support/stand";

// 11:20 UTC with LOOKBACK_MINUTES 75: the newest eligible hour is 10:00; the first run starts at 08:00.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOURS = ["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z"];
const ENTITIES = ["sessions", "machines", "users"];
const ROOT = path.join(__dirname, "..", "..", "..");
const BIN = path.join(ROOT, "bin", "citrix-collector.js");
const NODE_CHECK = path.join(ROOT, "bin", "require-node22.js");

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

interface StatusJson {
  watermark: string | null;
  newestEligibleHour: string;
  lagHours: number | null;
  executions: { name: string; status: string; redriveCount: number; redrivable: boolean; error?: string }[];
}

let stand: Stand;
let api: LocalStepFunctions;
/** The operator's shell: the state machine and the bucket, and no Citrix credentials at all. */
let operatorEnv: Env;

/** Fresh stand-ins: every test starts from an empty bucket and no executions, so each passes on its own. */
async function openStandIns(): Promise<void> {
  stand = await startStand({
    now: NOW,
    simulator: { volume: { sessions: 1200, machines: 40, users: 300 } },
    env: { FIRST_HOUR_UTC: HOURS[0] },
  });
  api = await startLocalStepFunctions({
    // The engine runs each execution of the API with the real handlers over the test's stand-ins.
    execute: ({ name, input, redrive }) => stand.run(name, { input, redrive }),
  });
  operatorEnv = { STATE_MACHINE_ARN: api.stateMachineArn, S3_BUCKET: BUCKET, S3_PREFIX: FEED_PREFIX };
}

async function closeStandIns(): Promise<void> {
  await api.close();
  await stand.close();
}

/** Runs the CLI in this process, as the bin does, against the stand-ins. */
async function cli(args: string[], env: Env = operatorEnv): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    env,
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    now: () => NOW,
    sleep: () => new Promise((resolve) => setTimeout(resolve, 5)),
    sfn: () => api.client(),
    s3: () => stand.client,
  });
  return { code, stdout, stderr };
}

/** Runs `citrix-collector` as a user would: a process of its own, with only the environment given. */
function spawnCli(args: string[], env: Env, cwd = os.tmpdir()): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      env: {
        PATH: process.env.PATH,
        HOME: cwd,
        // Never look for credentials or a region outside this environment (and never at EC2 metadata).
        AWS_EC2_METADATA_DISABLED: "true",
        AWS_CONFIG_FILE: path.join(cwd, "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE: path.join(cwd, "no-aws-credentials"),
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 30_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function statusJson(): Promise<StatusJson> {
  const result = await cli(["status", "--json"]);
  expect(result).toMatchObject({ code: 0, stderr: "" });
  return JSON.parse(result.stdout) as StatusJson;
}

/** StartExecution calls the API answered so far. */
function startExecutions(): number {
  return api.requests.filter((request) => request.target.endsWith("StartExecution")).length;
}

/** What the hourly schedule does: StartExecution with {}; resolves when it stopped. */
async function scheduledExecution(name: string): Promise<void> {
  await api
    .client()
    .send(new StartExecutionCommand({ stateMachineArn: api.stateMachineArn, name, input: "{}" }));
  await api.settled();
}

describe("citrix-collector against the deployed state machine (local Step Functions API, S3 and Citrix)", () => {
  beforeEach(openStandIns);
  afterEach(closeStandIns);

  it("status before any run: no watermark, no executions, and no Citrix credentials needed", async () => {
    const text = await cli(["status"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("Watermark        none yet");
    expect(text.stdout).toContain("no hour published yet");
    expect(text.stdout).toContain("Lag              – (no watermark to measure from)");
    expect(text.stdout).toContain(`Newest eligible  ${HOURS[2]}`);
    expect(text.stdout).toContain("No executions yet.");
    expect(text.stdout).not.toContain("holds no watermark");

    expect(await statusJson()).toMatchObject({
      watermark: null,
      newestEligibleHour: HOURS[2],
      lagHours: null,
      executions: [],
    });
  });

  it("status shows a failed execution with its error; redrive after the fault is gone publishes its hours", async () => {
    stand.simulator.inject({ kind: "wrongEnvelope", times: 1, entity: "machines" });
    await scheduledExecution("scheduled-1");
    const failed = await statusJson();
    expect(failed.watermark).toBeNull();
    expect(failed.executions).toEqual([
      expect.objectContaining({
        name: "scheduled-1",
        status: "FAILED",
        redrivable: true,
        error: "CitrixResponseError",
      }),
    ]);
    const text = await cli(["status"]);
    expect(text.stdout).toMatch(
      /FAILED .* scheduled-1\n\s+CitrixResponseError: response from .*\/machines.*\n\s+in CollectPage \(CollectEntityHours item \d+\)\n/,
    );
    expect(text.stdout).toContain("1 execution(s) can be redriven");

    // The fault fired once and is gone: the redrive collects and publishes.
    const redriven = await cli(["redrive", "scheduled-1", "--wait"]);
    expect(redriven.stderr).toBe("");
    expect(redriven.code).toBe(0);
    expect(redriven.stdout).toContain("Redriven scheduled-1");
    expect(redriven.stdout).toContain("scheduled-1: SUCCEEDED");
    for (const hourUtc of HOURS) {
      expect(redriven.stdout).toContain(`${hourUtc} published: machines 40, sessions 1,200, users 300`);
      for (const entity of ENTITIES) await expectFeedMatchesSimulator(stand, entity, hourUtc);
    }
    expect(await statusJson()).toMatchObject({
      watermark: HOURS[2],
      lagHours: 0,
      executions: [{ name: "scheduled-1", status: "SUCCEEDED", redriveCount: 1, redrivable: false }],
    });
  });

  it("backfill checks the range like Plan does, then starts an execution that publishes it", async () => {
    await scheduledExecution("scheduled-1");
    const startedBefore = startExecutions();
    const tooNew = await cli(["backfill", "--from", HOURS[2] as string, "--to", "2026-11-24T11:00:00Z"]);
    expect(tooNew.code).toBe(2);
    expect(tooNew.stderr).toBe(
      "citrix-collector: --to (2026-11-24T11:00:00Z) is not settled yet: the newest hour that can be collected now is 2026-11-24T10:00:00Z\n",
    );
    const tooLong = await cli(["backfill", "--from", "2026-11-20T00:00:00Z", "--to", "2026-11-21T00:00:00Z"]);
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toMatch(
      /^citrix-collector: a backfill covers at most MAX_HOURS_PER_RUN \(24\) hours.*\n$/,
    );
    const notAnHour = await cli([
      "backfill",
      "--from",
      "2026-11-20T00:30:00Z",
      "--to",
      "2026-11-20T01:00:00Z",
    ]);
    expect(notAnHour.code).toBe(2);
    expect(notAnHour.stderr.split("\n")).toHaveLength(2);
    expect(startExecutions()).toBe(startedBefore);

    // Hours before FIRST_HOUR_UTC were never published: a backfill publishes them and leaves the watermark.
    const started = await cli([
      "backfill",
      "--from",
      "2026-11-24T05:00:00Z",
      "--to",
      "2026-11-24T06:00:00Z",
      "--wait",
    ]);
    expect(started.stderr).toBe("");
    expect(started.code).toBe(0);
    const name = /Started (backfill-20261124T05-20261124T06-[0-9a-f]{6}): 2 hour\(s\)/.exec(
      started.stdout,
    )?.[1];
    expect(name).toBeDefined();
    expect(started.stdout).toContain(
      `${api.stateMachineArn.replace(":stateMachine:", ":execution:")}:${name}`,
    );
    expect(started.stdout).toContain(
      "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/",
    );
    expect(started.stdout).toContain(`${name}: SUCCEEDED`);
    for (const hourUtc of ["2026-11-24T05:00:00Z", "2026-11-24T06:00:00Z"]) {
      for (const entity of ENTITIES) await expectFeedMatchesSimulator(stand, entity, hourUtc);
    }
    expect(await stand.watermark()).toBe(HOURS[2]);
  });

  it("lists failed executions first, then the newest, and redrives every failed one with --all-failed", async () => {
    await scheduledExecution("scheduled-1");
    const backfilled = await cli([
      "backfill",
      "--from",
      "2026-11-24T05:00:00Z",
      "--to",
      "2026-11-24T06:00:00Z",
      "--wait",
    ]);
    expect(backfilled.code).toBe(0);
    // 07:00 was never published, so the backfill asks Citrix for it (a published hour it would not ask for).
    stand.simulator.inject({ kind: "status", status: 403, times: 1, entity: "users" });
    const failing = await cli([
      "backfill",
      "--from",
      "2026-11-24T07:00:00Z",
      "--to",
      "2026-11-24T07:00:00Z",
      "--wait",
    ]);
    expect(failing.code).toBe(1);
    expect(failing.stdout).toMatch(/: FAILED\n {2}CitrixAuthError: /);
    const backfillName = /Started (\S+):/.exec(failing.stdout)?.[1];
    // A newer scheduled execution succeeds (nothing is due), after the failed one.
    await scheduledExecution("scheduled-2");

    const listed = await statusJson();
    expect(listed.executions.map((execution) => [execution.name, execution.status])).toEqual([
      [backfillName, "FAILED"],
      ["scheduled-2", "SUCCEEDED"],
      [expect.stringMatching(/^backfill-20261124T05-/), "SUCCEEDED"],
      ["scheduled-1", "SUCCEEDED"],
    ]);
    expect(listed.executions[0]).toMatchObject({ error: "CitrixAuthError", redrivable: true });

    const all = await cli(["redrive", "--all-failed", "--wait"]);
    expect(all.stderr).toBe("");
    expect(all.code).toBe(0);
    expect(all.stdout.match(/^Redriven /gm)).toHaveLength(1);
    expect(all.stdout).toContain(`Redriven ${backfillName}`);
    expect(all.stdout).toMatch(
      /^ {2}2026-11-24T07:00:00Z published: machines 40, sessions 1,200, users 300$/m,
    );
    expect((await statusJson()).executions.filter((execution) => execution.redrivable)).toEqual([]);
    const none = await cli(["redrive", "--all-failed"]);
    expect(none).toMatchObject({ code: 0, stderr: "" });
    expect(none.stdout).toContain("nothing to redrive");
  });

  it("status hints at mismatched settings when executions succeeded but no watermark is where it looks", async () => {
    // A backfill publishes its hours and leaves the watermark: no watermark after it is no mismatch.
    const backfilled = await cli([
      "backfill",
      "--from",
      "2026-11-24T05:00:00Z",
      "--to",
      "2026-11-24T05:00:00Z",
      "--wait",
    ]);
    expect(backfilled.code).toBe(0);
    const afterBackfill = (await cli(["status"])).stdout;
    expect(afterBackfill).not.toContain("holds no watermark");
    expect(afterBackfill).not.toContain("no hour published");
    expect(afterBackfill).toContain(
      "no scheduled run has moved it; 1 hour(s) published by backfills (2026-11-24T05:00:00Z), which never move it",
    );

    await scheduledExecution("scheduled-1");
    expect((await cli(["status"])).stdout).not.toContain("holds no watermark");
    const mistyped = await cli(["status"], { ...operatorEnv, S3_PREFIX: "citrix_analytcs" });
    expect(mistyped.code).toBe(0);
    expect(mistyped.stdout).toContain("Watermark        none yet");
    expect(mistyped.stdout).toContain(
      `\n1 execution(s) succeeded, yet s3://${BUCKET}/_citrix_collector/citrix_analytcs/state.json holds no watermark: ` +
        "S3_BUCKET, S3_PREFIX, CONTROL_PREFIX or STATE_KEY in this shell probably differ from the deployed functions'",
    );
  });

  it("execution names: the CLI checks Step Functions' rule, Plan says which stricter rule it applies and why", async () => {
    const requestsBefore = api.requests.length;
    for (const name of ["run 1", "run/1", "x".repeat(81)]) {
      const refused = await cli(["redrive", name]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toBe(
        `citrix-collector: "${name}" is not a Step Functions execution name: those are 1–80 characters, without whitespace, control characters or any of < > { } [ ] ? * " # % \\ ^ | ~ \` $ & , ; : /\n`,
      );
    }
    const arn = `${api.stateMachineArn.replace(":stateMachine:", ":execution:")}:run%1`;
    expect((await cli(["redrive", arn])).stderr).toMatch(
      /"run%1" is not a Step Functions execution name.* \(in the ARN /,
    );
    expect(api.requests.length).toBe(requestsBefore);

    // "." is allowed by Step Functions, so the console starts the execution; Plan refuses it, saying why.
    await scheduledExecution("nightly.1");
    const text = await cli(["status"]);
    expect(text.stdout).toContain(
      "InvalidInputError: PlanHours received invalid input: executionName must be 1–80 letters, digits, - or _ " +
        "(stricter than Step Functions: the name goes into S3 keys and CloudWatch Logs); start it again with such a name\n",
    );
    // The CLI passes the name on: Step Functions itself decides whether it can be redriven.
    expect((await cli(["redrive", "nightly.1"])).stdout).toContain("Redriven nightly.1");
  });

  it("answers one line and exit code 1 when Step Functions refuses", async () => {
    await scheduledExecution("scheduled-2");
    const succeeded = await cli(["redrive", "scheduled-2"]);
    expect(succeeded).toEqual({
      code: 1,
      stdout: "",
      stderr: "citrix-collector: ExecutionNotRedrivable: Execution is SUCCEEDED and cannot be redriven\n",
    });
    const unknown = await cli(["redrive", "no-such-execution"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^citrix-collector: ExecutionDoesNotExist: .*no-such-execution'\n$/);
  });
});

describe("citrix-collector check-config", () => {
  const valid: Env = {
    S3_BUCKET: BUCKET,
    CITRIX_SECRET_ARN:
      "arn:aws:secretsmanager:eu-west-1:123456789012:secret:citrix-analytics-collector-AbC123",
  };
  // The service directory it is run in: where serverless would look for .env files.
  let serviceDir: string;
  beforeEach(() => {
    serviceDir = mkdtempSync(path.join(os.tmpdir(), "check-config-"));
  });
  afterEach(() => rmSync(serviceDir, { recursive: true, force: true }));

  const checkConfig = async (env: Env, args: string[] = []): Promise<CliResult> => {
    let stdout = "";
    let stderr = "";
    const code = await main(["check-config", ...args], {
      env,
      cwd: serviceDir,
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text) },
    });
    return { code, stdout, stderr };
  };

  it("prints ok and exits 0 for valid settings", async () => {
    expect(await checkConfig(valid)).toEqual({ code: 0, stdout: "ok\n", stderr: "" });
  });

  it("prints one line per problem on stderr and exits 2", async () => {
    const result = await checkConfig({
      ...valid,
      TOP_N: "0",
      STATE_KEY: "citrix_analytics/state.json",
      CITRIX_CLIENT_SECRET: "left-beside-the-secret",
      TRACING: "yes",
      TOPN: "500",
    });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    const lines = result.stderr.trimEnd().split("\n");
    expect(lines.map((line) => line.split(" ")[1])).toEqual([
      "TOP_N",
      "STATE_KEY",
      "CITRIX_CLIENT_SECRET",
      "TRACING",
      "TOPN",
    ]);
    for (const line of lines) expect(line).toMatch(/^citrix-collector: /);
    expect(result.stderr).not.toContain("left-beside-the-secret");
  });

  it("reads the settings from .env.STAGE, else .env, as serverless does, the shell's variables winning", async () => {
    writeFileSync(
      path.join(serviceDir, ".env"),
      `S3_BUCKET=${BUCKET}\nCITRIX_SECRET_ARN=${valid.CITRIX_SECRET_ARN}\n`,
    );
    writeFileSync(path.join(serviceDir, ".env.prod"), "S3_BUCKET=s3://feed-bucket/citrix\n");
    const prod = await checkConfig({ CITRIX_SECRET_ARN: valid.CITRIX_SECRET_ARN });
    expect(prod.code).toBe(2);
    expect(prod.stderr).toContain("set S3_BUCKET=feed-bucket and S3_PREFIX=citrix");
    expect(await checkConfig({}, ["--stage", "dev"])).toEqual({
      code: 0,
      stdout: "ok (with .env)\n",
      stderr: "",
    });
    expect(await checkConfig({ S3_BUCKET: BUCKET, CITRIX_SECRET_ARN: valid.CITRIX_SECRET_ARN })).toEqual({
      code: 0,
      stdout: "ok (with .env.prod)\n",
      stderr: "",
    });
  });
});

describe("citrix-collector as a process", () => {
  beforeAll(async () => {
    await openStandIns();
    await scheduledExecution("scheduled-1");
  });
  afterAll(closeStandIns);

  const processEnv = (): Env => ({
    ...operatorEnv,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: LOCAL_S3_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_S3_CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_SFN: api.endpoint,
    AWS_ENDPOINT_URL_S3: stand.s3.endpoint,
  });

  it("--version prints package.json's version, --help lists every command, from the bundle", async () => {
    const version = await spawnCli(["--version"], {});
    const { version: packageVersion } = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8"));
    expect(version).toEqual({ code: 0, stdout: `${packageVersion}\n`, stderr: "" });
    const help = await spawnCli(["--help"], {});
    expect(help.code).toBe(0);
    for (const command of ["status", "backfill", "redrive", "feed", "check-config", "run"]) {
      expect(help.stdout).toMatch(new RegExp(`^  ${command} `, "m"));
    }
    // The bin ran the bundle bin/build-cli.js keeps, not the TypeScript sources.
    expect(existsSync(path.join(ROOT, ".cli-build", "main.js"))).toBe(true);
  });

  it("reaches the Step Functions API and S3 through the SDK's own endpoint variables", async () => {
    const result = await spawnCli(["status", "--json"], processEnv());
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const status = JSON.parse(result.stdout) as StatusJson;
    expect(status.watermark).toBe(HOURS[2]);
    expect(status.executions.map((execution) => execution.name)).toContain("scheduled-1");
  });

  it.each([
    ["no state machine", ["status"], { STATE_MACHINE_ARN: "" }, /STATE_MACHINE_ARN is not set/],
    ["no bucket", ["status"], { S3_BUCKET: "" }, /Invalid configuration: S3_BUCKET is required/],
    ["a malformed ARN", ["status"], { STATE_MACHINE_ARN: "collector" }, /must be a state machine ARN/],
    ["an unknown option", ["status", "--jsn"], {}, /unknown option '--jsn' \(Did you mean --json\?\)/],
    ["an unknown command", ["stauts"], {}, /unknown command 'stauts' \(Did you mean status\?\)/],
    ["a missing option", ["backfill", "--from", HOURS[0] as string], {}, /required option '--to <hour>'/],
    ["both redrive forms", ["redrive", "x", "--all-failed"], {}, /either an execution .* or --all-failed/],
    [
      "no AWS credentials",
      ["status"],
      { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" },
      /no AWS credentials found .*: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY$/m,
    ],
    [
      "a run with every setting missing",
      ["run", "--citrix", "env", "--s3", "env"],
      { S3_BUCKET: "", AWS_REGION: "", AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" },
      /^citrix-collector: run --citrix env --s3 env: S3_BUCKET is required .*; CITRIX_CUSTOMER_ID is required .*; CITRIX_CLIENT_ID is required .*; CITRIX_CLIENT_SECRET is required .*; no AWS credentials found .*; AWS_REGION is required/,
    ],
    [
      "a run reading a secret without AWS credentials",
      ["run", "--citrix", "env"],
      {
        CITRIX_SECRET_ARN: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:citrix-AbC123",
        AWS_ACCESS_KEY_ID: "",
        AWS_SECRET_ACCESS_KEY: "",
      },
      /^citrix-collector: run --citrix env: no AWS credentials found .*: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY$/m,
    ],
    [
      "--data with --s3 env",
      ["run", "--s3", "env", "--data", "bucket"],
      {},
      /--data keeps the local S3 bucket/,
    ],
    [
      "a --now that is no time",
      ["run", "--now", "tomorrow"],
      {},
      /'--now <time>' argument 'tomorrow' is invalid/,
    ],
  ])("rejects %s with one line on stderr and exit code 2", async (_, args, overrides, message) => {
    const result = await spawnCli(args, { ...processEnv(), ...overrides });
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/^citrix-collector: [^\n]+\n$/);
    expect(result.code).toBe(2);
  });

  it("a run missing settings starts nothing and requests nothing", async () => {
    const simulator = await startCitrixSimulator();
    const cwd = mkdtempSync(path.join(os.tmpdir(), "citrix-collector-run-"));
    try {
      const result = await spawnCli(
        ["run", "--citrix", "env", "--s3", "env"],
        {
          ...processEnv(),
          API_BASE: simulator.apiBase,
          TOKEN_URL: simulator.tokenUrl,
          CITRIX_CUSTOMER_ID: "c",
        },
        cwd,
      );
      expect(result.stderr).toMatch(
        /^citrix-collector: run --citrix env --s3 env: CITRIX_CLIENT_ID is required .*; CITRIX_CLIENT_SECRET is required [^;]*\n$/,
      );
      expect(result).toMatchObject({ code: 2, stdout: "" });
      expect(simulator.requests).toEqual([]);
      expect(existsSync(path.join(cwd, ".local-data"))).toBe(false);
    } finally {
      await simulator.close();
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it("run prints plain per entity-hour lines off a terminal, and neither they nor the logs hold a secret", async () => {
    const simulator = await startCitrixSimulator({ clientSecret: "cli-run-client-secret-7f3a" });
    const cwd = mkdtempSync(path.join(os.tmpdir(), "citrix-collector-run-"));
    try {
      const result = await spawnCli(
        ["run", "--citrix", "env", "--hours", "2", "--verbose"],
        {
          API_BASE: simulator.apiBase,
          TOKEN_URL: simulator.tokenUrl,
          CITRIX_CUSTOMER_ID: simulator.customerId,
          CITRIX_CLIENT_ID: simulator.clientId,
          CITRIX_CLIENT_SECRET: simulator.clientSecret,
          ENTITIES: "sessions,users",
        },
        cwd,
      );
      expect(result.code).toBe(0);
      const collected = result.stdout.split("\n").filter((line) => / collected /.test(line));
      expect(collected).toHaveLength(4);
      for (const entity of ["sessions", "users"]) {
        expect(collected.filter((line) => line.startsWith(entity))).toHaveLength(2);
      }
      expect(collected[0]).toMatch(
        /^\w+ +\d{4}-\d{2}-\d{2}T\d{2}:00:00Z {2}collected {3}pages \d+ {2}records [\d,]+ {2}parts \d+ {2}invocations 1$/,
      );
      // No cursor movement when the output is not a terminal.
      expect(result.stdout).not.toContain("\x1b[");
      expect(result.stdout).toContain("Published 2 of 2 hour(s)");

      // --verbose: the functions' log and metric lines on stderr, each JSON, each with its execution.
      const lines = result.stderr
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(lines.length).toBeGreaterThan(10);
      for (const line of lines) expect(line.execution).toMatch(/^local-\d{8}T\d{6}-[0-9a-f]{8}$/);
      expect(lines.filter((line) => line.message === "fetched page")).not.toHaveLength(0);
      const everything = result.stdout + result.stderr + readRunLogs(cwd);
      expect(simulator.issuedTokens.length).toBeGreaterThan(0);
      for (const secret of [simulator.clientSecret, ...simulator.issuedTokens]) {
        expect(everything).not.toContain(secret);
      }
    } finally {
      await simulator.close();
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe("citrix-collector run --data (a local bucket kept between runs)", () => {
  let cwd: string;
  beforeEach(() => {
    cwd = mkdtempSync(path.join(os.tmpdir(), "citrix-collector-data-"));
  });
  afterEach(() => rmSync(cwd, { recursive: true, force: true }));

  /** A local run in this process, working in `cwd`, with a clock that starts at NOW and moves on. */
  async function run(args: string[]): Promise<CliResult> {
    const started = Date.now();
    let stdout = "";
    let stderr = "";
    const code = await main(["run", ...args], {
      env: { ENTITIES: "sessions,users" },
      cwd,
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text) },
      now: () => NOW + (Date.now() - started),
    });
    return { code, stdout, stderr };
  }

  /** The entity-hour lines a run printed, as "entity hour". */
  const entityHours = (stdout: string) =>
    stdout
      .split("\n")
      .filter((line) => /^(sessions|users) +\S+Z {2}/.test(line))
      .map((line) => line.split(/ +/).slice(0, 2).join(" "));

  it("the next run has nothing due; one an hour later collects only the new hour; each entity-hour prints once", async () => {
    const first = await run(["--data", "bucket"]);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`files in ${path.join(cwd, "bucket")}, kept for the next run`);
    expect(entityHours(first.stdout).sort()).toEqual(
      HOURS.flatMap((hourUtc) => [`sessions ${hourUtc}`, `users ${hourUtc}`]).sort(),
    );
    // Every count is written one way: 2,500 sessions an hour, never 2500.
    expect(first.stdout).toContain("records 2,500");
    expect(first.stdout).not.toMatch(/\b2500\b/);
    expect(first.stdout).toContain(
      "Collected 6 entity-hour(s): 12 pages, 8,400 records, 6 parts, 1 collect invocation(s)",
    );

    const again = await run(["--data", "bucket"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(
      `Nothing due: the watermark (${HOURS[2]}) is at the newest eligible hour.`,
    );
    expect(entityHours(again.stdout)).toEqual([]);

    const hourLater = await run(["--data", "bucket", "--now", "+1h"]);
    expect(hourLater.code).toBe(0);
    expect(entityHours(hourLater.stdout).sort()).toEqual([
      "sessions 2026-11-24T11:00:00Z",
      "users 2026-11-24T11:00:00Z",
    ]);
    expect(hourLater.stdout).toContain("watermark 2026-11-24T10:00:00Z → 2026-11-24T11:00:00Z");

    const at = await run(["--data", "bucket", "--now", "2026-11-24T13:20:00Z"]);
    expect(entityHours(at.stdout).sort()).toEqual([
      "sessions 2026-11-24T12:00:00Z",
      "users 2026-11-24T12:00:00Z",
    ]);

    // Without --data a run starts from an empty bucket again.
    const fresh = await run([]);
    expect(entityHours(fresh.stdout)).toHaveLength(6);
  });

  it("feed --data shows the feed by entity-hour and the control objects, and prints one hour's records", async () => {
    const first = await run(["--data", "bucket"]);
    expect(first.code).toBe(0);
    // A first run stores the first watermark: none was there to lag behind.
    expect(first.stdout).toMatch(
      /^Planned scheduled run: 3 hour\(s\) × 2 entities .*, no watermark stored yet$/m,
    );
    expect(first.stdout).toContain(`watermark stored for the first time: ${HOURS[2]}`);

    const feed = async (args: string[]) => {
      let stdout = "";
      let stderr = "";
      const code = await main(["feed", ...args], {
        env: {},
        cwd,
        stdout: { write: (text: string) => (stdout += text) },
        stderr: { write: (text: string) => (stderr += text) },
      });
      return { code, stdout, stderr };
    };
    const overview = await feed(["--data", "bucket"]);
    expect(overview).toMatchObject({ code: 0, stderr: "" });
    const rows = overview.stdout.split("\n").filter((line) => /^\S+Z {2}(sessions|users) /.test(line));
    expect(rows.map((line) => line.split(/ +/).slice(0, 4).join(" "))).toEqual(
      HOURS.flatMap((hourUtc) => [`${hourUtc} sessions 1 2,500`, `${hourUtc} users 1 300`]),
    );
    for (const row of rows) expect(row).toMatch(/generation 1 by local-\S+, published by local-\S+ at /);
    expect(overview.stdout).toContain(
      `Watermark    ${HOURS[2]}: every hour up to it is published for every entity`,
    );
    expect(overview.stdout).toContain(`First hour   ${HOURS[0]}: the first run started there`);
    expect(overview.stdout).toContain("Leases       none: no scheduled execution is collecting");
    expect(overview.stdout).toMatch(/Page window {2}the Citrix API allowed \d+ page request\(s\) in flight/);
    expect(overview.stdout).toContain("Staging      none: every claimed entity-hour is published");

    const records = await feed(["--data", "bucket", "--entity", "users", "--hour", HOURS[1] as string]);
    expect(records).toMatchObject({ code: 0, stderr: "" });
    const lines = records.stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(lines).toHaveLength(300);
    expect(lines[0]).toMatchObject({
      citrix_entity: "users",
      citrix_hour_utc: HOURS[1],
      raw: expect.any(Object),
    });

    expect(await feed(["--data", "bucket", "--entity", "user", "--hour", HOURS[1] as string])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(
        /^citrix-collector: no feed objects for user at .*: the feed has sessions at /,
      ),
    });
    expect(await feed(["--data", "bucket", "--entity", "users"])).toMatchObject({
      code: 2,
      stderr: "citrix-collector: feed prints one entity-hour's records with both --entity and --hour\n",
    });
    expect(await feed(["--data", "elsewhere"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("elsewhere holds no local bucket"),
    });
  });

  it("keeps the newest five run folders under .local-data, and never the bucket of --data", async () => {
    const localData = path.join(cwd, ".local-data");
    const old = [
      "run-2026-01-01T00-00-00-000Z",
      "run-2026-01-02T00-00-00-000Z",
      "run-2026-01-03T00-00-00-000Z",
    ];
    const newer = [
      "run-2026-02-01T00-00-00-000Z",
      "run-2026-02-02T00-00-00-000Z",
      "run-2026-02-03T00-00-00-000Z",
    ];
    for (const folder of [...old, ...newer]) {
      mkdirSync(path.join(localData, folder), { recursive: true });
      writeFileSync(path.join(localData, folder, "collector.log"), "{}\n");
    }
    // With this run's, seven folders: the two oldest go, but the oldest holds the bucket this run keeps.
    const bucket = path.join(localData, old[0] as string, "bucket");
    expect((await run(["--data", bucket])).code).toBe(0);
    const [current] = readdirSync(localData).filter((name) => name.startsWith("run-2026-11-24"));
    expect(readdirSync(localData).sort()).toEqual([old[0], old[2], ...newer, current]);
  });
});

describe("on a Node.js older than 22", () => {
  let scratch: string;
  /** A --require script that makes Node.js report version 20 to the check. */
  let pretendNode20: string;
  beforeAll(() => {
    scratch = mkdtempSync(path.join(os.tmpdir(), "citrix-collector-node20-"));
    pretendNode20 = path.join(scratch, "pretend-node-20.cjs");
    writeFileSync(pretendNode20, 'Object.defineProperty(process.versions, "node", { value: "20.20.2" });\n');
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  function spawnNode(args: string[]): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  it("the CLI says in one line to run it through npm, and exits 2", async () => {
    expect(await spawnNode(["--require", pretendNode20, BIN, "status"])).toEqual({
      code: 2,
      stdout: "",
      stderr: `citrix-collector: Node.js 22 or newer is needed, and this is v20.20.2 (${process.execPath}): run it as npm start, npm test or npx citrix-collector, which use the Node.js 22 that npm ci put in node_modules/.bin\n`,
    });
  });

  it("without the Node.js 22 npm ci sets up (--ignore-scripts), the check says how to set it up", async () => {
    const project = path.join(scratch, "project");
    mkdirSync(path.join(project, "bin"), { recursive: true });
    copyFileSync(NODE_CHECK, path.join(project, "bin", "require-node22.js"));
    const result = await spawnNode([
      "--require",
      pretendNode20,
      path.join(project, "bin", "require-node22.js"),
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^citrix-collector: Node\.js 22 or newer is needed, and this is v20\.20\.2 .*\(installed with --ignore-scripts\?\): run "npm rebuild node" once, or install Node\.js 22\n$/,
    );
  });

  it("on Node.js 22 the check passes silently", async () => {
    expect(await spawnNode([NODE_CHECK])).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  it("every npm script runs the check first", () => {
    const { scripts } = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    };
    expect(Object.keys(scripts)).toContain("test");
    for (const [name, command] of Object.entries(scripts)) {
      expect({ name, command: command.slice(0, 30) }).toEqual({
        name,
        command: "node bin/require-node22.js && ",
      });
    }
  });
});

/** Every file the run left under .local-data (S3 objects included), as text. */
function readRunLogs(cwd: string): string {
  const root = path.join(cwd, ".local-data");
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => readFileSync(path.join(entry.parentPath, entry.name), "utf8"))
    .join("\n");
}
