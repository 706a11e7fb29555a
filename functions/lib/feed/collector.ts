import { randomBytes } from "node:crypto";
import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import type { CitrixClient, CitrixRequestObserver, ODataPage, RequestPacing } from "../citrix/citrix-client";
import {
  customerLimit,
  FIRST_PROBE_ROUNDS,
  mergedHint,
  PageWindow,
  type PageWindowState,
  runningIterations,
  shareOf,
  startingWindow,
} from "../citrix/page-window";
import { PageWalker, pageDigest } from "../citrix/paging";
import type { CollectorConfig } from "../config/config";
import type {
  CollectedResult,
  CollectInput,
  CollectOutput,
  CollectProgress,
  PageWindowHint,
} from "../config/contracts";
import { CitrixUnavailableError } from "../config/errors";
import { Envelope } from "./envelope";
import { collectedResultKey, collectedResultPrefix, stagingPartKey } from "./keys";
import { readPageWindowHint, sharePageWindow } from "./page-window-hint";
import { NdjsonPartWriter } from "./part-writer";

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

/** How often an iteration sharing a known limit counts those of its run that finished (one S3 LIST). */
const RECOUNT_MS = 2_000;

/** A page request in flight. */
interface PageRequest {
  url: string;
  page: Promise<ODataPage>;
  abort: AbortController;
  /** While the API serves it (it counts against the window). */
  sending: boolean;
  /** When its last attempt went out: its page's latency counts from there. */
  sentAtMs: number;
  /** The Retry-After its client backoff waits out before it is sent again (see RequestPacing.ready). */
  waitedForMs: number;
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
  // How many the API serves at once is the window's call (see PageWindow): a request waits for room in it
  // before every attempt, retries included, and a Retry-After holds back all of them.
  // The iterations sharing the customer's limit with this one, itself included (see planIterations).
  let iterations = input.iterationsAtOnce ?? 1;
  const { window, hint: startHint } = await openPageWindow(deps, input.progress?.window, iterations, log);
  // The most requests the API served at once for this invocation: what it allows, if it never refuses.
  let peakServed = 0;
  const inFlight: PageRequest[] = [];
  let windowNotBeforeMs = 0;
  let windowWaitedForMs = 0;
  let sending = 0;
  let roomWaiters: (() => void)[] = [];
  const makeRoom = () => {
    const woken = roomWaiters;
    roomWaiters = [];
    for (const wake of woken) wake();
  };
  const stopSending = (entry: PageRequest) => {
    if (!entry.sending) return;
    entry.sending = false;
    sending--;
    makeRoom();
  };
  // What this entity-hour learned of the customer's limit, for the iterations and executions that start
  // later (see mergedHint). Written only when it tells more than what was last shared, one write at a time.
  let sharedHint = startHint;
  let hintWrite: Promise<unknown> = Promise.resolve();
  const shareWindow = (learnedLimit: Pick<PageWindowHint, "limit" | "throttled" | "probeRounds">) => {
    const learned = { ...learnedLimit, at: new Date(now()).toISOString() };
    const merged = mergedHint(sharedHint, learned);
    if (!merged) return;
    sharedHint = merged;
    hintWrite = hintWrite
      .then(() => sharePageWindow(store, config.controlPrefix, learned))
      .catch((error: unknown) => log.warn("could not share the page window", { reason: String(error) }));
  };
  // The Map's last iterations run beside fewer others: while a known limit is shared, this one counts the
  // entity-hours of its run that have finished (at most every RECOUNT_MS, without holding up paging) and
  // takes the larger share they left.
  const inAll = input.iterationsInAll ?? iterations;
  let recountAtMs = now() + RECOUNT_MS;
  let recount: Promise<void> | undefined;
  const recountIterations = () => {
    if (recount || iterations <= 1 || !sharedHint?.throttled || now() < recountAtMs) return;
    recount = store
      .listKeys(collectedResultPrefix(config.controlPrefix, input.runId))
      .then(
        (finished) => {
          const running = runningIterations(iterations, inAll, finished.length);
          if (running >= iterations || !sharedHint?.throttled) return;
          iterations = running;
          window.raiseLimit(shareOf(sharedHint.limit, running));
          log.info("fewer iterations share the Citrix API's limit; a larger share for this one", {
            iterations,
            ...window.state,
          });
        },
        (error: unknown) => log.warn("could not count the finished entity-hours", { reason: String(error) }),
      )
      .finally(() => {
        recount = undefined;
        recountAtMs = now() + RECOUNT_MS;
      });
  };
  const request = (url: string) => {
    const abort = new AbortController();
    const pacing: RequestPacing = {
      ready: async (signal) => {
        stopSending(entry);
        // A Retry-After some request of the window has waited out (here, or this one in the client's own
        // backoff, which has just ended) is not waited again, whatever the clock says (a test's clock may
        // stand still while pauses are skipped); only a later one is.
        windowWaitedForMs = Math.max(windowWaitedForMs, entry.waitedForMs);
        for (;;) {
          signal?.throwIfAborted();
          const notBeforeMs = windowNotBeforeMs;
          if (notBeforeMs > windowWaitedForMs && notBeforeMs > now()) {
            if (notBeforeMs >= deadlineMs) {
              throw new CitrixUnavailableError(
                `the Citrix API asked to wait until ${new Date(notBeforeMs).toISOString()}, past this invocation's time budget`,
                { retryAtMs: notBeforeMs },
              );
            }
            await citrix.pause(notBeforeMs - now(), signal);
            windowWaitedForMs = Math.max(windowWaitedForMs, notBeforeMs);
          } else if (sending >= window.allowed) {
            await untilAborted(new Promise<void>((resolve) => roomWaiters.push(resolve)), signal);
          } else break;
        }
        entry.sending = true;
        sending++;
        entry.sentAtMs = now();
      },
      pushedBack: (status, retryAfterMs) => {
        if (retryAfterMs !== undefined) windowNotBeforeMs = Math.max(windowNotBeforeMs, now() + retryAfterMs);
        stopSending(entry);
        // A throttle is the window's to space out (see PageWindow): the request goes again when one of its
        // own others finishes. Alone, or for an unwell API, it gets the client's backoff.
        const throttle = status === 429;
        // The API's answer counts the others still being served (this one has stopped sending).
        const crowded = window.pushedBack(throttle ? "throttled" : "failed", sending);
        if (throttle) {
          const { limit = 1, probeRounds = FIRST_PROBE_ROUNDS } = window.state;
          shareWindow({ limit: customerLimit(limit, iterations, crowded), throttled: true, probeRounds });
        }
        log.info("the Citrix API pushed back; fewer page requests in flight", { status, ...window.state });
        const paced = throttle && sending > 0;
        // Otherwise the client's backoff waits at least the Retry-After, for this request.
        if (!paced && retryAfterMs !== undefined) entry.waitedForMs = now() + retryAfterMs;
        return paced;
      },
    };
    const entry: PageRequest = {
      url,
      abort,
      sending: false,
      sentAtMs: now(),
      waitedForMs: 0,
      page: citrix.getPage(url, deadlineMs, log, {
        observer: deps.apiRequests,
        signal: abort.signal,
        pacing,
      }),
    };
    // The window learns from a page when it arrives, not when its turn to be written comes.
    entry.page.then(
      (page) => {
        window.completed({ full: page.records.length >= config.pageSize, latencyMs: now() - entry.sentAtMs });
        peakServed = Math.max(peakServed, sending);
        stopSending(entry);
      },
      // A request dropped unread must not surface as an unhandled rejection.
      () => stopSending(entry),
    );
    inFlight.push(entry);
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
    while (inFlight.length < window.allowed && pager.guessesAhead()) {
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
      recountIterations();
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
  await recount;
  // Never refused: what it served at once is a floor of the limit, from which later executions start.
  if (pager.done && window.state.limit === undefined && peakServed > 0)
    shareWindow({ limit: peakServed, throttled: false, probeRounds: FIRST_PROBE_ROUNDS });
  await hintWrite;
  segment.parts = writer.sealed;
  if (segment.parts > 0) written.segments = [...written.segments, segment];
  written.parts += segment.parts;
  // A Retry-After is honoured by the invocation it is handed to, and by no later one.
  const progress: CollectProgress = {
    ...written,
    ...pager.state,
    ...(pager.done ? {} : { window: window.state }),
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
  return {
    runId: input.runId,
    entity: input.entity,
    hourUtc: input.hourUtc,
    ...(input.iterationsAtOnce === undefined ? {} : { iterationsAtOnce: input.iterationsAtOnce }),
    ...(input.iterationsInAll === undefined ? {} : { iterationsInAll: input.iterationsInAll }),
    done: pager.done,
    progress,
  };
}

/**
 * The window this invocation starts with: the previous invocation's for this entity-hour, else this
 * iteration's share of the page window's hint (see startingWindow), else a fresh one. The hint is read in
 * either case, so that what this entity-hour learns is compared with it; unreadable, it is ignored.
 */
async function openPageWindow(
  { store, config, now = Date.now }: CollectDeps,
  resumed: PageWindowState | undefined,
  iterations: number,
  log: Logger,
): Promise<{ window: PageWindow; hint: PageWindowHint | undefined }> {
  let hint: PageWindowHint | undefined;
  try {
    hint = await readPageWindowHint(store, config.controlPrefix, now());
  } catch (error) {
    log.warn("could not read the shared page window; finding it afresh", { reason: String(error) });
  }
  if (resumed || !hint) return { window: new PageWindow(config.maxPagesInFlight, resumed), hint };
  const state = startingWindow(hint, iterations);
  log.info("starting from the page window the Citrix API last allowed", { ...hint, iterations, ...state });
  return { window: new PageWindow(config.maxPagesInFlight, state), hint };
}

/** `promise`, or the signal's reason once it is aborted. */
function untilAborted(promise: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    promise.then(() => {
      signal.removeEventListener("abort", abort);
      resolve();
    });
  });
}
