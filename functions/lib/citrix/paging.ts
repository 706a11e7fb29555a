import { createHash } from "node:crypto";
import { MAX_RECENT_LINKED_URLS, type PageCursor } from "../config/contracts";
import { CitrixPagingError } from "../config/errors";
import type { CitrixClient } from "./citrix-client";
import type { PageRecords } from "./odata-page";

/** What PageWalker carries from one invocation to the next (fields of CollectProgress). */
export interface PagingState {
  cursor: PageCursor;
  largestPage: number;
  /** Pages received so far for the entity-hour, repeats included. */
  pages: number;
  lastPageDigest?: string;
  recentLinkedUrls?: string[];
}

/** One page as the walker judges it: where it came from, how many records, and their digest. */
export interface ReceivedPage {
  url: string;
  count: number;
  nextLink: string | undefined;
  digest: string;
}

/** Step Functions' quota on one state's input or output (the local engine enforces the same figure). */
const STATE_PAYLOAD_QUOTA_BYTES = 256 * 1024;

/**
 * The longest `@odata.nextLink` a cursor may carry, in bytes as the state's JSON holds it. A collect output
 * carries it once (and the next invocation's input, the same output, once). Every other payload of the
 * workflow, and the rest of a collect output, is held under half the quota (the execution-size test measures
 * the largest execution there is against that), so the cursor gets the other half: a link within it never
 * makes a state exceed the quota, and a longer one is refused by name before Step Functions sees it.
 */
export const MAX_CURSOR_BYTES = STATE_PAYLOAD_QUOTA_BYTES / 2;

/** What an operator can do about a server that ignores $skip and gives no links. */
const RAISE_TOP_N =
  "raise TOP_N (up to 10000) above the records of an hour so that each hour fits in one page, or report it to Citrix support";

/**
 * OData paging rules. With `@odata.nextLink` the server drives and the last page has none. Without it we
 * page by $skip and stop on an empty page, or on a short page once a longer one was seen: a service may
 * cap $top below TOP_N, so a first short page is not proof of the end (that costs one extra request), unless
 * the API is known to serve TOP_N records a page (`servedTop`, learned from an earlier entity-hour's full
 * page and shared in the page window's hint): then any short page is the end.
 *
 * Every step must make progress, or paging ends with a CitrixPagingError instead of looping: a page that
 * repeats the one before it (a server that ignores $skip, or a link that leads back), a link to the page
 * itself or to one of the last MAX_RECENT_LINKED_URLS pages, and, for anything else, `maxPages` per
 * entity-hour. The repeats that are a correct end come from a server that ignores $skip (it pages by its
 * own links) serving an hour that fits in one page, so it gave no link:
 * - the repeated page is short: it held fewer records than asked, so it is all there is;
 * - the repeated page is the full first page: asked once more at the same $skip for one record more than
 *   the page holds (`$top` = TOP_N + 1, "the probe"), the server serves the very same records and no link.
 *   An empty answer ends the hour too: that server honours $skip after all, and has nothing past TOP_N.
 *   Any other answer is a CitrixPagingError saying what the server did instead.
 * docs/citrix-api.md ("Services that page only by their own links") argues why neither loses a record nor loops.
 */
export class PageWalker {
  done = false;
  cursor: PageCursor;
  largestPage: number;
  pages: number;
  private lastPageDigest: string | undefined;
  private recentLinkedUrls: string[];

  constructor(
    private readonly pageSize: number,
    private readonly maxPages: number,
    state: PagingState = { cursor: { skip: 0 }, largestPage: 0, pages: 0 },
    /** The $top the API is known to serve in full (see the class comment); other figures are ignored. */
    private servedTop?: number,
  ) {
    this.cursor = state.cursor;
    this.largestPage = state.largestPage;
    this.pages = state.pages;
    this.lastPageDigest = state.lastPageDigest;
    this.recentLinkedUrls = state.recentLinkedUrls ?? [];
  }

  /** What the next invocation needs; the repeat checks' memory is dropped once the hour is done. */
  get state(): PagingState {
    const base = { cursor: this.cursor, largestPage: this.largestPage, pages: this.pages };
    if (this.done) return base;
    return {
      ...base,
      ...(this.lastPageDigest === undefined ? {} : { lastPageDigest: this.lastPageDigest }),
      ...(this.recentLinkedUrls.length === 0 ? {} : { recentLinkedUrls: this.recentLinkedUrls }),
    };
  }

  /** Learns `servedTop` (see the constructor) once it is known: before the page it may end at is read. */
  knowServedTop(servedTop: number | undefined): void {
    this.servedTop = servedTop;
  }

  /** Whether pages further ahead can be guessed: $skip paging, and a full page proved TOP_N is honoured. */
  guessesAhead(): boolean {
    return !this.done && !this.probing && "skip" in this.cursor && this.largestPage === this.pageSize;
  }

  /**
   * Whether the next request is the probe (see the class comment). Its cursor is marked $skip=0 after a page
   * was read (the probe itself asks at $skip=TOP_N), which nothing else leaves behind: $skip paging moves past every page with records, and an empty
   * page ends the hour. So the probe needs no field of its own in the state carried between invocations.
   */
  private get probing(): boolean {
    return !this.done && this.pages > 0 && "skip" in this.cursor && this.cursor.skip === 0;
  }

  /** The URL `ahead` pages after the next one, assuming full pages (see guessesAhead). */
  guessUrl(citrix: CitrixClient, entity: string, hourUtc: string, ahead: number): string {
    const skip = "skip" in this.cursor ? this.cursor.skip : 0;
    return citrix.pageUrl(entity, hourUtc, this.pageSize, skip + ahead * this.pageSize);
  }

  nextUrl(citrix: CitrixClient, entity: string, hourUtc: string): string {
    if ("nextLink" in this.cursor) return this.cursor.nextLink;
    if (this.probing) return citrix.pageUrl(entity, hourUtc, this.pageSize + 1, this.pageSize);
    return citrix.pageUrl(entity, hourUtc, this.pageSize, this.cursor.skip);
  }

  /**
   * Moves past a page. Returns whether its records are new (to be written); false only for pages that
   * repeat the hour's only page (the repeat, and the probe that serves it again). Throws CitrixPagingError when the API makes no progress.
   */
  advance(page: ReceivedPage): boolean {
    const following = "nextLink" in this.cursor;
    const probing = this.probing;
    const skip = "skip" in this.cursor ? this.cursor.skip : 0;
    const repeated = page.count > 0 && page.digest === this.lastPageDigest;
    this.pages++;
    this.lastPageDigest = page.digest;
    if (probing) return this.endProbe(page, repeated);
    if (repeated) {
      if (following) {
        throw new CitrixPagingError(
          `the API served the same ${page.count} records again at its own @odata.nextLink ${page.url}: its links make no progress; report it to Citrix support`,
        );
      }
      if (page.count < this.pageSize && !page.nextLink) {
        // The server ignores $skip and the hour fits in one page: that page is all there is.
        this.done = true;
        return false;
      }
      if (page.count === this.pageSize && !page.nextLink && skip === page.count) {
        // The full first page again, without a link: the probe tells an hour of exactly TOP_N records
        // from one the server cannot page.
        this.cursor = { skip: 0 };
        this.checkBound(page.url);
        return false;
      }
      throw new CitrixPagingError(
        `the API ignored $skip: ${page.url} ($skip=${skip}) returned the same ${page.count} records as $skip=${skip - page.count}, and it offers no @odata.nextLink to page by instead; ${RAISE_TOP_N}`,
      );
    }
    if (page.nextLink) this.follow(page.url, page.nextLink);
    else if (following) this.done = true;
    else {
      this.done = page.count === 0 || (page.count < this.pageSize && page.count < this.knownPageSize);
      this.cursor = { skip: skip + page.count };
    }
    this.largestPage = Math.max(this.largestPage, page.count);
    this.checkBound(page.url);
    return true;
  }

  /**
   * Ends the hour on the probe's answer, returning whether its records are new (an empty page's are, as in
   * advance), or names what the server did instead.
   */
  private endProbe(page: ReceivedPage, repeated: boolean): boolean {
    if ((repeated || page.count === 0) && !page.nextLink) {
      this.done = true;
      return !repeated;
    }
    const asked = `its full first page of ${this.pageSize} records came again at $skip=${this.pageSize} without an @odata.nextLink, and asked there for ${this.pageSize + 1} at ${page.url} it returned ${page.count} records${page.nextLink ? " and a link" : ""}`;
    throw new CitrixPagingError(
      page.count > this.pageSize || page.nextLink
        ? `the API ignores $skip: ${asked}, so the hour holds more records than one page and the API offers no way to page them; ${RAISE_TOP_N}`
        : `the API ignored $skip only once: ${asked}, not the first page again; a later run or a redrive collects the hour again from its start; if this persists, report it to Citrix support`,
    );
  }

  /** The most records a page of this API is known to hold: a shorter page is the end. */
  private get knownPageSize(): number {
    return this.servedTop === this.pageSize ? this.pageSize : this.largestPage;
  }

  private checkBound(url: string): void {
    if (!this.done && this.pages >= this.maxPages) {
      throw new CitrixPagingError(
        `${this.pages} pages of this entity-hour read without reaching its end (MAX_PAGES_PER_ENTITY_HOUR is ${this.maxPages}); the last was ${url}. If the hour really holds more than ${this.maxPages} × TOP_N records, raise MAX_PAGES_PER_ENTITY_HOUR or TOP_N; otherwise the API's paging makes no progress: report it to Citrix support`,
      );
    }
  }

  private follow(url: string, nextLink: string): void {
    const cursorBytes = Buffer.byteLength(JSON.stringify(nextLink));
    if (cursorBytes > MAX_CURSOR_BYTES) {
      throw new CitrixPagingError(
        `the API's @odata.nextLink from ${url} is ${cursorBytes} bytes long, over the ${MAX_CURSOR_BYTES} bytes a cursor may take of a Step Functions state (its quota is ${STATE_PAYLOAD_QUOTA_BYTES} bytes), so it cannot be carried to the next page: ${nextLink.slice(0, 200)}…; report it to Citrix support`,
      );
    }
    if (sameUrl(nextLink, url)) {
      throw new CitrixPagingError(
        `the API's @odata.nextLink points at the page itself: ${nextLink}; its paging makes no progress; report it to Citrix support`,
      );
    }
    const target = urlDigest(nextLink);
    if (this.recentLinkedUrls.includes(target)) {
      throw new CitrixPagingError(
        `the API's @odata.nextLink from ${url} cycles back to a page already read: ${nextLink}; its paging makes no progress; report it to Citrix support`,
      );
    }
    this.recentLinkedUrls = [...this.recentLinkedUrls, urlDigest(url)].slice(-MAX_RECENT_LINKED_URLS);
    this.cursor = { nextLink };
  }
}

/** A short digest of a page's records, to notice the same page served twice. */
export function pageDigest(records: PageRecords): string {
  const hash = createHash("sha256");
  for (const record of records) hash.update(record).update("\n");
  return hash.digest("base64url").slice(0, 22);
}

function urlDigest(url: string): string {
  return createHash("sha256").update(new URL(url).href).digest("base64url").slice(0, 22);
}

function sameUrl(a: string, b: string): boolean {
  return new URL(a).href === new URL(b).href;
}
