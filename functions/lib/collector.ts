import { randomBytes } from "node:crypto";
import type { CitrixClient, ODataPage } from "./citrix-client";
import type { CollectorConfig } from "./config";
import type { CollectInput, CollectOutput, CollectProgress, PageCursor } from "./contracts";
import { envelopeWriter } from "./envelope";
import { CitrixUnavailableError } from "./errors";
import { stagingPartKey } from "./keys";
import type { Logger } from "./log";
import { NdjsonPartWriter } from "./part-writer";
import type { S3Store } from "./s3-store";

export interface CollectDeps {
  store: S3Store;
  citrix: CitrixClient;
  config: Pick<
    CollectorConfig,
    "controlPrefix" | "pageSize" | "partMaxRecords" | "partMaxBytes" | "gzip" | "invocationReserveMs"
  >;
  log: Logger;
  now?: () => number;
}

/**
 * Pages one entity-hour into staging parts until it is done or this invocation's time budget is spent;
 * then returns a continuation that the state machine's Choice loop feeds to the next invocation.
 * A retried invocation restarts from its input cursor under a new attempt id, so staging never holds two
 * versions of a part under a name Commit will publish.
 */
export async function collectEntityHour(
  deps: CollectDeps,
  input: CollectInput,
  remainingTimeMs: () => number,
): Promise<CollectOutput> {
  const { store, citrix, config } = deps;
  const now = deps.now ?? Date.now;
  const log = deps.log.child({ entity: input.entity, hour: input.hourUtc });
  const deadlineMs = now() + remainingTimeMs() - config.invocationReserveMs;
  const progress: CollectProgress = {
    ...(input.progress ?? {
      cursor: { skip: 0 },
      segments: [],
      parts: 0,
      records: 0,
      pages: 0,
      largestPage: 0,
    }),
    invocations: (input.progress?.invocations ?? 0) + 1,
  };
  const segment = {
    attempt: randomBytes(4).toString("hex"),
    firstPart: progress.parts,
    parts: 0,
    compressed: config.gzip,
  };
  const pager = new PageWalker(config.pageSize, progress.cursor, progress.largestPage);
  const writer = new NdjsonPartWriter(
    store,
    { maxRecords: config.partMaxRecords, maxBytes: config.partMaxBytes, gzip: config.gzip },
    (part) =>
      stagingPartKey(
        config.controlPrefix,
        input.runId,
        input.entity,
        input.hourUtc,
        segment.attempt,
        segment.firstPart + part,
        segment.compressed,
      ),
    log,
  );
  const fetchPage = (url: string) => {
    const request = citrix.getPage(url, deadlineMs, log);
    // A page fetched ahead may be abandoned when the budget runs out; its failure must not go unhandled.
    request.catch(() => undefined);
    return request;
  };

  let pagesThisInvocation = 0;
  let next: Promise<ODataPage> | undefined = fetchPage(pager.nextUrl(citrix, input.entity, input.hourUtc));
  while (next) {
    let page: ODataPage;
    try {
      page = await next;
    } catch (error) {
      // Keep what this invocation already paged; the next invocation retries the failing page.
      if (error instanceof CitrixUnavailableError && pagesThisInvocation > 0) {
        log.warn("Citrix API unavailable, handing over to the next invocation", { reason: error.message });
        break;
      }
      throw error;
    }
    pager.advance(page.records.length, page.nextLink);
    progress.records += page.records.length;
    progress.pages++;
    pagesThisInvocation++;
    // Fetch the next page while this one is turned into NDJSON and uploaded.
    next =
      pager.done || now() >= deadlineMs
        ? undefined
        : fetchPage(pager.nextUrl(citrix, input.entity, input.hourUtc));
    const line = envelopeWriter(input.entity, input.hourUtc, new Date(now()).toISOString());
    await writer.add(page.records.map(line));
  }
  await writer.finish();
  segment.parts = writer.sealed;
  if (segment.parts > 0) progress.segments = [...progress.segments, segment];
  progress.parts += segment.parts;
  progress.cursor = pager.cursor;
  progress.largestPage = pager.largestPage;
  log.info(pager.done ? "entity-hour collected" : "time budget spent, continuing in the next invocation", {
    pages: progress.pages,
    records: progress.records,
    parts: progress.parts,
    invocation: progress.invocations,
    storedBytes: writer.storedBytes,
  });
  return { runId: input.runId, entity: input.entity, hourUtc: input.hourUtc, done: pager.done, progress };
}

/**
 * OData paging rules. With `@odata.nextLink` the server drives and the last page has none. Without it we
 * page by $skip and stop on an empty page, or on a short page once a longer one was seen: a service may
 * cap $top below TOP_N, so a first short page is not proof of the end (that costs one extra request).
 */
export class PageWalker {
  done = false;

  constructor(
    private readonly pageSize: number,
    public cursor: PageCursor,
    public largestPage = 0,
  ) {}

  nextUrl(citrix: CitrixClient, entity: string, hourUtc: string): string {
    return "nextLink" in this.cursor
      ? this.cursor.nextLink
      : citrix.pageUrl(entity, hourUtc, this.pageSize, this.cursor.skip);
  }

  advance(count: number, nextLink: string | undefined): void {
    const following = "nextLink" in this.cursor;
    if (nextLink) {
      this.cursor = { nextLink };
    } else if (following) {
      this.done = true;
    } else {
      const skip = "skip" in this.cursor ? this.cursor.skip : 0;
      this.done = count === 0 || (count < this.pageSize && count < this.largestPage);
      this.cursor = { skip: skip + count };
    }
    this.largestPage = Math.max(this.largestPage, count);
  }
}
