import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import type { CitrixClient, CitrixRequestObserver } from "../citrix/citrix-client";
import type { CollectorConfig } from "../config/config";
import type {
  CollectedResult,
  CollectInput,
  CollectOutput,
  CollectProgress,
  StagingSegment,
} from "../config/contracts";
import { collectedResultKey } from "./keys";
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
  /** Counts the Citrix requests this invocation retries (for its metrics). */
  apiRequests?: CitrixRequestObserver;
}

/**
 * Pages one entity-hour into staging parts until it is done or this invocation's time budget is spent;
 * then returns a continuation that the state machine's Choice loop feeds to the next invocation.
 * A retried invocation restarts from its input cursor under a new attempt id, so staging never holds two
 * versions of a part under a name Commit will publish. The invocation that finishes the entity-hour writes
 * its result next to its parts.
 */
export async function collectEntityHour(
  deps: CollectDeps,
  input: CollectInput,
  remainingTimeMs: () => number,
): Promise<CollectOutput> {
  const now = deps.now ?? Date.now;
  const log = deps.log.child({ entity: input.entity, hour: input.hourUtc });
  const partDeps = { ...deps, now, log };
  // No request starts after this: one started just before may run a whole HTTP timeout, and the last
  // flush still gets INVOCATION_RESERVE_MS before the Lambda's own timeout.
  const deadlineMs = now() + remainingTimeMs() - deps.config.invocationReserveMs - deps.config.httpTimeoutMs;
  const segment = new SegmentWriter(partDeps, input);
  const limit = SharedLimit.open(partDeps, input);
  const pacer = new PagePacer(partDeps, limit, deadlineMs);
  const source = new PageSource(partDeps, input, pacer, deadlineMs);
  // The Retry-After the previous invocation was given is waited out before the first request.
  const handedOver = input.progress?.notBefore;
  if (handedOver !== undefined) await deps.citrix.waitUntil(Date.parse(handedOver), deadlineMs, log);
  // The first request goes out while the page window's hint is read (see SharedLimit.open).
  source.sendAhead();
  await limit.ready;
  source.knowServedTop(limit.servedTop);
  const records = await pageIntoParts(source, limit, segment, input.progress?.records ?? 0, log);
  const written = await segment.finish();
  await limit.settle(source.done, pacer.peakServed, source.servedTop);
  const progress = progressAfter(input.progress, written, records, source, limit);
  if (source.done) await storeResult(deps, input, progress);
  log.info(source.done ? "entity-hour collected" : "time budget spent, continuing in the next invocation", {
    pages: progress.pages,
    records: progress.records,
    parts: progress.parts,
    invocation: progress.invocations,
    storedBytes: segment.storedBytes,
  });
  return {
    runId: input.runId,
    entity: input.entity,
    hourUtc: input.hourUtc,
    ...(input.iterationsAtOnce === undefined ? {} : { iterationsAtOnce: input.iterationsAtOnce }),
    ...(input.iterationsInAll === undefined ? {} : { iterationsInAll: input.iterationsInAll }),
    ...(input.itemIndex === undefined ? {} : { itemIndex: input.itemIndex }),
    done: source.done,
    progress,
  };
}

/**
 * Writes each page the source serves to the segment, asking for the next page(s) before a page is turned into
 * NDJSON and uploaded. Returns the entity-hour's record count, `records` before.
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
    source.sendAhead();
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
    invocations: (resumed?.invocations ?? 0) + 1,
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
