import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { ConfigurationError } from "../functions/lib/config/errors";
import packageJson from "../package.json";
import {
  type CliContext,
  DEFAULT_STAGE,
  FIRST_RUN_HOURS,
  missingCredentials,
  noCredentialsProblem,
  type Output,
  UsageError,
} from "./context";
import type { RunClock, SimulatedFault } from "./run";

/** Exit codes: 0 done, 1 the operation or AWS failed, 2 the command line or the settings are wrong. */
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

const NAME = "citrix-collector";

/**
 * The operator CLI: `status`, `backfill`, `redrive` against the deployed state machine and its bucket,
 * `check-config` for the settings in this shell, `run` for a local collection and `feed` to look at its bucket.
 * Every error is one line on stderr; the exit code says whose it is.
 */
export async function main(argv: readonly string[], context: Partial<CliContext> = {}): Promise<number> {
  const output = { stdout: context.stdout ?? process.stdout, stderr: context.stderr ?? process.stderr };
  // The AWS SDK (in the process's context and every command) takes longer to load than `--help` may take to
  // print, so the context and each command's module are loaded when a command runs.
  const load = async (): Promise<CliContext> => {
    const { processContext } = await import("./process-context");
    return { ...processContext(), ...context };
  };
  const fail = (message: string) => output.stderr.write(`${NAME}: ${message.replace(/\s*\n\s*/g, " ")}\n`);
  let exitCode = 0;
  const program = buildProgram(output, load, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv], { from: "user" });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander printed its own (one-line) message, or the help when asked for it.
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (error instanceof UsageError || error instanceof ConfigurationError) {
      fail(error.message);
      return EXIT_USAGE;
    }
    const credentials = missingCredentials(error);
    if (credentials) {
      fail(noCredentialsProblem(credentials));
      return EXIT_USAGE;
    }
    fail(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
    return EXIT_FAILED;
  }
}

function buildProgram(
  output: { stdout: Output; stderr: Output },
  load: () => Promise<CliContext>,
  exit: (code: number) => void,
): Command {
  const program = new Command(NAME)
    .description("Operate the Citrix Analytics → S3 collector (AWS Step Functions)")
    .version(packageJson.version, "-V, --version", "print the collector's version")
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => output.stdout.write(text),
      writeErr: (text) => output.stderr.write(text),
      outputError: (text, write) =>
        write(
          `${NAME}: ${text
            .replace(/^error: /, "")
            .replace(/\s*\n\s*/g, " ")
            .trim()}\n`,
        ),
    });
  const localData =
    "act on the local state machine and bucket that `run --data DIR` keeps in DIR, instead of AWS";
  /** Runs an AWS command against AWS, or with --data against the local stand that `run --data` keeps. */
  const operate = async (
    options: { data?: string; stateMachineArn?: string },
    command: (on: CliContext) => Promise<number>,
  ): Promise<number> => {
    const ctx = await load();
    if (options.data === undefined) return command(ctx);
    if (options.stateMachineArn !== undefined) {
      throw new UsageError("--data acts on the local state machine: leave out --state-machine-arn");
    }
    // Loaded on demand: the local stand-ins are heavy, and the AWS commands never need them.
    const { operateLocally } = await import("./local-stand");
    return operateLocally(ctx, options.data, command);
  };
  const stateMachineArn = () =>
    new Option("--state-machine-arn <arn>", "the collector's state machine (default: $STATE_MACHINE_ARN)");

  program
    .command("status")
    .summary("watermark, lag and recent executions, failed first")
    .description(
      "watermark, lag behind the newest eligible hour, and recent executions (failed first); reads S3_BUCKET, S3_PREFIX, CONTROL_PREFIX, STATE_KEY, SEED_STATE_KEY, LOOKBACK_MINUTES like the Lambdas",
    )
    .addOption(stateMachineArn())
    .option("--json", "print JSON for scripts")
    .option("--limit <n>", "how many recent executions to list", positiveInteger, 10)
    .option("--data <dir>", localData)
    .action(async (options: { stateMachineArn?: string; json?: true; limit: number; data?: string }) => {
      const flags = { ...options, json: options.json === true };
      const { status } = await import("./status");
      exit(await operate(options, (on) => status(on, flags)));
    });

  program
    .command("backfill")
    .summary("start an execution for an hour range")
    .description(
      "start an execution that collects the hours from..to (inclusive, settled, at most MAX_HOURS_PER_RUN); published hours are compared, not republished",
    )
    .addOption(stateMachineArn())
    .requiredOption("--from <hour>", 'first UTC hour, like "2026-11-20T00:00:00Z"')
    .requiredOption("--to <hour>", 'last UTC hour, like "2026-11-20T05:00:00Z"')
    .option("--wait", "wait for the execution to finish and report each hour")
    .option("--data <dir>", localData)
    .action(
      async (options: { stateMachineArn?: string; from: string; to: string; wait?: true; data?: string }) => {
        const flags = { ...options, wait: options.wait === true };
        const { backfill } = await import("./backfill");
        exit(await operate(options, (on) => backfill(on, flags)));
      },
    );

  program
    .command("redrive")
    .summary("redrive one failed execution, or all of them")
    .description(
      "redrive a failed execution from the state that failed, or every one that failed in the last 14 days",
    )
    .argument("[execution]", "execution name or ARN")
    .addOption(stateMachineArn())
    .option("--all-failed", "redrive every failed, timed-out or aborted execution of the redrive window")
    .option("--wait", "wait for each redriven execution to finish")
    .option("--data <dir>", localData)
    .action(
      async (
        execution: string | undefined,
        options: { stateMachineArn?: string; allFailed?: true; wait?: true; data?: string },
      ) => {
        const flags = { ...options, allFailed: options.allFailed === true, wait: options.wait === true };
        const { redrive } = await import("./redrive");
        exit(await operate(options, (on) => redrive(on, execution, flags)));
      },
    );

  program
    .command("feed")
    .summary("the local feed by entity and hour, its control objects, or one hour's records")
    .description(
      "read the local bucket that `run --data DIR` keeps: the feed by entity and hour and the control objects (watermark, first hour, manifests, markers, leases, page window, staging) in plain words; with --entity and --hour, that entity-hour's records, decompressed, one JSON object a line",
    )
    .requiredOption("--data <dir>", "the directory `run --data DIR` keeps the local bucket in")
    .option("--entity <name>", "with --hour: print this entity's records")
    .option("--hour <hour>", 'with --entity: the UTC hour, like "2026-11-20T05:00:00Z"')
    .action(async (options: { data: string; entity?: string; hour?: string }) => {
      const ctx = await load();
      const [{ readLocalBucket }, { feed }] = await Promise.all([import("./local-stand"), import("./feed")]);
      exit(
        await readLocalBucket(ctx, options.data, (s3, location) =>
          feed({ s3, location, stdout: ctx.stdout }, options),
        ),
      );
    });

  program
    .command("check-config")
    .summary("check the collector's settings in this shell, as serverless deploy does")
    .description(
      "check the settings serverless package and deploy would use (this shell's variables over .env.STAGE or .env here: S3_BUCKET, CITRIX_* or CITRIX_SECRET_ARN, TOP_N, TRACING, ...) by the deploy's own check: one line per problem and exit code 2, or ok",
    )
    .option("--stage <stage>", "the stage whose .env.STAGE file serverless would load", DEFAULT_STAGE)
    .action(async (options: { stage: string }) => {
      const ctx = await load();
      const { checkConfig } = await import("./check-config");
      const problems = checkConfig(ctx, options.stage);
      for (const problem of problems) ctx.stderr.write(`${NAME}: ${problem}\n`);
      exit(problems.length > 0 ? EXIT_USAGE : 0);
    });

  program
    .command("run")
    .summary("run one collection (or with --from/--to a backfill) locally")
    .description(
      "run one execution locally through the deployed definition (built-in Citrix simulator and local S3 by default): as the schedule starts it, or with --from/--to as backfill does",
    )
    .addOption(
      new Option("--citrix <source>", "simulator, or env for a real tenant from CITRIX_* / API_BASE")
        .choices(["simulator", "env"])
        .default("simulator"),
    )
    .addOption(
      new Option("--s3 <target>", "local server, or env for S3_BUCKET with the AWS SDK's settings")
        .choices(["local", "env"])
        .default("local"),
    )
    .option(
      "--hours <n>",
      "on a first run, collect the newest N eligible hours",
      positiveInteger,
      FIRST_RUN_HOURS,
    )
    .option(
      "--data <dir>",
      "keep the local S3 bucket and the executions in this directory, for the next run, status, backfill and redrive",
    )
    .option("--from <hour>", 'with --to: backfill from this UTC hour, like "2026-11-20T00:00:00Z"')
    .option("--to <hour>", "with --from: backfill up to this UTC hour (inclusive)")
    .option("--name <name>", "the execution's name (default: local-<time>-<random>, unique)")
    .option(
      "--fault <status[:entity]>",
      'the built-in simulator answers data requests (of that entity) with this HTTP status during this run, e.g. "403:users"',
      simulatedFault,
    )
    .option(
      "--now <time>",
      'plan as if the clock read this UTC time ("2026-11-24T12:20:00Z"), or "+Nh" for N hours from now',
      runClock,
    )
    .option("--verbose", "log to stderr instead of the run's log file")
    .option("--history <file>", "write the execution's history there, as GetExecutionHistory returns it")
    .action(
      async (options: {
        citrix: "simulator" | "env";
        s3: "local" | "env";
        hours: number;
        data?: string;
        now?: RunClock;
        verbose?: true;
        history?: string;
        from?: string;
        to?: string;
        name?: string;
        fault?: SimulatedFault;
      }) => {
        const { runLocally } = await import("./run");
        exit(await runLocally({ ...options, verbose: options.verbose === true }, await load()));
      },
    );

  return program;
}

/** `run --now`: a UTC time to the minute or second, or "+Nh", N hours ahead of the real clock. */
function runClock(value: string): RunClock {
  const ahead = /^\+(\d{1,4})h$/.exec(value)?.[1];
  if (ahead !== undefined) return { hoursAhead: Number(ahead) };
  const at = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z$/.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(at)) {
    throw new InvalidArgumentError(
      'must be a UTC time like "2026-11-24T12:20:00Z", or "+Nh" for N hours from now',
    );
  }
  return { at };
}

/** `run --fault`: "403" or "403:users", an HTTP error status and an entity set's name. */
function simulatedFault(value: string): SimulatedFault {
  const match = /^([45]\d\d)(?::([A-Za-z][A-Za-z0-9_]*))?$/.exec(value);
  if (!match)
    throw new InvalidArgumentError(
      'must be an HTTP error status, optionally with an entity, like "403:users"',
    );
  return match[2] === undefined
    ? { status: Number(match[1]) }
    : { status: Number(match[1]), entity: match[2] };
}

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new InvalidArgumentError("must be a whole number ≥ 1");
  return parsed;
}
