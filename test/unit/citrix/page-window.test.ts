import { describe, expect, it } from "vitest";
import {
  customerLimit,
  FIRST_PROBE_ROUNDS,
  FIRST_WINDOW,
  HINT_REFRESH_MS,
  LATENCY_SLACK_MS,
  learnedHint,
  MAX_PROBE_ROUNDS,
  MIN_PROBE_WINDOW,
  mergedHint,
  PageWindow,
  planIterations,
  runningIterations,
  shareOf,
  startingWindow,
} from "../../../functions/lib/citrix/page-window";
import type { PageWindowHint } from "../../../functions/lib/config/contracts";

const FULL = { full: true, latencyMs: 200 };

/** `pages` full pages at the usual latency. */
function pages(window: PageWindow, count: number, page = FULL): void {
  for (let i = 0; i < count; i++) window.completed(page);
}

/** A window that was throttled once at `limit + 1` requests while growing, so it knows `limit`. */
function settledAt(limit: number, ceiling = 16): PageWindow {
  const window = new PageWindow(ceiling, { size: limit + 1, growing: true });
  window.pushedBack("throttled", limit);
  expect(window.allowed).toBe(limit);
  return window;
}

describe("PageWindow", () => {
  it("starts with FIRST_WINDOW requests and adds one per full page", () => {
    const window = new PageWindow(16);
    expect(window.allowed).toBe(FIRST_WINDOW);
    expect(window.state).toEqual({ size: 4, growing: true });
    window.completed(FULL);
    expect(window.allowed).toBe(5);
    pages(window, 3);
    expect(window.allowed).toBe(8);
    pages(window, 100);
    expect(window.allowed).toBe(16);
    expect(window.state).toEqual({ size: 16, growing: true });
  });

  it("stays at one request with a ceiling of one (MAX_PAGES_IN_FLIGHT=1 is strictly serial)", () => {
    const window = new PageWindow(1);
    pages(window, 50);
    expect(window.allowed).toBe(1);
    window.pushedBack("throttled", 0);
    pages(window, 5000);
    expect(window.allowed).toBe(1);
  });

  it("grows only on full pages", () => {
    const window = new PageWindow(16);
    pages(window, 10, { full: false, latencyMs: 200 });
    expect(window.allowed).toBe(FIRST_WINDOW);
  });

  it("drops to the requests the API still served when it throttled, one fewer per further refusal", () => {
    const window = new PageWindow(16);
    pages(window, 8);
    expect(window.allowed).toBe(12);
    window.pushedBack("throttled", 7);
    expect(window.state).toMatchObject({ size: 7, limit: 7 });
    window.pushedBack("throttled", 6);
    expect(window.state).toMatchObject({ size: 6, limit: 6 });
    // One refusal takes at most half, never below one request, and never leaves as many as it had.
    window.pushedBack("throttled", 0);
    expect(window.allowed).toBe(3);
    window.pushedBack("throttled", 0);
    window.pushedBack("throttled", 0);
    expect(window.allowed).toBe(1);
    const full = settledAt(3);
    full.pushedBack("throttled", 10);
    expect(full.allowed).toBe(2);
  });

  it("probes one request above its limit only after probeRounds full windows of MIN_PROBE_WINDOW or more", () => {
    const window = settledAt(4);
    pages(window, FIRST_PROBE_ROUNDS * 4 - 1);
    expect(window.allowed).toBe(4);
    window.completed(FULL);
    expect(window.allowed).toBe(5);
    // At one request, each window counts as MIN_PROBE_WINDOW pages.
    const narrow = settledAt(1);
    pages(narrow, FIRST_PROBE_ROUNDS * MIN_PROBE_WINDOW - 1);
    expect(narrow.allowed).toBe(1);
    narrow.completed(FULL);
    expect(narrow.allowed).toBe(2);
  });

  it("keeps a probe that held for a window and probes again twice as soon", () => {
    const window = settledAt(7);
    pages(window, FIRST_PROBE_ROUNDS * 7);
    pages(window, 8);
    expect(window.state).toMatchObject({ size: 8, limit: 8, probeRounds: FIRST_PROBE_ROUNDS / 2 });
    pages(window, (FIRST_PROBE_ROUNDS / 2) * 8 - 1);
    expect(window.allowed).toBe(8);
    window.completed(FULL);
    expect(window.allowed).toBe(9);
  });

  it("does not probe past the ceiling", () => {
    const window = settledAt(4, 5);
    pages(window, FIRST_PROBE_ROUNDS * 4 + 5);
    expect(window.state).toEqual({ size: 5, limit: 5, probeRounds: FIRST_PROBE_ROUNDS / 2 });
    pages(window, 1000);
    expect(window.state).toEqual({ size: 5, limit: 5, probeRounds: FIRST_PROBE_ROUNDS / 2 });
  });

  it("keeps counting towards its next probe through a failure that cannot shrink it", () => {
    const window = new PageWindow(16, { size: 1 });
    window.pushedBack("throttled", 0);
    pages(window, FIRST_PROBE_ROUNDS * MIN_PROBE_WINDOW - 1);
    window.pushedBack("failed", 0);
    expect(window.allowed).toBe(1);
    window.completed(FULL);
    expect(window.allowed).toBe(2);
    expect(window.state).toEqual({ size: 2, limit: 1, probeRounds: FIRST_PROBE_ROUNDS });
  });

  it("waits twice as long after a refused probe, up to MAX_PROBE_ROUNDS", () => {
    const window = settledAt(4);
    let rounds = FIRST_PROBE_ROUNDS;
    for (let probe = 0; probe < 6; probe++) {
      pages(window, rounds * 4);
      expect(window.allowed).toBe(5);
      window.pushedBack("throttled", 4);
      rounds = Math.min(MAX_PROBE_ROUNDS, rounds * 2);
      expect(window.state).toMatchObject({ size: 4, limit: 4, probeRounds: rounds });
    }
    expect(rounds).toBe(MAX_PROBE_ROUNDS);
  });

  it("does not count a refusal it did not cause (another iteration grew) against its probes", () => {
    const window = settledAt(3);
    pages(window, 5);
    window.pushedBack("throttled", 2);
    expect(window.state).toMatchObject({ size: 2, limit: 2, probeRounds: FIRST_PROBE_ROUNDS });
  });

  it("is crowded when throttled twice in a row at one request with none other in flight", () => {
    const window = new PageWindow(16, { size: 1 });
    expect(window.pushedBack("throttled", 0)).toBe(false);
    expect(window.pushedBack("throttled", 0)).toBe(true);
    expect(window.state).toMatchObject({ size: 1, limit: 1 });
    // Refusals at more requests are not alone; the next two at one are.
    const fresh = new PageWindow(16);
    expect(fresh.pushedBack("throttled", 0)).toBe(false);
    expect(fresh.allowed).toBe(2);
    expect(fresh.pushedBack("throttled", 0)).toBe(false);
    expect(fresh.pushedBack("throttled", 0)).toBe(false);
    expect(fresh.pushedBack("throttled", 0)).toBe(true);
    // A page between two refusals: each alone may be another iteration's probe.
    const probed = new PageWindow(16, { size: 1 });
    probed.pushedBack("throttled", 0);
    probed.completed(FULL);
    expect(probed.pushedBack("throttled", 0)).toBe(false);
    const wide = settledAt(4);
    expect(wide.pushedBack("throttled", 0)).toBe(false);
    expect(wide.pushedBack("failed", 0)).toBe(false);
    // At one request, but others of its own (sent before it shrank) were still being served.
    const busy = new PageWindow(16, { size: 1 });
    busy.pushedBack("throttled", 2);
    expect(busy.pushedBack("throttled", 2)).toBe(false);
  });

  it("halves on failures, at most once per window of pages, and keeps the known limit", () => {
    const window = settledAt(8);
    // The throttle that taught it the limit was its shrink for this window.
    window.pushedBack("failed", 7);
    expect(window.allowed).toBe(8);
    pages(window, 8);
    window.pushedBack("failed", 7);
    expect(window.state).toMatchObject({ size: 4, limit: 8 });
    window.pushedBack("failed", 3);
    expect(window.allowed).toBe(4);
    pages(window, 4);
    expect(window.allowed).toBe(5);
    window.pushedBack("failed", 4);
    expect(window.allowed).toBe(5);
    window.completed(FULL);
    window.pushedBack("failed", 4);
    expect(window.allowed).toBe(2);
    // Grows back by one per full window, up to the limit.
    pages(window, 2);
    expect(window.allowed).toBe(3);
    pages(window, 3 + 4 + 5 + 6 + 7);
    expect(window.allowed).toBe(8);
  });

  it("leaves slow start on a failure and then grows by one per full window", () => {
    const window = new PageWindow(16);
    pages(window, 5);
    expect(window.allowed).toBe(9);
    window.pushedBack("failed", 7);
    expect(window.state).toEqual({ size: 4 });
    pages(window, 3);
    expect(window.allowed).toBe(4);
    window.completed(FULL);
    expect(window.allowed).toBe(5);
  });

  it("shrinks when a page is slower than twice the fastest plus the slack", () => {
    const window = new PageWindow(16);
    pages(window, 4);
    expect(window.allowed).toBe(8);
    window.completed({ full: true, latencyMs: 2 * 200 + LATENCY_SLACK_MS });
    expect(window.allowed).toBe(9);
    window.completed({ full: true, latencyMs: 2 * 200 + LATENCY_SLACK_MS + 1 });
    expect(window.allowed).toBe(4);
  });

  it("resumes from its state without starting slow again", () => {
    const before = settledAt(5);
    const after = new PageWindow(16, before.state);
    expect(after.state).toEqual(before.state);
    pages(after, 4);
    expect(after.allowed).toBe(5);
    const grown = new PageWindow(16, { size: 3 });
    pages(grown, 2);
    expect(grown.allowed).toBe(3);
    grown.completed(FULL);
    expect(grown.allowed).toBe(4);
    const growing = new PageWindow(16, { size: 3, growing: true });
    growing.completed(FULL);
    expect(growing.state).toEqual({ size: 4, growing: true });
    expect(new PageWindow(4, { size: 9, limit: 7, probeRounds: 10 ** 9 }).state).toEqual({
      size: 4,
      limit: 4,
      probeRounds: MAX_PROBE_ROUNDS,
    });
  });
});

describe("mergedHint", () => {
  const at = "2026-11-24T09:00:00.000Z";
  const earlier = "2026-11-24T08:00:00.000Z";
  const limited = { limit: 4, throttled: true, probeRounds: 32, at: earlier };
  const served = { limit: 8, throttled: false, probeRounds: FIRST_PROBE_ROUNDS, at: earlier };
  const learned = (fields: Partial<PageWindowHint>): PageWindowHint => ({ ...limited, at, ...fields });

  it("shares what was learned when nothing is shared yet", () => {
    expect(mergedHint(undefined, learned({ limit: 5 }))).toEqual(learned({ limit: 5 }));
    expect(mergedHint(undefined, { ...served, at })).toEqual({ ...served, at });
  });

  it("writes nothing when a throttled hint is already as cautious", () => {
    expect(mergedHint(limited, learned({}))).toBeUndefined();
    expect(mergedHint(limited, learned({ limit: 9, probeRounds: 16 }))).toBeUndefined();
  });

  it("takes the smaller limit and the longer probe wait, dated now", () => {
    expect(mergedHint(limited, learned({ limit: 3, probeRounds: 16 }))).toEqual(learned({ limit: 3 }));
    expect(mergedHint(limited, learned({ limit: 6, probeRounds: 64 }))).toEqual(learned({ probeRounds: 64 }));
  });

  it("lets a limit the API enforced outweigh anything it served", () => {
    expect(mergedHint(served, learned({ limit: 12 }))).toEqual(learned({ limit: 12 }));
    expect(mergedHint(limited, { ...served, limit: 2, at })).toBeUndefined();
    expect(mergedHint(limited, { ...served, limit: 20, at })).toBeUndefined();
  });

  it("keeps the most requests served at once, stored again only when more or due", () => {
    expect(mergedHint(served, { ...served, limit: 9, at })).toEqual({ ...served, limit: 9, at });
    expect(mergedHint(served, { ...served, limit: 8, at })).toBeUndefined();
    expect(mergedHint(served, { ...served, limit: 3, at })).toBeUndefined();
    const justDue = new Date(Date.parse(earlier) + HINT_REFRESH_MS).toISOString();
    const notYet = new Date(Date.parse(justDue) - 1).toISOString();
    expect(mergedHint(served, { ...served, limit: 3, at: notYet })).toBeUndefined();
    expect(mergedHint(served, { ...served, limit: 3, at: justDue })).toEqual({ ...served, at: justDue });
  });
});

describe("learnedHint", () => {
  const at = "2026-11-24T09:00:00.000Z";
  const earlier = "2026-11-24T08:00:00.000Z";
  const limited: PageWindowHint = { limit: 4, throttled: true, probeRounds: 32, at: earlier };
  const served: PageWindowHint = { limit: 8, throttled: false, probeRounds: FIRST_PROBE_ROUNDS, at };

  it("is mergedHint's answer when no page size is known or learned", () => {
    // Strictly: no servedTop key at all, not one that is undefined.
    expect(learnedHint(undefined, served, undefined)).toStrictEqual(served);
    expect(learnedHint(limited, { ...limited, limit: 3, at }, undefined)).toStrictEqual({
      ...limited,
      limit: 3,
      at,
    });
    expect(learnedHint(limited, served, undefined)).toBeUndefined();
    expect(learnedHint(undefined, undefined, undefined)).toBeUndefined();
  });

  it("adds a served page size to the limit learned with it", () => {
    expect(learnedHint(undefined, served, 1000)).toEqual({ ...served, servedTop: 1000 });
  });

  it("stores a newly learned page size in the current hint, keeping its limit and date", () => {
    expect(learnedHint(limited, undefined, 1000)).toEqual({ ...limited, servedTop: 1000 });
    expect(learnedHint({ ...limited, servedTop: 500 }, undefined, 1000)).toEqual({
      ...limited,
      servedTop: 1000,
    });
    expect(learnedHint(limited, served, 1000)).toEqual({ ...limited, servedTop: 1000 });
  });

  it("writes nothing when the page size is the one already stored and the limit tells nothing new", () => {
    expect(learnedHint({ ...limited, servedTop: 1000 }, undefined, 1000)).toBeUndefined();
    expect(learnedHint({ ...limited, servedTop: 1000 }, served, 1000)).toBeUndefined();
    expect(learnedHint({ ...limited, servedTop: 1000 }, undefined, undefined)).toBeUndefined();
  });

  it("keeps the stored page size when the limit's merge makes a new hint", () => {
    expect(learnedHint({ ...limited, servedTop: 1000 }, { ...limited, limit: 2, at }, undefined)).toEqual({
      ...limited,
      limit: 2,
      at,
      servedTop: 1000,
    });
  });

  it("has nothing to add a page size to without a current hint or a limit learned", () => {
    expect(learnedHint(undefined, undefined, 1000)).toBeUndefined();
  });

  it("writes nothing when neither a limit nor a page size was learned, and none is stored", () => {
    expect(learnedHint(limited, undefined, undefined)).toBeUndefined();
  });
});

describe("sharing the customer's limit", () => {
  const hint = (limit: number, throttled: boolean): PageWindowHint => ({
    limit,
    throttled,
    probeRounds: 64,
    at: "2026-11-24T08:00:00.000Z",
  });

  it("runs one iteration at a time until a hint says what the API allows", () => {
    expect(planIterations(undefined, 4, 6)).toBe(1);
    expect(planIterations(hint(32, false), 4, 6)).toBe(4);
    expect(planIterations(hint(2, false), 4, 6)).toBe(4);
    expect(planIterations(hint(3, true), 4, 6)).toBe(3);
    expect(planIterations(hint(8, true), 4, 6)).toBe(4);
    expect(planIterations(hint(1, true), 4, 6)).toBe(1);
    // Never more than there are items, never none.
    expect(planIterations(hint(8, true), 4, 2)).toBe(2);
    expect(planIterations(hint(32, false), 40, 0)).toBe(1);
  });

  it("starts each iteration at its share: held at an enforced limit, growing from one it served", () => {
    expect(startingWindow(hint(8, true), 3)).toEqual({ size: 2, limit: 2, probeRounds: 64 });
    expect(startingWindow(hint(2, true), 3)).toEqual({ size: 1, limit: 1, probeRounds: 64 });
    expect(startingWindow(hint(27, false), 4)).toEqual({ size: 6, growing: true });
    expect(startingWindow(hint(3, false), 4)).toEqual({ size: 1, growing: true });
  });

  it("gives each iteration at least one request of the limit", () => {
    expect(shareOf(9, 4)).toBe(2);
    expect(shareOf(8, 4)).toBe(2);
    expect(shareOf(3, 4)).toBe(1);
    expect(shareOf(1, 1)).toBe(1);
  });

  it("gives the remainder of the limit to the first items, one request each, when every item runs at once", () => {
    const shares = (limit: number, items: number) =>
      Array.from({ length: items }, (_, index) => shareOf(limit, items, { index, inAll: items }));
    expect(shares(8, 3)).toEqual([3, 3, 2]);
    expect(shares(5, 2)).toEqual([3, 2]);
    expect(shares(6, 3)).toEqual([2, 2, 2]);
    // Together they hold the whole limit, never more, whatever the limit and the number of items.
    for (let limit = 1; limit <= 24; limit++) {
      for (let items = 1; items <= limit; items++) {
        expect(shares(limit, items).reduce((sum, share) => sum + share, 0)).toBe(limit);
      }
    }
    // More items than run at once: those running are not the first ones, so nobody gets it.
    expect(shareOf(8, 3, { index: 0, inAll: 4 })).toBe(2);
    expect(shareOf(8, 3, { index: 0, inAll: 3 })).toBe(3);
    expect(startingWindow(hint(8, true), 3, { index: 1, inAll: 3 })).toEqual({
      size: 3,
      limit: 3,
      probeRounds: 64,
    });
    expect(startingWindow(hint(8, true), 3, { index: 2, inAll: 3 })).toMatchObject({ size: 2, limit: 2 });
  });

  it("counts the iterations still running: fewer only once fewer items are left than run at once", () => {
    expect(runningIterations(4, 10, 0)).toBe(4);
    expect(runningIterations(4, 10, 6)).toBe(4);
    expect(runningIterations(4, 10, 7)).toBe(3);
    expect(runningIterations(4, 10, 9)).toBe(1);
    expect(runningIterations(4, 10, 10)).toBe(1);
  });

  it("raises a known limit to a larger share, the window by as much, up to the ceiling", () => {
    const window = new PageWindow(8, { size: 2, limit: 2, probeRounds: 64 });
    window.raiseLimit(2);
    window.raiseLimit(1);
    expect(window.state).toEqual({ size: 2, limit: 2, probeRounds: 64 });
    window.raiseLimit(5);
    expect(window.state).toEqual({ size: 5, limit: 5, probeRounds: 64 });
    // Shrunk by a failure below its limit, it keeps the difference.
    const shrunk = new PageWindow(8, { size: 1, limit: 2, probeRounds: 64 });
    shrunk.raiseLimit(20);
    expect(shrunk.state).toEqual({ size: 7, limit: 8, probeRounds: 64 });
    // A limit not yet known is found by growing, not raised.
    const growing = new PageWindow(8, { size: 2, growing: true });
    growing.raiseLimit(6);
    expect(growing.state).toEqual({ size: 2, growing: true });
  });

  it("counts a refusal against the whole customer: every iteration's share, or fewer than them when crowded", () => {
    expect(customerLimit(3, 1, false)).toBe(3);
    expect(customerLimit(2, 4, false)).toBe(8);
    expect(customerLimit(1, 4, true)).toBe(3);
    expect(customerLimit(1, 1, true)).toBe(1);
  });
});
