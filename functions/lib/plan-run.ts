import type { CollectorConfig } from "./config";
import { backfillRequestSchema, type PlanInput, type PlanOutput, parseStateInput } from "./contracts";
import type { Logger } from "./log";
import { lagHours, planBackfillHours, planHours, planWorkItems } from "./planner";
import type { S3Store } from "./s3-store";
import { readWatermark } from "./watermark";

export interface PlanDeps {
  store: S3Store;
  config: Pick<
    CollectorConfig,
    | "stateKey"
    | "seedStateKey"
    | "entities"
    | "lookbackMinutes"
    | "maxHoursPerRun"
    | "firstHourUtc"
    | "mapMaxConcurrency"
  >;
  log: Logger;
  now: () => number;
}

/** Reads the watermark and lays out this execution's work: the hours due, times every entity. */
export async function planRun(deps: PlanDeps, input: PlanInput): Promise<PlanOutput> {
  const { config } = deps;
  const watermark = await readWatermark(deps.store, config.stateKey, config.seedStateKey);
  const nowMs = deps.now();
  const backfill = isBackfill(input.request)
    ? parseStateInput(backfillRequestSchema, input.request, "PlanHours (backfill request)").backfill
    : undefined;
  const hours = backfill
    ? planBackfillHours(backfill.from, backfill.to, nowMs, config.lookbackMinutes, config.maxHoursPerRun)
    : planHours({
        nowMs,
        lookbackMinutes: config.lookbackMinutes,
        maxHoursPerRun: config.maxHoursPerRun,
        watermarkHourUtc: watermark.hourUtc ?? undefined,
        firstHourUtc: config.firstHourUtc,
      });
  const output: PlanOutput = {
    runId: input.executionName,
    mode: backfill ? "backfill" : "scheduled",
    hours,
    items: planWorkItems(hours, config.entities),
    watermark,
    maxConcurrency: config.mapMaxConcurrency,
    lagHours: lagHours(nowMs, config.lookbackMinutes, watermark.hourUtc ?? undefined),
  };
  deps.log.info("planned collection", {
    mode: output.mode,
    watermark: watermark.hourUtc,
    firstHour: hours[0] ?? null,
    lastHour: hours[hours.length - 1] ?? null,
    items: output.items.length,
    lagHours: output.lagHours,
  });
  return output;
}

/** Scheduled runs pass {} (the console's default input has a "Comment"); only a "backfill" key asks for one. */
function isBackfill(request: unknown): boolean {
  return typeof request === "object" && request !== null && "backfill" in request;
}
