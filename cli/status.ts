import { S3Store } from "../functions/lib/aws/s3-store";
import { loadPlanningRules, loadWatermarkLocation } from "../functions/lib/config/config";
import { formatHour } from "../functions/lib/config/hours";
import { firstHourKey, publishedMarkerOfKey, publishedPrefix } from "../functions/lib/feed/keys";
import { lagHours, newestEligibleHour } from "../functions/lib/feed/planner";
import { parseFirstHour, readWatermark } from "../functions/lib/feed/watermark";
import { describeFailure, formatFailedState } from "../local/failure";
import { BACKFILL_NAME_PREFIX } from "./backfill";
import { type CliContext, formatDate, stateMachineFrom } from "./context";
import { type ExecutionSummary, recentExecutions } from "./executions";

export interface StatusOptions {
  stateMachineArn?: string;
  json: boolean;
  limit: number;
}

/**
 * `status`: the watermark, how far it trails the newest eligible hour, and the recent executions with
 * every failure still in the redrive window listed first.
 */
export async function status(ctx: CliContext, options: StatusOptions): Promise<number> {
  const machine = stateMachineFrom(options.stateMachineArn, ctx.env);
  const location = loadWatermarkLocation(ctx.env);
  const rules = loadPlanningRules(ctx.env);
  const now = ctx.now();
  const store = new S3Store(ctx.s3(machine.region), location.bucket);
  const [watermark, executions] = await Promise.all([
    readWatermark(store, location.stateKey, location.seedStateKey),
    recentExecutions(ctx.sfn(machine.region), machine, options.limit, now),
  ]);
  const newest = formatHour(newestEligibleHour(now, rules.lookbackMinutes));
  const lag = watermark.hourUtc === null ? null : lagHours(now, rules.lookbackMinutes, watermark.hourUtc);

  if (options.json) {
    ctx.stdout.write(
      `${JSON.stringify(
        {
          stateMachineArn: machine.arn,
          bucket: location.bucket,
          stateKey: location.stateKey,
          watermark: watermark.hourUtc,
          newestEligibleHour: newest,
          lagHours: lag,
          executions: executions.map((execution) => ({
            ...execution,
            startDate: execution.startDate?.toISOString() ?? null,
            stopDate: execution.stopDate?.toISOString() ?? null,
          })),
        },
        null,
        2,
      )}\n`,
    );
    return 0;
  }

  const out = (line = "") => ctx.stdout.write(`${line}\n`);
  out(`State machine    ${machine.arn}`);
  out(`Watermark        ${watermark.hourUtc ?? "none yet"}   s3://${location.bucket}/${location.stateKey}`);
  if (watermark.hourUtc === null) {
    for (const line of await beforeTheWatermark(store, location.controlPrefix))
      out(`${" ".repeat(17)}${line}`);
  }
  out(`Newest eligible  ${newest}   (LOOKBACK_MINUTES ${rules.lookbackMinutes})`);
  out(
    `Lag              ${lag === null ? "– (no watermark to measure from)" : `${lag} hour${lag === 1 ? "" : "s"}`}`,
  );
  out();
  // The commands it suggests act where this one did.
  const local = ctx.localData === undefined ? "" : ` --data ${ctx.localData}`;
  if (executions.length === 0) {
    out("No executions yet.");
    return 0;
  }
  out("Executions (failed first, then newest):");
  out(`${"STATUS".padEnd(10)} ${"STARTED (UTC)".padEnd(19)}  ${"STOPPED (UTC)".padEnd(19)}  NAME`);
  for (const execution of executions) out(executionLine(execution));
  const failed = executions.filter((execution) => execution.redrivable);
  if (failed.length > 0) {
    out();
    out(
      `${failed.length} execution(s) can be redriven: fix the cause, then \`citrix-collector redrive <name>${local}\` or \`citrix-collector redrive --all-failed${local}\`.`,
    );
  }
  // Every execution but a backfill stores a watermark when it succeeds: none means this shell looks elsewhere.
  const succeeded = executions.filter(
    (execution) => execution.status === "SUCCEEDED" && !execution.name.startsWith(BACKFILL_NAME_PREFIX),
  );
  if (watermark.hourUtc === null && succeeded.length > 0) {
    out();
    out(
      `${succeeded.length} execution(s) succeeded, yet s3://${location.bucket}/${location.stateKey} holds no watermark: ` +
        "S3_BUCKET, S3_PREFIX, CONTROL_PREFIX or STATE_KEY in this shell probably differ from the deployed functions' " +
        "(Lambda console → the plan function → Configuration → Environment variables).",
    );
  }
  return 0;
}

/**
 * What the bucket holds while there is no watermark: hours that backfills published (they never move it),
 * and the hour the first scheduled run starts at once one has planned.
 */
async function beforeTheWatermark(store: S3Store, controlPrefix: string): Promise<string[]> {
  const [markers, firstHour] = await Promise.all([
    store.listKeys(publishedPrefix(controlPrefix)),
    store.getText(firstHourKey(controlPrefix)),
  ]);
  const hours = [
    ...new Set(markers.flatMap((key) => publishedMarkerOfKey(controlPrefix, key)?.hourUtc ?? [])),
  ].sort();
  const lines = [
    hours.length === 0
      ? "no hour published yet"
      : `no scheduled run has moved it; ${hours.length} hour(s) published by backfills (${
          hours.length === 1 ? hours[0] : `${hours[0]} … ${hours.at(-1)}`
        }), which never move it`,
  ];
  if (firstHour !== undefined) {
    lines.push(
      `the first scheduled run starts at ${parseFirstHour(firstHour.body, store.bucket, firstHourKey(controlPrefix))}`,
    );
  }
  return lines;
}

function executionLine(execution: ExecutionSummary): string {
  const redriven = execution.redriveCount > 0 ? ` (redriven ${execution.redriveCount}×)` : "";
  const line = `${execution.status.padEnd(10)} ${formatDate(execution.startDate)}  ${formatDate(execution.stopDate)}  ${execution.name}${redriven}`;
  if (!execution.redrivable) return line;
  const failure = describeFailure(execution.error, execution.cause).replace(/\s+/g, " ");
  const reason = failure.length > 240 ? `${failure.slice(0, 240)}…` : failure;
  const state = execution.failedState;
  const where = state ? `\n${" ".repeat(11)}in ${formatFailedState(state)}` : "";
  return `${line}\n${" ".repeat(11)}${reason}${where}`;
}
