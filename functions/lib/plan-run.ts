import type { CollectorConfig } from "./config";
import type { PlanInput, PlanOutput } from "./contracts";
import type { Logger } from "./log";
import { lagHours, planHours, planWorkItems } from "./planner";
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
  const hours = planHours({
    nowMs,
    lookbackMinutes: config.lookbackMinutes,
    maxHoursPerRun: config.maxHoursPerRun,
    watermarkHourUtc: watermark.hourUtc ?? undefined,
    firstHourUtc: config.firstHourUtc,
  });
  const output: PlanOutput = {
    runId: input.executionName,
    hours,
    items: planWorkItems(hours, config.entities),
    watermark,
    maxConcurrency: config.mapMaxConcurrency,
    lagHours: lagHours(nowMs, config.lookbackMinutes, watermark.hourUtc ?? undefined),
  };
  deps.log.info("planned collection", {
    watermark: watermark.hourUtc,
    firstHour: hours[0] ?? null,
    lastHour: hours[hours.length - 1] ?? null,
    items: output.items.length,
    lagHours: output.lagHours,
  });
  return output;
}
