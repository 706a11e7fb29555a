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
 * MAX_ENTITY_HOURS_PER_RUN), each in hour order. Runs that start together should end together: a run that ends
 * early leaves its share of the customer's limit to runs that can use it only on entity-hours of several pages.
 * So the entity-hours are dealt out heaviest entity first, one entity's hours in order, each to the run with the
 * fewest expected requests so far (`expectedRequests`, by entity; the fewest entity-hours on a tie): each
 * entity's hours are spread over every run, so the runs share its quiet and its busy hours alike. With every
 * entity-hour expected to cost the same, run lengths are at most one apart. Each iteration pays the Map's states
 * and its invocations once per run.
 */
export function planRuns(
  entityHours: readonly WorkItem[],
  iterations: number,
  expectedRequests: (entity: string) => number = () => 1,
): RunItem[] {
  const count = Math.min(
    entityHours.length,
    Math.max(iterations, Math.ceil(entityHours.length / MAX_ENTITY_HOURS_PER_RUN)),
  );
  const runs = Array.from({ length: count }, () => ({ requests: 0, positions: [] as number[] }));
  // One entity's hours after another's, so that each is spread over the runs even when all cost the same.
  const entities = [...new Set(entityHours.map(({ entity }) => entity))];
  const heaviestFirst = entityHours
    .map((item, position) => ({
      position,
      entity: entities.indexOf(item.entity),
      requests: expectedRequests(item.entity),
    }))
    // A stable sort: each entity's hours stay in order.
    .sort((a, b) => b.requests - a.requests || a.entity - b.entity);
  for (const { position, requests } of heaviestFirst) {
    let lightest: (typeof runs)[number] | undefined;
    for (const run of runs) {
      if (run.positions.length >= MAX_ENTITY_HOURS_PER_RUN) continue;
      if (
        lightest === undefined ||
        run.requests < lightest.requests ||
        (run.requests === lightest.requests && run.positions.length < lightest.positions.length)
      )
        lightest = run;
    }
    // count runs of at most MAX_ENTITY_HOURS_PER_RUN hold every entity-hour, so one always has room.
    (lightest as (typeof runs)[number]).requests += requests;
    (lightest as (typeof runs)[number]).positions.push(position);
  }
  // Runs in the order of their first entity-hour, so that the Map's items read chronologically in the console.
  return runs
    .map(({ positions }) => positions.sort((a, b) => a - b))
    .sort((a, b) => (a[0] as number) - (b[0] as number))
    .map((positions) => {
      const [first, ...rest] = positions.map((position) => entityHours[position] as WorkItem);
      return { ...(first as WorkItem), rest };
    });
}

/**
 * What an entity-hour of `entity` is expected to cost in requests, from the records per hour Commit last stored
 * beside the watermark (see advanceWatermark): its pages, and the empty one after a full last page. An entity
 * with none on record counts as one request, the least any entity-hour costs.
 */
export function expectedRequestsOf(
  recordsPerHour: Readonly<Record<string, number>> | undefined,
  pageSize: number,
): (entity: string) => number {
  return (entity) => Math.floor((recordsPerHour?.[entity] ?? 0) / pageSize) + 1;
}

/** Every entity-hour of the Map's items, hours in order (an hour's entities in the order of the runs). */
export function entityHoursOf(items: readonly RunItem[]): WorkItem[] {
  return items
    .flatMap(({ entity, hourUtc, rest }) => [{ entity, hourUtc }, ...rest])
    .sort((a, b) => Date.parse(a.hourUtc) - Date.parse(b.hourUtc));
}
