import { randomBytes } from "node:crypto";
import type { CitrixClient, CitrixRequestObserver, ODataPage } from "./citrix-client";
import type { CollectorConfig } from "./config";
import type { CollectedResult, CollectInput, CollectOutput, CollectProgress, PageCursor } from "./contracts";
import { Envelope } from "./envelope";
import { CitrixUnavailableError } from "./errors";
import { collectedResultKey, stagingPartKey } from "./keys";
import type { Logger } from "./log";
import { NdjsonPartWriter } from "./part-writer";
import type { S3Store } from "./s3-store";

export interface CollectDeps {
  store: S3Store;
  citrix: CitrixClient;
  config: Pick<
    CollectorConfig,
    | "controlPrefix"
    | "pageSize"
    | "maxPagesInFlight"
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
  // No request starts after this: one started just before may run a whole HTTP timeout, and the last
  // flush still gets INVOCATION_RESERVE_MS before the Lambda's own timeout.
  const deadlineMs = now() + remainingTimeMs() - config.invocationReserveMs - config.httpTimeoutMs;
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
  // Requests already sent, oldest first. The next one always goes out before the previous page is written;
  // more than one only in $skip mode, only after a full page showed the API honours TOP_N, and each is
  // checked against the cursor when its turn comes, so a guess that turned out wrong is dropped unread.
  const inFlight: { url: string; page: Promise<ODataPage> }[] = [];
  const request = (url: string) => {
    const page = citrix.getPage(url, deadlineMs, log, deps.apiRequests);
    // A request dropped unread must not surface as an unhandled rejection.
    page.catch(() => undefined);
    inFlight.push({ url, page });
  };
  let pagesThisInvocation = 0;
  const topUp = () => {
    // Every invocation pages at least once, so the Choice loop always makes progress.
    if (pager.done || (pagesThisInvocation > 0 && now() >= deadlineMs)) return;
    if (inFlight.length === 0) request(pager.nextUrl(citrix, input.entity, input.hourUtc));
    while (inFlight.length < config.maxPagesInFlight && pager.guessesAhead()) {
      request(pager.guessUrl(citrix, input.entity, input.hourUtc, inFlight.length));
    }
  };

  topUp();
  for (let head = inFlight.shift(); head; head = inFlight.shift()) {
    let page: ODataPage;
    try {
      page = await head.page;
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
    log.info("fetched page", { page: progress.pages, records: page.records.length, total: progress.records });
    // Ask for the next page(s) before this one is turned into NDJSON and uploaded.
    if (pager.done || inFlight[0]?.url !== pager.nextUrl(citrix, input.entity, input.hourUtc))
      inFlight.length = 0;
    topUp();
    await writer.add(new Envelope(input.entity, input.hourUtc, new Date(now()).toISOString()), page.records);
  }
  await writer.finish();
  segment.parts = writer.sealed;
  if (segment.parts > 0) progress.segments = [...progress.segments, segment];
  progress.parts += segment.parts;
  progress.cursor = pager.cursor;
  progress.largestPage = pager.largestPage;
  if (pager.done) {
    // Commit reads this instead of the Map's output. Written after every part is stored, so it never names a
    // part that is missing; an invocation Step Functions gave up on may overwrite it with its own complete
    // chain, which is as good: Commit's create-only manifest fixes whichever one it read first.
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

  /** Whether pages further ahead can be guessed: $skip paging, and a full page proved TOP_N is honoured. */
  guessesAhead(): boolean {
    return !this.done && "skip" in this.cursor && this.largestPage === this.pageSize;
  }

  /** The URL `ahead` pages after the next one, assuming full pages (see guessesAhead). */
  guessUrl(citrix: CitrixClient, entity: string, hourUtc: string, ahead: number): string {
    const skip = "skip" in this.cursor ? this.cursor.skip : 0;
    return citrix.pageUrl(entity, hourUtc, this.pageSize, skip + ahead * this.pageSize);
  }

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
