import type { PageWindowHint } from "../config/contracts";

/**
 * How many page requests one entity-hour keeps in flight, found while paging: the Citrix Analytics API
 * publishes no rate limit, and its limit is per customer, shared with every Map iteration running beside
 * this one (how they share it: planIterations). Pure arithmetic; the collector feeds it what happens to its
 * requests.
 *
 * - **Start:** four requests (FIRST_WINDOW), or this iteration's share of what the page window's hint says
 *   the API allows (startingWindow); each full page adds one (the window doubles per round trip), up to the
 *   ceiling (MAX_PAGES_IN_FLIGHT), until the API first pushes back. Only an iteration that knows nothing
 *   starts at four, and it runs alone (planIterations): against a limit of one request that costs three
 *   refusals once a day, and it saves two round trips of the ramp (at 200 ms per page, 50 pages take four
 *   instead of six).
 * - **Throttled (HTTP 429):** the window drops to the requests the API was still serving when it refused
 *   one: this entity-hour's share of the customer's limit at that moment, which becomes the known limit.
 *   Several refusals at once each take one more off, so an overshoot costs exactly the requests above the
 *   limit, and the window settles at the limit instead of halving below it (which would idle half of it).
 *   One refusal never takes more than half: a request the API counted a moment longer than we did is not
 *   a limit of one.
 * - **Alone and crowded:** a request refused with none other of its own in flight backs off as a failed one
 *   does. Twice in a row, the other iterations hold the whole limit: crowded, and the limit it shares is
 *   smaller than their number (customerLimit), so the next execution runs fewer of them at once.
 * - **Probing:** the API's limit may grow, so after `probeRounds` full windows at the limit (each counted
 *   as at least MIN_PROBE_WINDOW pages) the window tries one request more. A probe that holds for a full
 *   window keeps its gain and halves the wait before the next; a refused one doubles it (up to
 *   MAX_PROBE_ROUNDS), so refused probes stay few whatever the length of the hour. Room that an iteration
 *   leaves when it finishes goes to the others without probing (see runningIterations).
 * - **Failing or slowing down** (5xx, a timeout, a dropped connection, or a page slower than twice the
 *   fastest plus LATENCY_SLACK_MS): the window halves, at most once per window of pages, and grows back by
 *   one per full window. That is an unwell API, not a limit: the known limit stays.
 */
export interface PageWindowState {
  /** Requests allowed in flight. */
  size: number;
  /** The largest window the API served without throttling, once it throttled. */
  limit?: number;
  /** Full windows to wait at the limit before probing above it. */
  probeRounds?: number;
  /** Still doubling per round trip: nothing has pushed back yet. */
  growing?: true;
}

export interface CompletedPage {
  /** The page held TOP_N records: the API honours TOP_N, and there is more to read. */
  full: boolean;
  latencyMs: number;
}

/** How the API pushed back on a request. */
export type PushBack = "throttled" | "failed";

/** The window of an entity-hour that knows nothing of the API's limit. */
export const FIRST_WINDOW = 4;
export const FIRST_PROBE_ROUNDS = 32;
export const MAX_PROBE_ROUNDS = 256;
/**
 * Waiting to probe, a window counts as at least this many pages: at one request, 32 windows would make a
 * refused probe cost 3% of the requests; this way under 1% (128 pages), and a refused one doubles the wait.
 */
export const MIN_PROBE_WINDOW = 4;
/** Latency jitter that is not a busy API: event-loop delays, a slow token refresh, TLS. */
export const LATENCY_SLACK_MS = 100;

export class PageWindow {
  private size: number;
  private limit: number | undefined;
  private probeRounds: number;
  /** Whether the window still doubles per round trip (nothing pushed back yet). */
  private slowStart: boolean;
  /** Whether the last change was a probe that has not yet held for a full window. */
  private probing = false;
  /** Full pages since the window last changed: one window of them is one round trip. */
  private pagesAtSize = 0;
  /** Pages since the window last shrank (none yet: the first shrink may come at once). */
  private pagesSinceShrink = Number.POSITIVE_INFINITY;
  private fastestMs = Number.POSITIVE_INFINITY;
  /** Refusals in a row at one request with none other in flight. */
  private refusedAlone = 0;

  constructor(
    private readonly ceiling: number,
    state?: PageWindowState,
  ) {
    this.size = clamp(state?.size ?? FIRST_WINDOW, 1, ceiling);
    this.limit = state?.limit === undefined ? undefined : clamp(state.limit, 1, ceiling);
    this.probeRounds = clamp(state?.probeRounds ?? FIRST_PROBE_ROUNDS, 1, MAX_PROBE_ROUNDS);
    this.slowStart = state === undefined || state.growing === true;
  }

  /** Requests allowed in flight now. */
  get allowed(): number {
    return this.size;
  }

  get state(): PageWindowState {
    return {
      size: this.size,
      ...(this.limit === undefined ? {} : { limit: this.limit, probeRounds: this.probeRounds }),
      ...(this.slowStart ? { growing: true } : {}),
    };
  }

  /** A page came back. Only full pages grow the window: a short one ends the entity-hour. */
  completed(page: CompletedPage): void {
    this.pagesSinceShrink++;
    this.refusedAlone = 0;
    this.fastestMs = Math.min(this.fastestMs, page.latencyMs);
    if (page.latencyMs > 2 * this.fastestMs + LATENCY_SLACK_MS) {
      this.shrink();
      return;
    }
    if (!page.full) return;
    this.pagesAtSize++;
    if (this.slowStart) {
      this.resize(this.size + 1);
      return;
    }
    if (this.probing) {
      // A probe that held for a whole window: the API has room for it.
      if (this.pagesAtSize >= this.size) {
        this.probing = false;
        this.limit = this.size;
        this.probeRounds = Math.max(1, this.probeRounds / 2);
        this.pagesAtSize = 0;
      }
      return;
    }
    const limit = this.limit ?? this.ceiling;
    if (this.size < limit) {
      if (this.pagesAtSize >= this.size) this.resize(this.size + 1);
      return;
    }
    const probeAfter = this.probeRounds * Math.max(this.size, MIN_PROBE_WINDOW);
    if (this.pagesAtSize >= probeAfter && this.size < this.ceiling) {
      this.resize(this.size + 1);
      this.probing = true;
    }
  }

  /**
   * The API pushed back on one request; `accepted` is how many of this window's other requests it was
   * still serving then (not themselves pushed back). Returns whether the window is crowded: throttled twice
   * in a row at one request with none other in flight.
   */
  pushedBack(how: PushBack, accepted: number): boolean {
    this.slowStart = false;
    if (how === "failed") {
      this.shrink();
      return false;
    }
    if (this.probing) {
      this.probing = false;
      this.probeRounds = Math.min(MAX_PROBE_ROUNDS, this.probeRounds * 2);
    }
    // One refusal alone may be another iteration's brief probe; twice without a page between is a crowd.
    this.refusedAlone = this.size === 1 && accepted === 0 ? this.refusedAlone + 1 : 0;
    const crowded = this.refusedAlone >= 2;
    this.limit = Math.max(1, Math.min(this.size - 1, Math.max(accepted, Math.floor(this.size / 2))));
    this.resize(this.limit);
    this.pagesAtSize = 0;
    this.pagesSinceShrink = 0;
    return crowded;
  }

  /**
   * Fewer iterations share the customer's limit now (see runningIterations): this one's share grew to
   * `limit`, and the window grows by as much. Only a known limit grows: an unknown one is found by growing.
   */
  raiseLimit(limit: number): void {
    if (this.limit === undefined) return;
    const next = Math.max(this.limit, clamp(limit, 1, this.ceiling));
    this.resize(this.size + next - this.limit);
    this.limit = next;
  }

  private shrink(): void {
    this.slowStart = false;
    if (this.pagesSinceShrink < this.size) return;
    this.resize(Math.floor(this.size / 2));
    this.pagesSinceShrink = 0;
  }

  private resize(size: number): void {
    const next = clamp(size, 1, this.ceiling);
    if (next !== this.size) this.pagesAtSize = 0;
    this.size = next;
  }
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, Math.floor(value)));
}

/** An unthrottled hint is stored again after this long, so that it stays within its day (see the reader). */
export const HINT_REFRESH_MS = 12 * 3_600_000;

/**
 * The page window's hint once `learned` is added to `current`; undefined when storing it again would tell
 * nothing new. A limit the API enforced (throttled) outweighs any number it served: within its day it only
 * gets more cautious (smaller limit, longer wait between probes), since later iterations may run beside more
 * others than the one that learned it (a day later it is found afresh). Without one, the hint keeps the most
 * requests an entity-hour had served at once, stored again every HINT_REFRESH_MS to stay fresh.
 */
export function mergedHint(
  current: PageWindowHint | undefined,
  learned: PageWindowHint,
): PageWindowHint | undefined {
  if (!current || (learned.throttled && !current.throttled)) return learned;
  if (!learned.throttled) {
    if (current.throttled) return undefined;
    const due = Date.parse(learned.at) - Date.parse(current.at) >= HINT_REFRESH_MS;
    if (learned.limit <= current.limit && !due) return undefined;
    return { ...learned, limit: Math.max(learned.limit, current.limit) };
  }
  if (learned.limit >= current.limit && learned.probeRounds <= current.probeRounds) return undefined;
  return {
    limit: Math.min(learned.limit, current.limit),
    throttled: true,
    probeRounds: Math.max(learned.probeRounds, current.probeRounds),
    at: learned.at,
  };
}

/**
 * The page window's hint once an entity-hour adds what it `learned` of the limit (see mergedHint) and the
 * `servedTop` it saw the API serve in full, either optional; undefined when storing it would tell nothing new.
 * The served page size is kept whatever the limit's merge decides, and a newer one replaces it (TOP_N changed).
 */
export function learnedHint(
  current: PageWindowHint | undefined,
  learned: PageWindowHint | undefined,
  servedTop: number | undefined,
): PageWindowHint | undefined {
  const merged = learned === undefined ? undefined : mergedHint(current, learned);
  const top = servedTop ?? current?.servedTop;
  if (merged) return top === undefined ? merged : { ...merged, servedTop: top };
  if (current === undefined || top === current.servedTop) return undefined;
  return { ...current, servedTop: top };
}

/**
 * How many Map iterations run at once (the Map's MaxConcurrency), from the page window's hint. The
 * customer's limit is shared by all of them, so:
 * - with no hint (a first execution, or nothing learned in the past day), one at a time: the first finds the
 *   limit and those after it start from it, instead of every iteration overshooting it together;
 * - once the API throttled, at most its limit, so that each iteration's share is at least one request;
 * - otherwise MAP_MAX_CONCURRENCY.
 * Never more than there are items.
 */
export function planIterations(
  hint: PageWindowHint | undefined,
  mapMaxConcurrency: number,
  items: number,
): number {
  const wanted = !hint ? 1 : hint.throttled ? Math.min(mapMaxConcurrency, hint.limit) : mapMaxConcurrency;
  return Math.max(1, Math.min(wanted, items));
}

/** Where an iteration stands in its Map: its item's index, and how many items the Map has. */
export interface MapItem {
  index: number;
  inAll: number;
}

/**
 * The window an entity-hour starts with when `iterations` share the hint's limit: its share of a limit the
 * API enforced (known, so it stays there but for probes), else its share of what the API served, from which
 * it goes on doubling per round trip. `item` says whether it gets a request of the remainder (see shareOf).
 */
export function startingWindow(hint: PageWindowHint, iterations: number, item?: MapItem): PageWindowState {
  const share = shareOf(hint.limit, iterations, item);
  return hint.throttled
    ? { size: share, limit: share, probeRounds: hint.probeRounds }
    : { size: share, growing: true };
}

/**
 * The customer's limit, as one of `iterations` iterations that each hold an equal share sees it after a
 * refusal: its own new limit times their number; crowded (refused with nothing of its own in flight), fewer
 * requests than there are iterations.
 */
export function customerLimit(ownLimit: number, iterations: number, crowded: boolean): number {
  return Math.max(1, crowded ? iterations - 1 : ownLimit * iterations);
}

/**
 * One iteration's share of the customer's limit when `iterations` run side by side: at least a request. A
 * limit that does not divide evenly leaves a remainder, which goes to the first items, one request each, when
 * every item of the Map runs at once from the start (`item.inAll` ≤ `iterations`): their indices are then
 * exactly those running. When the Map has more items, the iterations running at once are not consecutive
 * items (the Map starts the next one as any finishes), so giving it by index could overshoot; then nobody
 * gets it, and it goes to the last iterations as the others finish (see runningIterations).
 */
export function shareOf(customerLimit: number, iterations: number, item?: MapItem): number {
  const share = Math.floor(customerLimit / iterations);
  const remainder = customerLimit - share * iterations;
  const first = item !== undefined && item.inAll <= iterations && item.index < remainder;
  return Math.max(1, share + (first ? 1 : 0));
}

/**
 * How many of an execution's `inAll` iterations still run side by side, at most `atOnce`, once `finished`
 * of them stored their result: the Map starts the next item whenever one finishes, so only its last items
 * leave room unused.
 */
export function runningIterations(atOnce: number, inAll: number, finished: number): number {
  return Math.max(1, Math.min(atOnce, inAll - finished));
}
