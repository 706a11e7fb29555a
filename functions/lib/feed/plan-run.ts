import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import { planIterations } from "../citrix/page-window";
import type { CollectorConfig } from "../config/config";
import {
  backfillRequestSchema,
  type PageWindowHint,
  type PlanInput,
  type PlanOutput,
  parseStateInput,
} from "../config/contracts";
import { formatHour, HOUR_MS, parseHour } from "../config/hours";
import { leaseKey, leasePrefix } from "./keys";
import { parseJson } from "./manifest";
import { readPageWindowHint } from "./page-window-hint";
import {
  expectedRequestsOf,
  lagHours,
  newestEligibleHour,
  planBackfillHours,
  planHours,
  planRuns,
  planWorkItems,
} from "./planner";
import {
  advanceWatermark,
  firstRunHour,
  hoursPublishedForEvery,
  publishedEntitiesAfter,
  publishedEntitiesOfHours,
  readWatermark,
  recoverWatermark,
  type Watermark,
} from "./watermark";

/** Whether another execution of this state machine can still finish (Step Functions' DescribeExecution). */
export type ExecutionStatus = "running" | "ended" | "unknown";
export type ExecutionStatusLookup = (
  executionName: string,
  ownExecutionArn: string | undefined,
) => Promise<ExecutionStatus>;

export interface PlanDeps {
  store: S3Store;
  config: Pick<
    CollectorConfig,
    | "stateKey"
    | "seedStateKey"
    | "controlPrefix"
    | "entities"
    | "lookbackMinutes"
    | "maxHoursPerRun"
    | "firstHourUtc"
    | "mapMaxConcurrency"
    | "pageSize"
  >;
  log: Logger;
  now: () => number;
  executionStatus: ExecutionStatusLookup;
}

/** The hours a scheduled execution is collecting, for executions that start while it runs. */
export interface CollectionLease {
  runId: string;
  hours: string[];
  plannedAt: string;
}

/**
 * Reads the watermark and lays out this execution's work: the hours due, times every entity. A scheduled run
 * first moves the watermark over hours other executions published since it last moved, then leaves out
 * hours already published and hours a running execution is collecting (its lease), so an execution that
 * overruns the hour is not doubled by the next one; hours of an execution that ended unfinished are
 * collected again, and its lease removed.
 */
export async function planRun(deps: PlanDeps, input: PlanInput): Promise<PlanOutput> {
  const { config, store } = deps;
  const nowMs = deps.now();
  const backfill = isBackfill(input.request)
    ? parseStateInput(backfillRequestSchema, input.request, "PlanHours (backfill request)").backfill
    : undefined;
  // Read beside the watermark and the listings: only the Map's concurrency depends on it.
  const hintRead = readHint(deps, nowMs);
  const read = await readWatermark(store, config.stateKey, config.seedStateKey);
  const { watermark, hours, deferred, published } = backfill
    ? await planBackfill(deps, backfill, read, nowMs)
    : await planScheduled(deps, input, read, nowMs);
  const entityHours = planWorkItems(hours, config.entities, published);
  const iterations = mapConcurrency(deps, await hintRead, entityHours.length);
  const expectedRequests = expectedRequestsOf(read.recordsPerHour, config.pageSize);
  const output: PlanOutput = {
    runId: input.executionName,
    mode: backfill ? "backfill" : "scheduled",
    hours,
    entities: config.entities,
    items: planRuns(entityHours, iterations, expectedRequests),
    watermark: { hourUtc: watermark.hourUtc, etag: watermark.etag },
    deferred,
    maxConcurrency: iterations,
    lagHours: lagHours(nowMs, config.lookbackMinutes, watermark.hourUtc ?? undefined),
  };
  deps.log.info("planned collection", {
    mode: output.mode,
    watermark: watermark.hourUtc,
    firstHour: hours[0] ?? null,
    lastHour: hours[hours.length - 1] ?? null,
    entityHours: entityHours.length,
    runs: output.items.length,
    alreadyPublished: hours.length * config.entities.length - entityHours.length,
    deferredHours: Object.values(deferred).flat().length,
    lagHours: output.lagHours,
  });
  return output;
}

/** What a run plans: the watermark (a scheduled run's caught up), the hours it collects, those it leaves to others. */
interface HoursPlan {
  watermark: Watermark;
  hours: string[];
  /** The hours left to each running execution that leases them, by its name. */
  deferred: Record<string, string[]>;
  /** The entities already published of the hours that have any: their entity-hours are not collected again. */
  published: ReadonlyMap<string, ReadonlySet<string>>;
}

/** A backfill's hours, as asked (see planBackfillHours), and which of their entity-hours are published. */
async function planBackfill(
  { store, config }: PlanDeps,
  range: { from: string; to: string },
  watermark: Watermark,
  nowMs: number,
): Promise<HoursPlan> {
  const hours = planBackfillHours(range.from, range.to, nowMs, config.lookbackMinutes, config.maxHoursPerRun);
  const published = await publishedEntitiesOfHours(store, config.controlPrefix, hours);
  return { watermark, hours, deferred: {}, published };
}

/**
 * A scheduled run's hours: those due after the caught-up watermark, less the hours published for every entity
 * and those another running execution leases. Its own lease is stored before the leases of ended executions
 * are removed, so the hours it took over from them are held throughout.
 */
async function planScheduled(
  deps: PlanDeps,
  input: PlanInput,
  read: Watermark,
  nowMs: number,
): Promise<HoursPlan> {
  const { config, store } = deps;
  const leases = await otherLeases(deps, input);
  const watermark = await catchUpWatermark(deps, read, input.executionName, nowMs);
  const published = await publishedEntitiesAfter(store, config.controlPrefix, watermark.hourUtc);
  const publishedForEvery = hoursPublishedForEvery(published, config.entities);
  const due = planHours({
    nowMs,
    lookbackMinutes: config.lookbackMinutes,
    maxHoursPerRun: config.maxHoursPerRun,
    watermarkHourUtc: watermark.hourUtc ?? undefined,
    firstHourUtc: config.firstHourUtc,
    published: new Set(publishedForEvery),
  });
  const { hours, deferred } = hoursToCollect(due, publishedForEvery, leases);
  if (hours.length > 0) {
    const lease: CollectionLease = {
      runId: input.executionName,
      hours,
      plannedAt: new Date(nowMs).toISOString(),
    };
    const key = leaseKey(config.controlPrefix, input.executionName);
    await store.put(key, JSON.stringify(lease), "application/json");
  }
  const ended = leases.filter(({ status }) => status === "ended").map(({ key }) => key);
  await store.deleteKeys(ended);
  return { watermark, hours, deferred, published };
}

/**
 * Which due hours this execution collects and which it leaves to the running execution that leases them.
 * Published hours are neither; hours of an ended or unknown holder are collected (twice costs requests,
 * never a duplicate: the entity-hour's manifest decides once).
 */
export function hoursToCollect(
  due: readonly string[],
  published: readonly string[],
  leases: readonly Pick<LeaseOfAnother, "lease" | "status">[],
): Pick<HoursPlan, "hours" | "deferred"> {
  const done = new Set(published);
  const held = new Map(
    leases.flatMap(({ lease, status }) =>
      status === "running" ? lease.hours.map((hourUtc) => [hourUtc, lease.runId] as const) : [],
    ),
  );
  const hours: string[] = [];
  const deferred: Record<string, string[]> = {};
  for (const hourUtc of due) {
    if (done.has(hourUtc)) continue;
    const holder = held.get(hourUtc);
    if (holder === undefined) hours.push(hourUtc);
    else deferred[holder] = [...(deferred[holder] ?? []), hourUtc];
  }
  return { hours, deferred };
}

/** The page window's hint. It is advice: unreadable, it is none (and this never rejects). */
async function readHint(
  { store, config, log }: PlanDeps,
  nowMs: number,
): Promise<PageWindowHint | undefined> {
  try {
    return await readPageWindowHint(store, config.controlPrefix, nowMs);
  } catch (error) {
    log.warn("could not read the shared page window", { reason: String(error) });
    return undefined;
  }
}

/**
 * The Map's concurrency from the page window's hint (see planIterations): one iteration at a time until the
 * Citrix API's limit is known, then as many as it allows.
 */
function mapConcurrency({ config, log }: PlanDeps, hint: PageWindowHint | undefined, items: number): number {
  const iterations = planIterations(hint, config.mapMaxConcurrency, items);
  if (!hint && items > 1) log.info("the Citrix API's limit is not known yet; one iteration at a time");
  else if (iterations < Math.min(config.mapMaxConcurrency, items))
    log.info("fewer iterations at once: the Citrix API allows no more", { limit: hint?.limit, iterations });
  return iterations;
}

/**
 * The watermark a scheduled run plans from. A lost state file is recovered from the published markers (and
 * stored again). A first run starts after the hour before the first hour all first runs share (see
 * firstRunHour): FIRST_HOUR_UTC, or the newest eligible hour of the first run that recorded it; Commit stores
 * it. The watermark moves over hours published after it whose execution did not get to move it (it died in
 * Commit, or finished after a later one).
 */
async function catchUpWatermark(
  deps: PlanDeps,
  read: Watermark,
  runId: string,
  nowMs: number,
): Promise<Watermark> {
  const { store, config, log } = deps;
  let watermark = read;
  if (watermark.hourUtc === null) {
    const recovered = await recoverWatermark(store, config.controlPrefix, config.entities);
    if (recovered === undefined) {
      const proposed = config.firstHourUtc ?? formatHour(newestEligibleHour(nowMs, config.lookbackMinutes));
      const first = await firstRunHour(store, config.controlPrefix, proposed, runId, nowMs);
      return { hourUtc: formatHour((parseHour(first) as number) - HOUR_MS), etag: null };
    }
    log.warn("no state file, but hours were published: continuing after the published hours", {
      stateKey: config.stateKey,
      recovered,
    });
    watermark = { hourUtc: recovered, etag: null };
  }
  const moved = await advanceWatermark(store, config, watermark, runId, config.entities);
  if (moved === watermark.hourUtc && watermark.etag !== null) return watermark;
  // Moved or stored anew: read it back for the ETag Commit writes over.
  const written = await readWatermark(store, config.stateKey);
  return written.hourUtc === null ? watermark : written;
}

/** Another execution's lease, and whether that execution still runs. */
export interface LeaseOfAnother {
  key: string;
  lease: CollectionLease;
  status: ExecutionStatus;
}

/** The leases of other executions; a holder whose status cannot be told is logged (its hours are collected). */
async function otherLeases(deps: PlanDeps, input: PlanInput): Promise<LeaseOfAnother[]> {
  const { store, config, log } = deps;
  const own = leaseKey(config.controlPrefix, input.executionName);
  const found: LeaseOfAnother[] = [];
  for (const key of await store.listKeys(leasePrefix(config.controlPrefix))) {
    if (key === own) continue;
    const lease = parseLease((await store.getText(key))?.body);
    if (!lease) continue;
    const status = await deps.executionStatus(lease.runId, input.executionArn);
    // Collecting an hour twice costs requests, never a duplicate: the hour's manifest decides once.
    if (status === "unknown")
      log.warn("could not tell whether another execution still runs; collecting its hours too", {
        holder: lease.runId,
      });
    found.push({ key, lease, status });
  }
  return found;
}

/** A lease's fields, or undefined when the object is gone or is not a lease (it is then passed over). */
export function parseLease(body: string | undefined): CollectionLease | undefined {
  const lease = parseJson(body ?? "") as Partial<CollectionLease> | null | undefined;
  return typeof lease?.runId === "string" && Array.isArray(lease.hours)
    ? (lease as CollectionLease)
    : undefined;
}

/** Scheduled runs pass {} (the console's default input has a "Comment"); only a "backfill" key asks for one. */
export function isBackfill(request: unknown): boolean {
  return typeof request === "object" && request !== null && "backfill" in request;
}
