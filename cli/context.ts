import type { S3Client } from "@aws-sdk/client-s3";
import type { SFNClient } from "@aws-sdk/client-sfn";
import type { Env } from "../functions/lib/config/config";

/** A stream the CLI writes to (stdout, stderr); on a terminal (`isTTY`) progress lines are redrawn in place. */
export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Everything the CLI touches outside itself. The bin passes the process's; tests pass their own streams, clock
 * and clients pointed at the local stand-ins.
 */
export interface CliContext {
  env: Env;
  /** The working directory: `run` keeps its local data under it. */
  cwd: string;
  stdout: Output;
  stderr: Output;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  /** Step Functions in the state machine's own region (from its ARN). */
  sfn: (region: string) => SFNClient;
  /** S3, starting in the state machine's region (the Lambdas' region) and following the bucket's own. */
  s3: (region: string) => S3Client;
  /** Set when the command acts on the local state machine that `run --data DIR` keeps: DIR, as given. */
  localData?: string;
}

/** The stage serverless.yml deploys when `--stage` is not given (provider.stage). */
export const DEFAULT_STAGE = "prod";

/** How many of the newest eligible hours a local first run collects (`run --hours`). */
export const FIRST_RUN_HOURS = 3;

/** A mistake in how the CLI was called or configured: one line naming what to fix, exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export interface StateMachine {
  arn: string;
  region: string;
  /** The ARN prefix of its executions: `arn:…:execution:<machine>:`. */
  executionArnPrefix: string;
}

const STATE_MACHINE_ARN =
  /^arn:(aws[a-z-]*):states:([a-z]{2}(?:-[a-z]+)+-\d+):(\d{12}):stateMachine:([\w.-]{1,80})$/;

/** The state machine the AWS commands act on: --state-machine-arn, else STATE_MACHINE_ARN. */
export function stateMachineFrom(option: string | undefined, env: Env): StateMachine {
  const arn = option?.trim() || env.STATE_MACHINE_ARN?.trim();
  if (!arn) {
    throw new UsageError(
      "STATE_MACHINE_ARN is not set: export it (or pass --state-machine-arn) as the StateMachineArn output of `npx serverless info --verbose`",
    );
  }
  const match = STATE_MACHINE_ARN.exec(arn);
  if (!match) {
    throw new UsageError(
      `STATE_MACHINE_ARN must be a state machine ARN like arn:aws:states:eu-west-1:123456789012:stateMachine:citrix-analytics-collector-prod (got "${arn}")`,
    );
  }
  const [, partition, region, account, name] = match as unknown as [string, string, string, string, string];
  return {
    arn,
    region,
    executionArnPrefix: `arn:${partition}:states:${region}:${account}:execution:${name}:`,
  };
}

const EXECUTION_ARN =
  /^arn:aws[a-z-]*:states:([a-z]{2}(?:-[a-z]+)+-\d+):\d{12}:execution:[\w.-]{1,80}:([^:]*)$/;

// What Step Functions refuses in an execution name (StartExecution's reference): whitespace, brackets,
// wildcards, these special characters and control characters. Names are 1–80 characters; "." is allowed.
const EXECUTION_NAME_FORBIDDEN = /[\s<>{}[\]?*"#%\\^|~`$&,;:/\p{Cc}]/u;

/** Why Step Functions would not take `name` as an execution name; undefined when it would. */
export function executionNameProblem(name: string): string | undefined {
  if (name.length >= 1 && name.length <= 80 && !EXECUTION_NAME_FORBIDDEN.test(name)) return undefined;
  return `"${name}" is not a Step Functions execution name: those are 1–80 characters, without whitespace, control characters or any of < > { } [ ] ? * " # % \\ ^ | ~ \` $ & , ; : /`;
}

/**
 * The execution an operator named: an execution ARN as the console shows it (no state machine setting
 * needed), or a bare name under the state machine of --state-machine-arn / STATE_MACHINE_ARN.
 */
export function executionFrom(
  nameOrArn: string,
  option: string | undefined,
  env: Env,
): { arn: string; region: string } {
  if (nameOrArn.startsWith("arn:")) {
    const [, region, name] = EXECUTION_ARN.exec(nameOrArn) ?? [];
    if (region === undefined || name === undefined) {
      throw new UsageError(
        `"${nameOrArn}" is not an execution ARN like arn:aws:states:eu-west-1:123456789012:execution:MACHINE:NAME`,
      );
    }
    const problem = executionNameProblem(name);
    if (problem) throw new UsageError(`${problem} (in the ARN ${nameOrArn})`);
    return { arn: nameOrArn, region };
  }
  const problem = executionNameProblem(nameOrArn);
  if (problem) throw new UsageError(problem);
  const machine = stateMachineFrom(option, env);
  return { arn: `${machine.executionArnPrefix}${nameOrArn}`, region: machine.region };
}

/** The SDK's "no credentials" error, also when S3Store wrapped it into a storage error. */
export function missingCredentials(error: unknown): Error | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    if (current.name === "CredentialsProviderError") return current;
    current = current.cause;
  }
  return undefined;
}

/** What the operator is told when the SDK found no credentials (`error` is missingCredentials's). */
export function noCredentialsProblem(error: Error): string {
  return `no AWS credentials found (${error.message}): set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`;
}

/** Where an operator opens an execution's graph in the Step Functions console. */
export function consoleUrl(executionArn: string): string {
  const region = executionArn.split(":")[3] ?? "";
  return `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${executionArn}`;
}

/** 2500 → "2,500": every count the CLI and the local run print, written one way. */
export function formatCount(count: number): string {
  return count.toLocaleString("en-US");
}

/** "2026-11-24 09:17:03" in UTC, or "–" for no date. */
export function formatDate(date: Date | undefined): string {
  return date ? date.toISOString().slice(0, 19).replace("T", " ") : "–";
}
