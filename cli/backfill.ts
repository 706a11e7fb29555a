import { randomBytes } from "node:crypto";
import { StartExecutionCommand } from "@aws-sdk/client-sfn";
import { loadPlanningRules, type PlanningRules } from "../functions/lib/config/config";
import { InvalidInputError } from "../functions/lib/config/errors";
import { parseHour } from "../functions/lib/config/hours";
import { planBackfillHours } from "../functions/lib/feed/planner";
import { type CliContext, consoleUrl, stateMachineFrom, UsageError } from "./context";
import { waitForExecution } from "./executions";
import { reportStopped } from "./report";

export interface BackfillOptions {
  stateMachineArn?: string;
  from: string;
  to: string;
  wait: boolean;
}

/**
 * `backfill --from --to`: checks the range as Plan will (whole UTC hours, settled, at most
 * MAX_HOURS_PER_RUN), then starts one execution with the `{"backfill": {…}}` input under a readable name.
 */
export async function backfill(ctx: CliContext, options: BackfillOptions): Promise<number> {
  const machine = stateMachineFrom(options.stateMachineArn, ctx.env);
  const hours = checkedBackfillHours(options.from, options.to, ctx.now(), loadPlanningRules(ctx.env));
  const from = hours[0] as string;
  const to = hours[hours.length - 1] as string;
  const name = backfillExecutionName(from, to);
  const sfn = ctx.sfn(machine.region);
  const started = await sfn.send(
    new StartExecutionCommand({
      stateMachineArn: machine.arn,
      name,
      input: JSON.stringify({ backfill: { from, to } }),
    }),
  );
  const executionArn = started.executionArn ?? `${machine.executionArnPrefix}${name}`;
  const out = (line = "") => ctx.stdout.write(`${line}\n`);
  out(`Started ${name}: ${hours.length} hour(s), ${from} … ${to}`);
  out(`  ${executionArn}`);
  out(`  ${consoleUrl(executionArn)}`);
  if (!options.wait) return 0;
  return reportStopped(ctx, name, await waitForExecution(ctx, sfn, executionArn));
}

/**
 * The hours of `--from`..`--to`, checked as Plan will check them (whole UTC hours, in order, settled, at most
 * MAX_HOURS_PER_RUN), or a UsageError saying which flag is wrong and how.
 */
export function checkedBackfillHours(
  from: string,
  to: string,
  nowMs: number,
  rules: PlanningRules,
): string[] {
  for (const [flag, hour] of Object.entries({ "--from": from, "--to": to })) {
    if (parseHour(hour) === undefined) {
      throw new UsageError(`${flag} (${hour}) is not a whole UTC hour like "2026-11-20T05:00:00Z"`);
    }
  }
  try {
    return planBackfillHours(from, to, nowMs, rules.lookbackMinutes, rules.maxHoursPerRun);
  } catch (error) {
    if (!(error instanceof InvalidInputError)) throw error;
    throw new UsageError(
      error.message.replaceAll("backfill.from", "--from").replaceAll("backfill.to", "--to"),
    );
  }
}

/** "backfill-20261120T00-20261120T05-3fa9c1": the hours, and random bits so that no two backfills share a name. */
export function backfillExecutionName(from: string, to: string): string {
  return `${BACKFILL_NAME_PREFIX}${compactHour(from)}-${compactHour(to)}-${randomBytes(3).toString("hex")}`;
}

/** How the executions `backfill` starts are named: they publish their hours but never move the watermark. */
export const BACKFILL_NAME_PREFIX = "backfill-";

/** "2026-11-20T05:00:00Z" → "20261120T05", for execution names. */
function compactHour(hourUtc: string): string {
  return hourUtc.slice(0, 13).replaceAll("-", "");
}
