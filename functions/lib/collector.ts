import { randomBytes } from "node:crypto";
import type { CitrixClient, CitrixRequestObserver, ODataPage } from "./citrix-client";
import type { CollectorConfig } from "./config";
import type { CollectedResult, CollectInput, CollectOutput, CollectProgress } from "./contracts";
import { Envelope } from "./envelope";
import { CitrixUnavailableError } from "./errors";
import { collectedResultKey, stagingPartKey } from "./keys";
import type { Logger } from "./log";
import { PageWalker, pageDigest } from "./paging";
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
  const resumed = input.progress;
  const pager = new PageWalker(config.pageSize, config.maxPagesPerEntityHour, resumed);
  // What was written; where paging stands is the walker's (see the output below).
  const written: Pick<CollectProgress, "segments" | "parts" | "records" | "invocations"> = {
    segments: resumed?.segments ?? [],
    parts: resumed?.parts ?? 0,
    records: resumed?.records ?? 0,
    invocations: (resumed?.invocations ?? 0) + 1,
  };
  const segment = {
    attempt: randomBytes(4).toString("hex"),
    firstPart: written.parts,
    parts: 0,
    compressed: config.gzip,
  };
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
  const inFlight: { url: string; page: Promise<ODataPage>; abort: AbortController }[] = [];
  const request = (url: string) => {
    const abort = new AbortController();
    const page = citrix.getPage(url, deadlineMs, log, deps.apiRequests, abort.signal);
    // A request dropped unread must not surface as an unhandled rejection.
    page.catch(() => undefined);
    inFlight.push({ url, page, abort });
  };
  // A request whose page will not be read is aborted, so it neither runs on past the hand-over nor keeps
  // the API busy.
  const dropInFlight = () => {
    for (const dropped of inFlight.splice(0)) dropped.abort.abort();
  };
  let throttledUntilMs: number | undefined;
  let pagesThisInvocation = 0;
  const topUp = () => {
    // Every invocation pages at least once, so the Choice loop always makes progress.
    if (pager.done || (pagesThisInvocation > 0 && now() >= deadlineMs)) return;
    if (inFlight.length === 0) request(pager.nextUrl(citrix, input.entity, input.hourUtc));
    while (inFlight.length < config.maxPagesInFlight && pager.guessesAhead()) {
      request(pager.guessUrl(citrix, input.entity, input.hourUtc, inFlight.length));
    }
  };

  if (resumed?.notBefore !== undefined)
    await citrix.waitUntil(Date.parse(resumed.notBefore), deadlineMs, log);
  try {
    topUp();
    for (let head = inFlight.shift(); head; head = inFlight.shift()) {
      let page: ODataPage;
      try {
        page = await head.page;
      } catch (error) {
        // Keep what this invocation already paged; the next invocation retries the failing page once the
        // time the API asked for has passed.
        if (error instanceof CitrixUnavailableError && pagesThisInvocation > 0) {
          log.warn("Citrix API unavailable, handing over to the next invocation", { reason: error.message });
          throttledUntilMs = error.retryAtMs;
          break;
        }
        throw error;
      }
      const fresh = pager.advance({
        url: head.url,
        count: page.records.length,
        nextLink: page.nextLink,
        digest: pageDigest(page.records),
      });
      pagesThisInvocation++;
      if (fresh) written.records += page.records.length;
      else
        log.warn("the API ignored $skip and served its only page again; dropped the repeat", {
          url: head.url,
        });
      log.info("fetched page", { page: pager.pages, records: page.records.length, total: written.records });
      // Ask for the next page(s) before this one is turned into NDJSON and uploaded.
      if (pager.done || inFlight[0]?.url !== pager.nextUrl(citrix, input.entity, input.hourUtc))
        dropInFlight();
      topUp();
      if (fresh) {
        await writer.add(
          new Envelope(input.entity, input.hourUtc, new Date(now()).toISOString()),
          page.records,
        );
      }
    }
  } finally {
    dropInFlight();
  }
  await writer.finish();
  segment.parts = writer.sealed;
  if (segment.parts > 0) written.segments = [...written.segments, segment];
  written.parts += segment.parts;
  // A Retry-After is honoured by the invocation it is handed to, and by no later one.
  const progress: CollectProgress = {
    ...written,
    ...pager.state,
    ...(throttledUntilMs === undefined ? {} : { notBefore: new Date(throttledUntilMs).toISOString() }),
  };
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
