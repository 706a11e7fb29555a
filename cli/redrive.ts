import { ExecutionNotRedrivable, RedriveExecutionCommand, type SFNClient } from "@aws-sdk/client-sfn";
import {
  type CliContext,
  consoleUrl,
  executionFrom,
  formatDate,
  stateMachineFrom,
  UsageError,
} from "./context";
import { redrivableExecutions, waitForExecution } from "./executions";
import { reportStopped } from "./report";

export interface RedriveOptions {
  stateMachineArn?: string;
  allFailed: boolean;
  wait: boolean;
}

/**
 * `redrive <execution>` restarts one failed execution at the state that failed (RedriveExecution);
 * `redrive --all-failed` does so for every execution that failed, timed out or was aborted within the
 * redrive window, oldest first (its hours come first in the feed), reporting each.
 */
export async function redrive(
  ctx: CliContext,
  execution: string | undefined,
  options: RedriveOptions,
): Promise<number> {
  if ((execution === undefined) === !options.allFailed) {
    throw new UsageError("redrive takes either an execution (name or ARN) or --all-failed");
  }
  if (execution !== undefined) {
    const target = executionFrom(execution, options.stateMachineArn, ctx.env);
    return redriveOne(ctx, ctx.sfn(target.region), target.arn, options.wait);
  }
  const machine = stateMachineFrom(options.stateMachineArn, ctx.env);
  const sfn = ctx.sfn(machine.region);
  const failed = (await redrivableExecutions(sfn, machine, ctx.now())).reverse();
  if (failed.length === 0) {
    ctx.stdout.write("No failed, timed-out or aborted execution in the last 14 days: nothing to redrive.\n");
    return 0;
  }
  let exitCode = 0;
  for (const { executionArn } of failed) {
    try {
      exitCode = Math.max(exitCode, await redriveOne(ctx, sfn, executionArn, options.wait));
    } catch (error) {
      if (!(error instanceof ExecutionNotRedrivable)) throw error;
      ctx.stdout.write(`Not redriven ${nameOf(executionArn)}: ${error.message}\n`);
      exitCode = 1;
    }
  }
  return exitCode;
}

async function redriveOne(
  ctx: CliContext,
  sfn: SFNClient,
  executionArn: string,
  wait: boolean,
): Promise<number> {
  const redriven = await sfn.send(new RedriveExecutionCommand({ executionArn }));
  const name = nameOf(executionArn);
  ctx.stdout.write(
    `Redriven ${name} at ${formatDate(redriven.redriveDate)} UTC\n  ${consoleUrl(executionArn)}\n`,
  );
  if (!wait) return 0;
  return reportStopped(ctx, name, await waitForExecution(ctx, sfn, executionArn));
}

function nameOf(executionArn: string): string {
  return executionArn.split(":").at(-1) ?? executionArn;
}
