import type { RunItem, WorkItem } from "../config/contracts";
import { InvalidInputError } from "../config/errors";
import { floorHour, formatHour, HOUR_MS, hourRange, parseHour } from "../config/hours";

export interface PlanWindow {
  /** When Plan runs; a redrive never re-runs a Plan that succeeded, so an execution plans once. */
  nowMs: number;
  lookbackMinutes: number;
  maxHoursPerRun: number;
  /** Last fully published hour, if any. */
  watermarkHourUtc: string | undefined;
  /** Where a first run starts when there is no watermark; defaults to the newest eligible hour. */
  firstHourUtc: string | undefined;
  /** Hours after the watermark already published for every entity: they do not count towards maxHoursPerRun. */
  published: ReadonlySet<string>;
}

/** The newest hour that is complete and settled: H ≤ floor_hour(now − LOOKBACK_MINUTES). */
export function newestEligibleHour(nowMs: number, lookbackMinutes: number): number {
  return floorHour(nowMs - lookbackMinutes * 60_000);
}

/**
 * The minute past every hour (UTC) at which the schedule starts an execution. Hour H is due from
 * H + LOOKBACK_MINUTES on, so a new hour falls due at minute LOOKBACK_MINUTES mod 60 of every hour; the
 * schedule fires one minute later, which leaves room for clocks that disagree by less than a minute and costs
 * a minute of freshness. Every start then finds the hour that fell due a minute before it.
 */
export function scheduleMinute(lookbackMinutes: number): number {
  return (lookbackMinutes + 1) % 60;
}

/**
 * The hours due for this execution, oldest first: from the hour after the watermark (or the first-run start)
 * up to the newest eligible hour, until maxHoursPerRun of them are not published yet. Empty when nothing is
 * due yet. Published hours do not count: hours other executions published past a gap (an hour that failed)
 * would otherwise fill the window, and the catch-up would take a run more per such hour.
 */
export function planHours(window: PlanWindow): string[] {
  const bound = newestEligibleHour(window.nowMs, window.lookbackMinutes);
  const watermark = window.watermarkHourUtc === undefined ? undefined : parseHour(window.watermarkHourUtc);
  const firstRun = window.firstHourUtc === undefined ? bound : (parseHour(window.firstHourUtc) ?? bound);
  const hours: string[] = [];
  let unpublished = 0;
  for (
    let ms = watermark === undefined ? firstRun : watermark + HOUR_MS;
    ms <= bound && unpublished < window.maxHoursPerRun;
    ms += HOUR_MS
  ) {
    const hourUtc = formatHour(ms);
    hours.push(hourUtc);
    if (!window.published.has(hourUtc)) unpublished++;
  }
  return hours;
}

/**
 * Every (hour, entity) not yet published, hours in order so the console reads chronologically. A published
 * entity-hour is never written again, so collecting it would only spend the API's requests.
 */
export function planWorkItems(
  hours: readonly string[],
  entities: readonly string[],
  published: ReadonlyMap<string, ReadonlySet<string>>,
): WorkItem[] {
  return hours.flatMap((hourUtc) =>
    entities.filter((entity) => !published.get(hourUtc)?.has(entity)).map((entity) => ({ entity, hourUtc })),
  );
}

/** How many hours the watermark lags behind the newest eligible hour (for logs and the run summary). */
export function lagHours(
  nowMs: number,
  lookbackMinutes: number,
  watermarkHourUtc: string | undefined,
): number {
  const bound = newestEligibleHour(nowMs, lookbackMinutes);
  const watermark = watermarkHourUtc === undefined ? undefined : parseHour(watermarkHourUtc);
  if (watermark === undefined) return 0;
  return Math.max(0, Math.round((bound - watermark) / HOUR_MS));
}

/**
 * The hours of an operator's backfill, from..to inclusive. Only settled hours can be collected, and one
 * execution takes at most maxHoursPerRun of them (longer ranges are split into several executions).
 */
export function planBackfillHours(
  fromUtc: string,
  toUtc: string,
  nowMs: number,
  lookbackMinutes: number,
  maxHoursPerRun: number,
): string[] {
  const from = parseHour(fromUtc);
  const to = parseHour(toUtc);
  const bound = newestEligibleHour(nowMs, lookbackMinutes);
  if (from === undefined || to === undefined || from > to) {
    throw new InvalidInputError(
      `backfill.from (${fromUtc}) must be a UTC hour not after backfill.to (${toUtc})`,
    );
  }
  if (to > bound) {
    throw new InvalidInputError(
      `backfill.to (${toUtc}) is not settled yet: the newest hour that can be collected now is ${formatHour(bound)}`,
    );
  }
  const hours = hourRange(from, to);
  if (hours.length > maxHoursPerRun) {
    throw new InvalidInputError(
      `a backfill covers at most MAX_HOURS_PER_RUN (${maxHoursPerRun}) hours; ${fromUtc}..${toUtc} has ${hours.length}: split it into several executions`,
    );
  }
  return hours;
}

/**
 * The longest run of entity-hours one Map item holds: its collect invocations carry the rest of the run in their
 * input and what they finished in their output, so this keeps those payloads at a few kilobytes, far below the
 * 256 KiB Step Functions allows, at any MAX_HOURS_PER_RUN.
 */
export const MAX_ENTITY_HOURS_PER_RUN = 100;

/**
 * The Map's items: the entity-hours in `iterations` runs (more when that would make a run longer than
 * MAX_ENTITY_HOURS_PER_RUN), each a contiguous stretch of them in order, their lengths at most one apart. A
 * stretch of hours holds every entity, so runs that start together finish at about the same time. Each
 * iteration pays the Map's states and its invocations once per run instead of once per entity-hour.
 */
export function planRuns(entityHours: readonly WorkItem[], iterations: number): RunItem[] {
  const count = Math.min(
    entityHours.length,
    Math.max(iterations, Math.ceil(entityHours.length / MAX_ENTITY_HOURS_PER_RUN)),
  );
  const runs: RunItem[] = [];
  let start = 0;
  for (let run = 0; run < count; run++) {
    const length = Math.floor(entityHours.length / count) + (run < entityHours.length % count ? 1 : 0);
    const [first, ...rest] = entityHours.slice(start, start + length) as [WorkItem, ...WorkItem[]];
    runs.push({ ...first, rest });
    start += length;
  }
  return runs;
}

/** Every entity-hour of the Map's items, in order. */
export function entityHoursOf(items: readonly RunItem[]): WorkItem[] {
  return items.flatMap(({ entity, hourUtc, rest }) => [{ entity, hourUtc }, ...rest]);
}
