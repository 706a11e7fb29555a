import type { Logger } from "../aws/log";
import type { CitrixClient, CitrixRequestObserver, ODataPage } from "../citrix/citrix-client";
import type { PageRecords } from "../citrix/odata-page";
import { PageWalker, type PagingState, pageDigest } from "../citrix/paging";
import type { CollectorConfig } from "../config/config";
import type { CollectInput } from "../config/contracts";
import { CitrixUnavailableError } from "../config/errors";
import { PacedRequest, type PagePacer } from "./page-pacer";

export interface PageSourceDeps {
  citrix: CitrixClient;
  config: Pick<CollectorConfig, "pageSize" | "maxPagesPerEntityHour">;
  /** Counts the Citrix requests this invocation retries (for its metrics). */
  apiRequests?: CitrixRequestObserver | undefined;
  now: () => number;
  log: Logger;
}

/** A page read in its turn. */
export interface FetchedPage {
  records: PageRecords;
  /** Whether its records are new, to be written (see PageWalker.advance). */
  fresh: boolean;
}

/** A page request in flight. */
interface PageRequest {
  url: string;
  page: Promise<ODataPage>;
  abort: AbortController;
}

/**
 * The pages of one entity-hour in order, from the cursor its input carries (see PageWalker). Requests already
 * sent wait here, oldest first. The next one always goes out before the previous page is written; more than
 * one only in $skip mode, only after a full page showed the API honours TOP_N, and each is checked against the
 * cursor when its turn comes, so a guess that turned out wrong is dropped unread. How many are served at once
 * is the pacer's call.
 */
export class PageSource {
  private readonly walker: PageWalker;
  private readonly inFlight: PageRequest[] = [];
  private pagesRead = 0;
  /** When the API will serve the page this invocation could not get: the next invocation waits until then. */
  retryAtMs: number | undefined;

  constructor(
    private readonly deps: PageSourceDeps,
    private readonly input: CollectInput,
    private readonly pacer: PagePacer,
    /** No request starts after this (but the first of the invocation). */
    private readonly deadlineMs: number,
    /** Pages this invocation read before this entity-hour, of the entity-hours before it in its run. */
    private readonly pagesBefore = 0,
  ) {
    const { pageSize, maxPagesPerEntityHour } = deps.config;
    this.walker = new PageWalker(pageSize, maxPagesPerEntityHour, input.progress);
  }

  /** The $top the API is known to serve in full (see PageWalker): to be told before the first page is read. */
  knowServedTop(servedTop: number | undefined): void {
    this.walker.knowServedTop(servedTop);
  }

  /** Whether the entity-hour's last page was read. */
  get done(): boolean {
    return this.walker.done;
  }

  /** Pages of this entity-hour read by this invocation. */
  get pagesThisInvocation(): number {
    return this.pagesRead;
  }

  /** Pages read in the entity-hour so far. */
  get pages(): number {
    return this.walker.pages;
  }

  /** TOP_N, if the API served a page of that many records in this entity-hour; else undefined. */
  get servedTop(): number | undefined {
    const { pageSize } = this.deps.config;
    return this.walker.largestPage === pageSize ? pageSize : undefined;
  }

  /** Where paging stands, for the next invocation. */
  get state(): PagingState {
    return this.walker.state;
  }

  /**
   * The next page in order; none once the hour is done, the time budget is spent, or the API is unavailable
   * after this invocation read a page (then `retryAtMs` says until when).
   */
  async next(): Promise<FetchedPage | undefined> {
    const head = this.inFlight.shift();
    if (!head) return undefined;
    let page: ODataPage;
    try {
      page = await head.page;
    } catch (error) {
      // Keep what this invocation already paged; the next invocation retries the failing page once the
      // time the API asked for has passed.
      if (error instanceof CitrixUnavailableError && this.pagesBefore + this.pagesRead > 0) {
        this.deps.log.warn("Citrix API unavailable, handing over to the next invocation", {
          reason: error.message,
        });
        this.retryAtMs = error.retryAtMs;
        return undefined;
      }
      throw error;
    }
    const fresh = this.walker.advance({
      url: head.url,
      count: page.records.length,
      nextLink: page.nextLink,
      digest: pageDigest(page.records),
    });
    this.pagesRead++;
    if (!fresh)
      this.deps.log.warn("the API ignored $skip and served its only page again; dropped the repeat", {
        url: head.url,
      });
    return { records: page.records, fresh };
  }

  /** Asks for the next page(s), dropping the requests sent ahead on a guess that turned out wrong. */
  sendAhead(): void {
    if (this.walker.done || this.inFlight[0]?.url !== this.nextUrl()) this.dropInFlight();
    // Every invocation pages at least once, so the Choice loop always makes progress.
    const paged = this.pagesBefore + this.pagesRead > 0;
    if (this.walker.done || (paged && this.deps.now() >= this.deadlineMs)) return;
    if (this.inFlight.length === 0) this.request(this.nextUrl());
    while (this.inFlight.length < this.pacer.allowed && this.walker.guessesAhead()) {
      this.request(
        this.walker.guessUrl(this.deps.citrix, this.input.entity, this.input.hourUtc, this.inFlight.length),
      );
    }
  }

  /**
   * A request whose page will not be read is aborted, so it neither runs on past the hand-over nor keeps the
   * API busy.
   */
  dropInFlight(): void {
    for (const dropped of this.inFlight.splice(0)) dropped.abort.abort();
  }

  private nextUrl(): string {
    return this.walker.nextUrl(this.deps.citrix, this.input.entity, this.input.hourUtc);
  }

  private request(url: string): void {
    const { citrix, config, apiRequests, now, log } = this.deps;
    const abort = new AbortController();
    const paced = new PacedRequest(now());
    const page = citrix.getPage(url, this.deadlineMs, log, {
      observer: apiRequests,
      signal: abort.signal,
      pacing: this.pacer.pacing(paced),
    });
    page.then(
      (arrived) => this.pacer.arrived(paced, arrived.records.length >= config.pageSize),
      // A request dropped unread must not surface as an unhandled rejection.
      () => this.pacer.stopped(paced),
    );
    this.inFlight.push({ url, page, abort });
  }
}
