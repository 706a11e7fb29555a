import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  type SFNClient,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../../cli/main";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import type { LocalCollectionResult } from "../../../local/collection";
import { directoryExecutionStore } from "../../../local/execution-store";
import { type LocalStepFunctions, startLocalStepFunctions } from "../../../local/sfn-api-server";
import { startLocalS3 } from "../../../stand-ins/s3-server";

// 11:20 UTC with LOOKBACK_MINUTES 75: the newest eligible hour is 10:00.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const BIN = path.join(__dirname, "..", "..", "..", "bin", "citrix-collector.js");
const LOCAL_BUCKET = "citrix-analytics-local";

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

interface StatusJson {
  watermark: string | null;
  executions: { name: string; status: string; redriveCount: number; redrivable: boolean; error?: string }[];
}

let cwd: string;
beforeEach(() => {
  cwd = mkdtempSync(path.join(os.tmpdir(), "citrix-collector-local-ops-"));
});
afterEach(() => rmSync(cwd, { recursive: true, force: true }));

/** One invocation in this process, in `cwd`, with a clock that starts at NOW and moves on. */
async function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const started = Date.now();
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    env: { ENTITIES: "sessions,users", ...env },
    cwd,
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    now: () => NOW + (Date.now() - started),
  });
  return { code, stdout, stderr };
}

/** `citrix-collector` as a user runs it: a process of its own, on the real clock, in `cwd`. */
function spawnCli(args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      env: { PATH: process.env.PATH, HOME: cwd, ENTITIES: "sessions,users" },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

function statusOf(result: CliResult): StatusJson {
  expect(result).toMatchObject({ code: 0, stderr: "" });
  return JSON.parse(result.stdout) as StatusJson;
}

/** The executions kept under --data DIR, by name. */
function keptExecutions(data: string): string[] {
  const directory = path.join(cwd, data, "step-functions");
  if (!existsSync(directory)) return [];
  return readdirSync(directory)
    .filter((file) => file.endsWith(".json"))
    .map((file) => file.slice(0, -".json".length))
    .sort();
}

/** "entity hour" of every object under the feed prefix of the bucket kept in DIR. */
async function feedEntityHours(data: string): Promise<string[]> {
  const s3 = await startLocalS3({ directory: path.join(cwd, data), buckets: [LOCAL_BUCKET] });
  try {
    const keys = await new S3Store(s3.client(), LOCAL_BUCKET).listKeys("citrix_analytics/");
    const hours = keys.map((key) => {
      const [, entity, year, month, day, hour] =
        /^citrix_analytics\/(\w+)\/year=(\d+)\/month=(\d+)\/day=(\d+)\/hour=(\d+)\//.exec(key) ?? [];
      return `${entity} ${year}-${month}-${day}T${hour}`;
    });
    return [...new Set(hours)].sort();
  } finally {
    await s3.close();
  }
}

/** ETag and LastModified of every feed object in the bucket kept in DIR: an object written again changes both. */
async function feedVersions(data: string): Promise<Map<string, string>> {
  const s3 = await startLocalS3({ directory: path.join(cwd, data), buckets: [LOCAL_BUCKET] });
  try {
    const client = s3.client();
    const versions = new Map<string, string>();
    for (const key of await new S3Store(client, LOCAL_BUCKET).listKeys("citrix_analytics/")) {
      const head = await client.send(new HeadObjectCommand({ Bucket: LOCAL_BUCKET, Key: key }));
      versions.set(key, `${head.ETag} ${head.LastModified?.toISOString()}`);
    }
    return versions;
  } finally {
    await s3.close();
  }
}

describe("the operator's workflow against --data DIR", () => {
  it("run --from --to backfills those hours; status in a later invocation lists the execution", async () => {
    const backfilled = await cli([
      "run",
      "--data",
      "d",
      "--from",
      "2026-11-24T05:00:00Z",
      "--to",
      "2026-11-24T06:00:00Z",
    ]);
    expect(backfilled.stderr).toBe("");
    expect(backfilled.code).toBe(0);
    expect(backfilled.stdout).toContain("Backfill of 2 hour(s), 2026-11-24T05:00:00Z … 2026-11-24T06:00:00Z");
    const name = /^Execution (backfill-20261124T05-20261124T06-[0-9a-f]{6})$/m.exec(backfilled.stdout)?.[1];
    expect(name).toBeDefined();
    expect(backfilled.stdout).toContain("Planned backfill run: 2 hour(s) × 2 entities");
    expect(await feedEntityHours("d")).toEqual([
      "sessions 2026-11-24T05",
      "sessions 2026-11-24T06",
      "users 2026-11-24T05",
      "users 2026-11-24T06",
    ]);

    const status = statusOf(await cli(["status", "--data", "d", "--json"]));
    expect(status.executions).toEqual([
      expect.objectContaining({ name, status: "SUCCEEDED", redriveCount: 0, redrivable: false }),
    ]);
  });

  it("an entity added after three hours were published: run --from --to fills its hours and rewrites nothing", async () => {
    const first = await cli(["run", "--data", "d"], {
      ENTITIES: "sessions",
      FIRST_HOUR_UTC: "2026-11-24T08:00:00Z",
    });
    expect(first).toMatchObject({ code: 0, stderr: "" });
    const sessions = ["08", "09", "10"].map((hour) => `sessions 2026-11-24T${hour}`);
    expect(await feedEntityHours("d")).toEqual(sessions);
    const before = await feedVersions("d");

    const filled = await cli([
      "run",
      "--data",
      "d",
      "--from",
      "2026-11-24T08:00:00Z",
      "--to",
      "2026-11-24T10:00:00Z",
    ]);
    expect(filled.stderr).toBe("");
    expect(filled.code).toBe(0);
    expect(filled.stdout).toContain(
      "Planned backfill run: 3 hour(s) × 2 entities (2026-11-24T08:00:00Z … 2026-11-24T10:00:00Z), 3 entity-hour(s) of them published already",
    );
    // Only the new entity's hours are collected: the published ones would cost requests and write nothing.
    expect(
      filled.stdout
        .split("\n")
        .filter((line) => / collected /.test(line))
        .map((line) => line.split(/ +/)[0]),
    ).toEqual(["users", "users", "users"]);
    expect(await feedEntityHours("d")).toEqual([
      ...sessions,
      ...["08", "09", "10"].map((hour) => `users 2026-11-24T${hour}`),
    ]);
    const after = await feedVersions("d");
    for (const [key, version] of before) expect(after.get(key), key).toBe(version);
  });

  it.each([
    [
      ["--from", "2026-11-24T05", "--to", "2026-11-24T06:00:00Z"],
      '--from (2026-11-24T05) is not a whole UTC hour like "2026-11-20T05:00:00Z"',
    ],
    [
      ["--from", "2026-11-24T05:00:00Z", "--to", "06:00"],
      '--to (06:00) is not a whole UTC hour like "2026-11-20T05:00:00Z"',
    ],
    [
      ["--from", "2026-11-24T07:00:00Z", "--to", "2026-11-24T05:00:00Z"],
      "--from (2026-11-24T07:00:00Z) must be a UTC hour not after --to (2026-11-24T05:00:00Z)",
    ],
    [["--from", "2026-11-24T05:00:00Z"], "a backfill run takes both --from and --to"],
  ])("run %j is refused in one line, before any execution starts", async (range, message) => {
    const refused = await cli(["run", "--data", "d", ...range]);
    expect(refused).toEqual({ code: 2, stdout: "", stderr: `citrix-collector: ${message}\n` });
    expect(keptExecutions("d")).toEqual([]);
  });

  it("a run failed by a fault is shown by status and redriven to SUCCEEDED, each in a process of its own", async () => {
    const failed = await spawnCli(["run", "--data", "d", "--hours", "1", "--fault", "403:users"]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain("FAILED: CitrixAuthError: the API refused access (HTTP 403");
    const name = /^Execution (local-\d{8}T\d{6}-[0-9a-f]{8})$/m.exec(failed.stdout)?.[1];
    expect(failed.stdout).toContain(`Once the cause is fixed: citrix-collector redrive ${name} --data d`);

    const text = await spawnCli(["status", "--data", "d"]);
    expect(text.stdout).toContain(
      "1 execution(s) can be redriven: fix the cause, then `citrix-collector redrive <name> --data d` or `citrix-collector redrive --all-failed --data d`.",
    );
    const broken = statusOf(await spawnCli(["status", "--data", "d", "--json"]));
    expect(broken.watermark).toBeNull();
    expect(broken.executions).toEqual([
      expect.objectContaining({ name, status: "FAILED", redrivable: true, error: "CitrixAuthError" }),
    ]);

    // The fault lasted as long as the process that ran it: the redrive finds the API well again.
    const redriven = await spawnCli(["redrive", name as string, "--data", "d", "--wait"]);
    expect(redriven.stderr).toBe("");
    expect(redriven.code).toBe(0);
    expect(redriven.stdout).toContain(`Redriven ${name}`);
    expect(redriven.stdout).toContain(`${name}: SUCCEEDED`);
    expect(redriven.stdout).toMatch(/T\d\d:00:00Z published: sessions 2,500, users 300\n/);

    const healed = statusOf(await spawnCli(["status", "--data", "d", "--json"]));
    expect(healed.watermark).not.toBeNull();
    expect(healed.executions).toEqual([
      expect.objectContaining({ name, status: "SUCCEEDED", redriveCount: 1, redrivable: false }),
    ]);
  }, 120_000);

  it("runs started at the same instant in two processes get different names; a used name is refused", async () => {
    // Only the names count here: two collecting runs on one directory share no S3 locks (see docs/local.md).
    const sameInstant = ["run", "--data", "d", "--hours", "1", "--now", "2026-11-24T11:20:00Z"];
    const [first, second] = await Promise.all([spawnCli(sameInstant), spawnCli(sameInstant)]);
    const names = [first, second].map(
      (result) => /^Execution (local-20261124T112000-[0-9a-f]{8})$/m.exec(result.stdout)?.[1],
    );
    expect(names[0]).toBeDefined();
    expect(names[1]).toBeDefined();
    expect(names[0]).not.toBe(names[1]);
    expect(keptExecutions("d")).toEqual([...names].sort());

    const reused = await cli(["run", "--data", "d", "--name", names[0] as string]);
    expect(reused.code).toBe(1);
    expect(reused.stderr).toBe(
      `citrix-collector: ExecutionAlreadyExists: Execution Already Exists: 'arn:aws:states:us-east-1:000000000000:execution:citrix-analytics-collector-local:${names[0]}'\n`,
    );
    expect(keptExecutions("d")).toEqual([...names].sort());
  }, 120_000);
});

describe("the local Step Functions API over a directory of executions (two APIs: two processes)", () => {
  let apis: LocalStepFunctions[];
  /** Executions the engine was asked to run, finished when the test says so. */
  let finish: () => void;
  beforeEach(async () => {
    let finished: () => void = () => {};
    const stopped = new Promise<void>((resolve) => {
      finished = resolve;
    });
    finish = finished;
    const directory = path.join(cwd, "step-functions");
    apis = await Promise.all(
      [1, 2].map(() =>
        startLocalStepFunctions({
          store: directoryExecutionStore(directory),
          execute: async () => {
            await stopped;
            return succeeded;
          },
        }),
      ),
    );
  });
  afterEach(async () => {
    finish();
    await Promise.all(apis.map((api) => api.close()));
  });

  const start = (sfn: SFNClient, name: string, input: string) =>
    sfn.send(new StartExecutionCommand({ stateMachineArn: apis[0]?.stateMachineArn, name, input }));

  it("refuses a name the other has used, as AWS does; repeats a running start with the same input", async () => {
    const [one, other] = apis.map((api) => api.client()) as [SFNClient, SFNClient];
    const started = await start(one, "nightly-1", "{}");
    // AWS: the same name and input while it runs is the same execution, started once.
    expect(await start(other, "nightly-1", "{}")).toMatchObject({
      executionArn: started.executionArn,
      startDate: started.startDate,
    });
    const differentInput = start(other, "nightly-1", '{"backfill":{}}');
    await expect(differentInput).rejects.toBeInstanceOf(ExecutionAlreadyExists);
    await expect(differentInput).rejects.toThrow(`Execution Already Exists: '${started.executionArn}'`);

    finish();
    await apis[0]?.settled();
    expect(
      await other.send(new DescribeExecutionCommand({ executionArn: started.executionArn })),
    ).toMatchObject({ status: "SUCCEEDED", redriveStatus: "NOT_REDRIVABLE" });
    await expect(start(other, "nightly-1", "{}")).rejects.toBeInstanceOf(ExecutionAlreadyExists);

    // The answer itself, as AWS's JSON protocol gives it.
    const answer = await fetch(apis[1]?.endpoint as string, {
      method: "POST",
      headers: {
        "x-amz-target": "AWSStepFunctions.StartExecution",
        "content-type": "application/x-amz-json-1.0",
        authorization: "AWS4-HMAC-SHA256 Credential=LOCAL/20261124/us-east-1/states/aws4_request",
      },
      body: JSON.stringify({ stateMachineArn: apis[1]?.stateMachineArn, name: "nightly-1", input: "{}" }),
    });
    expect(answer.status).toBe(400);
    expect(await answer.json()).toEqual({
      __type: "ExecutionAlreadyExists",
      message: `Execution Already Exists: '${started.executionArn}'`,
    });
  });

  it("an execution whose process is gone reads as ABORTED in every process", async () => {
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    const store = directoryExecutionStore(path.join(cwd, "step-functions"));
    const [one] = apis.map((api) => api.client()) as [SFNClient];
    const started = await start(one, "killed-1", "{}");
    const record = store.get("killed-1");
    expect(record?.status).toBe("RUNNING");
    store.save({ ...(record as NonNullable<typeof record>), pid: gone });
    expect(
      await one.send(new DescribeExecutionCommand({ executionArn: started.executionArn })),
    ).toMatchObject({
      status: "ABORTED",
      cause: `The local process that ran this execution (pid ${gone}) ended before the execution stopped`,
    });
  });
});

/** What the engine hands back for an execution that succeeded at once. */
const succeeded: LocalCollectionResult = {
  status: "SUCCEEDED",
  plan: undefined,
  collected: undefined,
  commit: undefined,
  output: {},
  error: undefined,
  redrive: undefined,
  history: [],
  iterationEvents: {},
  invocations: {},
  retries: 0,
};
