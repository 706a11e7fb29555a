import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import type { CitrixClient, CitrixRequestObserver } from "../citrix/citrix-client";
import type { CollectorConfig } from "../config/config";
import type {
  CollectedResult,
  CollectInput,
  CollectOutput,
  CollectProgress,
  EntityHourFigures,
  StagingSegment,
  WorkItem,
} from "../config/contracts";
import { CollectorError } from "../config/errors";
import { collectedResultKey, runFinishedKey } from "./keys";
import { PagePacer } from "./page-pacer";
import { PageSource } from "./page-source";
import { SegmentWriter } from "./segment-writer";
import { SharedLimit } from "./shared-limit";

export interface CollectDeps {
  store: S3Store;
  citrix: CitrixClient;
  config: Pick<
    CollectorConfig,
    | "controlPrefix"
    | "pageSize"
    | "maxPagesInFlight"
    | "maxPagesPerEntityHour"
    | "partMaxRecords"
    | "partMaxBytes"
    | "gzip"
    | "invocationReserveMs"
    | "httpTimeoutMs"
  >;
  log: Logger;
  now?: () => number;
  /** Counts the Citrix requests this invocation retries for an entity-hour (for its metrics). */
  apiRequestsOf?: (entityHour: WorkItem) => CitrixRequestObserver;
}

/**
 * Pages a run of entity-hours (see planRuns) into staging parts, one after the other, until the run is done or
 * this invocation's time budget is spent; then returns where the run stands, which the state machine's Choice
 * loop feeds to the next invocation. Each entity-hour's first request goes out while the last part and the
 * result of the one before are still being written, so no request slot waits for S3 between them.
 * A retried invocation restarts from its input under new attempt ids, so staging never holds two versions of a
 * part under a name Commit will publish. A fault Retry would retry anyway, once entity-hours finished in this
 * invocation, hands the first unfinished one to the next invocation instead: those finished stay finished,
 * rather than being collected again by the retry (the next invocation fails, and backs off, if the fault is
 * still there). A fault that needs an operator fails the Task at once.
 */
export async function collectRun(
  deps: CollectDeps,
  input: CollectInput,
  remainingTimeMs: () => number,
): Promise<CollectOutput> {
  const collection = new RunCollection(deps, input, remainingTimeMs());
  try {
    return await collection.collect();
  } catch (error) {
    const handedOver = await collection.handOverAfter(error);
    if (handedOver === undefined) throw error;
    return handedOver;
  }
}

/** One invocation's share of a run: the entity-hours it collects in turn, and what it has finished. */
class RunCollection {
  private readonly now: () => number;
  private readonly deadlineMs: number;
  private readonly run: WorkItem[];
  private readonly limit: SharedLimit;
  private readonly finished: EntityHourFigures[] = [];
  /** The entity-hour before's last part, hint and result, written while the next one pages (at most one). */
  private writing: Promise<unknown> = Promise.resolve();
  private pagesBefore = 0;
  /** The $top an entity-hour before saw the API serve in full, known at once (its hint is written meanwhile). */
  private servedTop: number | undefined;

  constructor(
    private readonly deps: CollectDeps,
    private readonly input: CollectInput,
    remainingMs: number,
  ) {
    this.now = deps.now ?? Date.now;
    // No request starts after this: one started just before may run a whole HTTP timeout, and the last
    // flush still gets INVOCATION_RESERVE_MS before the Lambda's own timeout.
    this.deadlineMs = this.now() + remainingMs - deps.config.invocationReserveMs - deps.config.httpTimeoutMs;
    this.run = [{ entity: input.entity, hourUtc: input.hourUtc }, ...(input.rest ?? [])];
    this.limit = SharedLimit.open({ ...deps, now: this.now }, input);
  }

  async collect(): Promise<CollectOutput> {
    const { deps, input, run, limit, now, deadlineMs } = this;
    for (let position = 0; ; position++) {
      const { entity, hourUtc } = run[position] as WorkItem;
      const entityHour = { ...input, entity, hourUtc, progress: position === 0 ? input.progress : undefined };
      const log = deps.log.child({ entity, hour: hourUtc });
      const { pagesBefore, servedTop } = this;
      const apiRequests = deps.apiRequestsOf?.({ entity, hourUtc });
      const paged = await pageEntityHour({ ...deps, now, log, apiRequests }, entityHour, limit, {
        deadlineMs,
        pagesBefore,
        servedTop,
      });
      this.pagesBefore += paged.source.pagesThisInvocation;
      this.servedTop = paged.source.servedTop ?? servedTop;
      await this.writing;
      const written = finishEntityHour({ ...deps, log }, entityHour, paged);
      const done = paged.source.done;
      if (!done || position === run.length - 1) {
        const progress = await written;
        if (done) {
          this.finished.push(figuresOf(entityHour, progress));
          await markRunFinished({ ...deps, log }, input);
        }
        return this.standing(position, done, progress);
      }
      this.writing = written.then((progress) => this.finished.push(figuresOf(entityHour, progress)));
      // Awaited before the next entity-hour's writes or the hand-over; until then, a failure is not unhandled.
      this.writing.catch(() => undefined);
    }
  }

  /** Where the run stands after `error`, if the next invocation should go on from there (see collectRun). */
  async handOverAfter(error: unknown): Promise<CollectOutput | undefined> {
    await this.writing.catch(() => undefined);
    const position = this.finished.length;
    const retryable = error instanceof CollectorError && error.retryable;
    if (!retryable || position === 0 || position === this.run.length) return undefined;
    const { entity, hourUtc } = this.run[position] as WorkItem;
    this.deps.log
      .child({ entity, hour: hourUtc })
      .warn("collecting the entity-hour failed; handing it to the next invocation", {
        reason: String(error),
      });
    return this.standing(position, false);
  }

  private standing(position: number, done: boolean, progress?: CollectProgress): CollectOutput {
    return runStanding(this.input, this.run, position, done, progress, this.finished);
  }
}

/**
 * Pages one entity-hour of the run into its segment until it is done or the time budget is spent. The first
 * of an invocation waits out the Retry-After it was handed, and sends its first request while the page
 * window's hint is read (see SharedLimit.open); the ones after it page with the window the run has.
 */
async function pageEntityHour(
  deps: CollectDeps & { now: () => number; apiRequests: CitrixRequestObserver | undefined },
  input: CollectInput,
  limit: SharedLimit,
  run: { deadlineMs: number; pagesBefore: number; servedTop: number | undefined },
): Promise<PagedEntityHour> {
  const { deadlineMs, pagesBefore } = run;
  // Pages before it in this invocation: it follows another entity-hour of the run.
  if (pagesBefore > 0) limit.nextEntityHour(deps.log);
  else limit.logTo(deps.log);
  const segment = new SegmentWriter(deps, input);
  const pacer = new PagePacer(deps, limit, deadlineMs);
  const source = new PageSource(deps, input, pacer, deadlineMs, pagesBefore);
  const handedOver = input.progress?.notBefore;
  if (handedOver !== undefined) await deps.citrix.waitUntil(Date.parse(handedOver), deadlineMs, deps.log);
  source.sendAhead();
  await limit.ready;
  source.knowServedTop(run.servedTop ?? limit.servedTop);
  const records = await pageIntoParts(source, limit, segment, input.progress?.records ?? 0, deps.log);
  return { segment, source, pacer, limit, records };
}

/** What an entity-hour's paging leaves to write once its last page is read. */
interface PagedEntityHour {
  segment: SegmentWriter;
  source: PageSource;
  pacer: PagePacer;
  limit: SharedLimit;
  records: number;
}

/**
 * Seals the entity-hour's last part, shares what it learned of the limit, and, once it is done, writes its
 * result: after every part is stored, so a result never names a part that is missing.
 */
async function finishEntityHour(
  deps: CollectDeps,
  input: CollectInput,
  { segment, source, pacer, limit, records }: PagedEntityHour,
): Promise<CollectProgress> {
  const written = await segment.finish();
  await limit.settle(source.done, pacer.peakServed, source.servedTop, deps.log);
  const progress = progressAfter(input.progress, written, records, source, limit);
  // The hint is advice and the result does not wait for it; the invocation does, so no write outlives it.
  const [stored] = await Promise.allSettled([
    source.done ? storeResult(deps, input, progress) : undefined,
    limit.shared,
  ]);
  if (stored.status === "rejected") throw stored.reason;
  deps.log.info(
    source.done ? "entity-hour collected" : "time budget spent, continuing in the next invocation",
    {
      pages: progress.pages,
      records: progress.records,
      parts: progress.parts,
      invocation: progress.invocations,
      storedBytes: segment.storedBytes,
    },
  );
  return progress;
}

/**
 * Where the run stands: at `position`, with that entity-hour's progress (none when the next invocation starts it
 * afresh); done once the last one is. An input without `rest` (a run of one) gets an output without it.
 */
function runStanding(
  input: CollectInput,
  run: readonly WorkItem[],
  position: number,
  done: boolean,
  progress: CollectProgress | undefined,
  finished: readonly EntityHourFigures[],
): CollectOutput {
  const { entity, hourUtc } = run[position] as WorkItem;
  const before = input.runTotals ?? { entityHours: 0, pages: 0, records: 0, parts: 0 };
  return {
    runId: input.runId,
    entity,
    hourUtc,
    ...(input.rest === undefined ? {} : { rest: run.slice(position + 1) }),
    ...(input.iterationsAtOnce === undefined ? {} : { iterationsAtOnce: input.iterationsAtOnce }),
    ...(input.iterationsInAll === undefined ? {} : { iterationsInAll: input.iterationsInAll }),
    ...(input.itemIndex === undefined ? {} : { itemIndex: input.itemIndex }),
    done,
    ...(progress === undefined ? {} : { progress }),
    finished: [...finished],
    runTotals: finished.reduce(
      (sum, figures) => ({
        entityHours: sum.entityHours + 1,
        pages: sum.pages + figures.pages,
        records: sum.records + figures.records,
        parts: sum.parts + figures.parts,
      }),
      before,
    ),
  };
}

function figuresOf({ entity, hourUtc }: WorkItem, progress: CollectProgress): EntityHourFigures {
  const { pages, records, parts, invocations } = progress;
  return { entity, hourUtc, pages, records, parts, invocations };
}

/**
 * Writes each page the source serves to the segment, asking for the next page(s) before a page is turned into
 * NDJSON and uploaded (the first request went out before the hint was read). Returns the entity-hour's record
 * count, `records` before.
 */
async function pageIntoParts(
  source: PageSource,
  limit: SharedLimit,
  segment: SegmentWriter,
  records: number,
  log: Logger,
): Promise<number> {
  let total = records;
  try {
    for (let page = await source.next(); page; page = await source.next()) {
      if (page.fresh) total += page.records.length;
      log.info("fetched page", { page: source.pages, records: page.records.length, total });
      limit.recountIterations();
      // Ask for the next page(s) before this one is turned into NDJSON and uploaded.
      source.sendAhead();
      if (page.fresh) await segment.add(page.records);
    }
  } finally {
    source.dropInFlight();
  }
  return total;
}

/**
 * Tells the iterations still running that this run has finished, so they take the share of the limit it
 * leaves (see SharedLimit). Only a Map item that is a run (`rest`) with its index has one.
 */
async function markRunFinished({ store, config, log }: CollectDeps, input: CollectInput): Promise<void> {
  if (input.rest === undefined || input.itemIndex === undefined) return;
  // Advice like the page window's hint: unwritten, the others keep their smaller shares a little longer.
  await store
    .put(runFinishedKey(config.controlPrefix, input.runId, input.itemIndex), "{}", "application/json")
    .catch((error: unknown) => log.warn("could not mark the run finished", { reason: String(error) }));
}

/** Where the entity-hour stands after this invocation: what was written, and where paging stands. */
function progressAfter(
  resumed: CollectProgress | undefined,
  written: StagingSegment,
  records: number,
  source: PageSource,
  limit: SharedLimit,
): CollectProgress {
  const segments = resumed?.segments ?? [];
  return {
    segments: written.parts > 0 ? [...segments, written] : segments,
    parts: (resumed?.parts ?? 0) + written.parts,
    records,
    // An invocation that handed it over before its first page did not work on it.
    invocations: (resumed?.invocations ?? 0) + (source.pagesThisInvocation > 0 ? 1 : 0),
    ...source.state,
    ...(source.done ? {} : { window: limit.window.state }),
    // A Retry-After is honoured by the invocation it is handed to, and by no later one.
    ...(source.retryAtMs === undefined ? {} : { notBefore: new Date(source.retryAtMs).toISOString() }),
  };
}

/**
 * Commit reads this instead of the Map's output. Written after every part is stored, so it never names a
 * part that is missing; an invocation Step Functions gave up on may overwrite it with its own complete
 * chain, which is as good: Commit's create-only manifest fixes whichever one it read first.
 */
async function storeResult(
  { store, config }: CollectDeps,
  input: CollectInput,
  progress: CollectProgress,
): Promise<void> {
  const result: CollectedResult = {
    entity: input.entity,
    hourUtc: input.hourUtc,
    records: progress.records,
    parts: progress.parts,
    segments: progress.segments,
  };
  await store.put(
    collectedResultKey(config.controlPrefix, input.runId, input.entity, input.hourUtc),
    JSON.stringify(result),
    "application/json",
  );
}
