import { describe, expect, it } from "vitest";
import { CitrixClient, parseRetryAfter } from "../../../functions/lib/citrix/citrix-client";
import { readODataPage } from "../../../functions/lib/citrix/odata-page";
import {
  MAX_CURSOR_BYTES,
  PageWalker,
  type PagingState,
  pageDigest,
} from "../../../functions/lib/citrix/paging";
import {
  collectProgressSchema,
  MAX_RECENT_LINKED_URLS,
  type PageCursor,
} from "../../../functions/lib/config/contracts";
import { CitrixPagingError } from "../../../functions/lib/config/errors";

const HOUR = "2026-11-24T08:00:00Z";
const client = new CitrixClient({
  credentials: {
    origin: "test credentials",
    get: async () => ({ customerId: "c", clientId: "i", clientSecret: "s" }),
    forget: () => undefined,
  },
  apiBase: "https://api.cloud.com/casodata",
  tokenUrl: undefined,
  timeoutMs: 1000,
});
const url = (skip: number, top = 100) =>
  `https://api.cloud.com/casodata/sessions?year=2026&month=11&day=24&hour=08&$top=${top}&$skip=${skip}`;

interface FakePage {
  count: number;
  nextLink?: string;
  /** The digest of the page's records; by default each page has records of its own. */
  digest?: string;
}

/**
 * Drives a PageWalker against a scripted server the way collectEntityHour does; fails if the walker asks
 * for more pages than the script has. Returns the URLs requested, whether each page's records were kept,
 * and the walker's state after each page.
 */
function walk(
  pageSize: number,
  pages: FakePage[],
  start: PageCursor | PagingState = { skip: 0 },
  maxPages = 100_000,
  servedTop?: number,
) {
  const walker = new PageWalker(
    pageSize,
    maxPages,
    "cursor" in start ? start : { cursor: start, largestPage: 0, pages: 0 },
    servedTop,
  );
  const requested: string[] = [];
  const kept: boolean[] = [];
  const doneAfter: boolean[] = [];
  const cursors: PageCursor[] = [];
  while (!walker.done) {
    const page = pages[requested.length];
    if (page === undefined)
      throw new Error(`walker asked for page ${requested.length + 1} of ${pages.length}`);
    const url = walker.nextUrl(client, "sessions", HOUR);
    requested.push(url);
    const digest = page.digest ?? `page ${requested.length}`;
    kept.push(walker.advance({ url, count: page.count, nextLink: page.nextLink, digest }));
    doneAfter.push(walker.done);
    cursors.push(walker.cursor);
  }
  return { requested, kept, doneAfter, cursors, walker };
}

/** Advances a walker over pages one invocation received, from a handed-over state; returns the next state. */
function oneInvocation(start: PagingState, pages: FakePage[]): PagingState {
  const walker = new PageWalker(100, 100_000, start);
  pages.forEach((page, n) => {
    const url = walker.nextUrl(client, "sessions", HOUR);
    walker.advance({
      url,
      count: page.count,
      nextLink: page.nextLink,
      digest: page.digest ?? `page ${n + 1}`,
    });
  });
  expect(walker.done).toBe(false);
  return walker.state;
}

const FIRST: PagingState = { cursor: { skip: 0 }, largestPage: 0, pages: 0 };

/** The CitrixPagingError a walk ends with. */
function pagingError(run: () => unknown): CitrixPagingError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(CitrixPagingError);
    return error as CitrixPagingError;
  }
  throw new Error("the walk ended without a CitrixPagingError");
}

describe("CitrixClient.pageUrl via PageWalker.nextUrl", () => {
  it("builds the SPEC's first-page URL exactly", () => {
    const walker = new PageWalker(100, 10, { cursor: { skip: 0 }, largestPage: 0, pages: 0 });
    expect(walker.nextUrl(client, "sessions", HOUR)).toBe(
      "https://api.cloud.com/casodata/sessions?year=2026&month=11&day=24&hour=08&$top=100&$skip=0",
    );
  });

  it("zero-pads the date parts and resumes at a saved $skip", () => {
    const walker = new PageWalker(1000, 10, { cursor: { skip: 2000 }, largestPage: 1000, pages: 2 });
    expect(walker.nextUrl(client, "machines", "2027-01-05T03:00:00Z")).toBe(
      "https://api.cloud.com/casodata/machines?year=2027&month=01&day=05&hour=03&$top=1000&$skip=2000",
    );
  });

  it("returns a saved nextLink as is", () => {
    const link = "https://api.cloud.com/casodata/sessions?$skiptoken=abc";
    const walker = new PageWalker(100, 10, { cursor: { nextLink: link }, largestPage: 100, pages: 1 });
    expect(walker.nextUrl(client, "sessions", HOUR)).toBe(link);
  });
});

describe("PageWalker with $skip paging (pageSize 100)", () => {
  it("stops after a short page that follows full pages: 100, 100, 37", () => {
    const { requested, doneAfter, cursors } = walk(100, [{ count: 100 }, { count: 100 }, { count: 37 }]);
    expect(requested).toEqual([url(0), url(100), url(200)]);
    expect(doneAfter).toEqual([false, false, true]);
    expect(cursors).toEqual([{ skip: 100 }, { skip: 200 }, { skip: 237 }]);
  });

  it("stops on an empty page after full pages: 100, 0", () => {
    const { requested, doneAfter, cursors } = walk(100, [{ count: 100 }, { count: 0 }]);
    expect(requested).toEqual([url(0), url(100)]);
    expect(doneAfter).toEqual([false, true]);
    expect(cursors.at(-1)).toEqual({ skip: 100 });
  });

  it("stops at once on an empty first page", () => {
    const { requested, cursors } = walk(100, [{ count: 0 }]);
    expect(requested).toEqual([url(0)]);
    expect(cursors).toEqual([{ skip: 0 }]);
  });

  it("asks once more after a short first page (40) and stops on the empty page", () => {
    const { requested, doneAfter, cursors } = walk(100, [{ count: 40 }, { count: 0 }]);
    expect(requested).toEqual([url(0), url(40)]);
    expect(doneAfter).toEqual([false, true]);
    expect(cursors).toEqual([{ skip: 40 }, { skip: 40 }]);
  });

  it("reads everything from a server that caps $top at 50: 50, 50, 50, 12", () => {
    const { requested, doneAfter, cursors } = walk(100, [
      { count: 50 },
      { count: 50 },
      { count: 50 },
      { count: 12 },
    ]);
    expect(requested).toEqual([url(0), url(50), url(100), url(150)]);
    expect(doneAfter).toEqual([false, false, false, true]);
    expect(cursors.at(-1)).toEqual({ skip: 162 });
  });

  it("reads everything from a capped server whose total is a multiple of the cap: 50, 50, 0", () => {
    const { requested, cursors } = walk(100, [{ count: 50 }, { count: 50 }, { count: 0 }]);
    expect(requested).toEqual([url(0), url(50), url(100)]);
    expect(cursors.at(-1)).toEqual({ skip: 100 });
  });

  it("reads on past pages longer than asked (a server that ignores $top): 150, 120, 0", () => {
    for (const servedTop of [undefined, 100]) {
      const { requested, cursors } = walk(
        100,
        [{ count: 150 }, { count: 120 }, { count: 0 }],
        { skip: 0 },
        100_000,
        servedTop,
      );
      expect(requested).toEqual([url(0), url(150), url(270)]);
      expect(cursors.at(-1)).toEqual({ skip: 270 });
    }
  });

  it("reads on past a full page after a longer one: 150, 100, 0", () => {
    expect(walk(100, [{ count: 150 }, { count: 100 }, { count: 0 }]).requested).toHaveLength(3);
  });

  it("ends at a short first page when the API is known to serve TOP_N a page (servedTop): one request, not two", () => {
    const { requested, doneAfter, cursors, walker } = walk(100, [{ count: 40 }], { skip: 0 }, 100_000, 100);
    expect(requested).toEqual([url(0)]);
    expect(doneAfter).toEqual([true]);
    expect(cursors).toEqual([{ skip: 40 }]);
    expect(walker.state.largestPage).toBe(40);
  });

  it("ends at a short page after full ones with servedTop, and still needs the empty page after a full last one", () => {
    expect(walk(100, [{ count: 100 }, { count: 99 }], { skip: 0 }, 100_000, 100).requested).toHaveLength(2);
    expect(walk(100, [{ count: 100 }, { count: 0 }], { skip: 0 }, 100_000, 100).requested).toHaveLength(2);
  });

  it("ignores a servedTop learned at another TOP_N: a short first page is no proof then", () => {
    for (const servedTop of [50, 99, 101, 1000]) {
      const { requested } = walk(100, [{ count: 40 }, { count: 0 }], { skip: 0 }, 100_000, servedTop);
      expect(requested).toEqual([url(0), url(40)]);
    }
  });

  it("takes servedTop for the end rule only: no page is guessed ahead before this hour served a full page", () => {
    const walker = new PageWalker(100, 100_000, { cursor: { skip: 0 }, largestPage: 0, pages: 0 }, 100);
    expect(walker.guessesAhead()).toBe(false);
    walker.advance({ url: url(0), count: 100, nextLink: undefined, digest: "a" });
    expect(walker.guessesAhead()).toBe(true);
  });

  it("learns servedTop after it was made (the hint arrives after the first request went out)", () => {
    const told = new PageWalker(100, 100_000);
    told.knowServedTop(100);
    told.advance({ url: url(0), count: 30, nextLink: undefined, digest: "a" });
    expect(told.done).toBe(true);
    const untold = new PageWalker(100, 100_000);
    untold.knowServedTop(undefined);
    untold.advance({ url: url(0), count: 30, nextLink: undefined, digest: "a" });
    expect(untold.done).toBe(false);
  });

  it("resumed from a saved cursor, still reads to the end without repeating", () => {
    const { requested, cursors } = walk(100, [{ count: 37 }, { count: 0 }], { skip: 200 });
    expect(requested[0]).toBe(url(200));
    expect(requested.every((u) => !u.endsWith("$skip=0") && !u.endsWith("$skip=100"))).toBe(true);
    expect(cursors.at(-1)).toEqual({ skip: 237 });
  });
});

describe("PageWalker with @odata.nextLink", () => {
  const link1 = "https://api.cloud.com/casodata/sessions?$skiptoken=p2";
  const link2 = "https://api.cloud.com/casodata/sessions?$skiptoken=p3";

  it("follows the links and is done on the first page without one", () => {
    const { requested, doneAfter, cursors } = walk(100, [
      { count: 100, nextLink: link1 },
      { count: 100, nextLink: link2 },
      { count: 100 },
    ]);
    expect(requested).toEqual([url(0), link1, link2]);
    expect(doneAfter).toEqual([false, false, true]);
    expect(cursors.slice(0, 2)).toEqual([{ nextLink: link1 }, { nextLink: link2 }]);
  });

  it("follows a link even after a short or empty page", () => {
    const { requested, doneAfter } = walk(100, [
      { count: 3, nextLink: link1 },
      { count: 0, nextLink: link2 },
      { count: 5 },
    ]);
    expect(requested).toEqual([url(0), link1, link2]);
    expect(doneAfter).toEqual([false, false, true]);
  });

  it("resumes from a saved nextLink cursor", () => {
    const { requested, doneAfter } = walk(100, [{ count: 100 }], { nextLink: link2 });
    expect(requested).toEqual([link2]);
    expect(doneAfter).toEqual([true]);
  });
});

describe("PageWalker against a server that ignores $skip", () => {
  it("takes a repeated short page as the hour's only page: kept once, repeat dropped, done", () => {
    const { requested, kept, doneAfter, cursors, walker } = walk(100, [
      { count: 40, digest: "page one" },
      { count: 40, digest: "page one" },
    ]);
    expect(requested).toEqual([url(0), url(40)]);
    expect(kept).toEqual([true, false]);
    expect(doneAfter).toEqual([false, true]);
    expect(cursors.at(-1)).toEqual({ skip: 40 });
    expect(walker.pages).toBe(2);
  });

  it("ends an hour of exactly one full page once the probe ($top = TOP_N + 1) serves that page again without a link", () => {
    const { requested, kept, doneAfter, walker } = walk(100, [
      { count: 100, digest: "page one" },
      { count: 100, digest: "page one" },
      { count: 100, digest: "page one" },
    ]);
    expect(requested).toEqual([url(0), url(100), url(100, 101)]);
    expect(kept).toEqual([true, false, false]);
    expect(doneAfter).toEqual([false, false, true]);
    expect(walker.pages).toBe(3);
  });

  it("asks the probe alone: no pages are guessed ahead while it is due", () => {
    const walker = new PageWalker(100, 100_000, FIRST);
    walker.advance({ url: url(0), count: 100, nextLink: undefined, digest: "page one" });
    expect(walker.guessesAhead()).toBe(true);
    walker.advance({ url: url(100), count: 100, nextLink: undefined, digest: "page one" });
    expect(walker.guessesAhead()).toBe(false);
    expect(walker.nextUrl(client, "sessions", HOUR)).toBe(url(100, 101));
  });

  it("carries a due probe to the next invocation in the contract's fields, and asks it there", () => {
    const handedOver = oneInvocation(FIRST, [
      { count: 100, digest: "page one" },
      { count: 100, digest: "page one" },
    ]);
    const progress = { ...handedOver, segments: [], parts: 0, records: 100, invocations: 1 };
    expect(collectProgressSchema.parse(progress)).toEqual(progress);
    const { requested, kept, doneAfter } = walk(100, [{ count: 100, digest: "page one" }], handedOver);
    expect(requested).toEqual([url(100, 101)]);
    expect(kept).toEqual([false]);
    expect(doneAfter).toEqual([true]);
  });

  it("fails when the probe returns more than a page: a server that ignores $skip and gives no links", () => {
    const error = pagingError(() =>
      walk(100, [
        { count: 100, digest: "page one" },
        { count: 100, digest: "page one" },
        { count: 101, digest: "page one and one more" },
      ]),
    );
    expect(error.message).toContain(
      `the API ignores $skip: its full first page of 100 records came again at $skip=100 without an @odata.nextLink, and asked there for 101 at ${url(100, 101)} it returned 101 records, so the hour holds more records than one page`,
    );
    expect(error.message).toContain("raise TOP_N");
    expect(error.retryable).toBe(false);
  });

  it("fails when the probe's page has a link, even with the same records", () => {
    const error = pagingError(() =>
      walk(100, [
        { count: 100, digest: "page one" },
        { count: 100, digest: "page one" },
        { count: 100, digest: "page one", nextLink: "https://api.cloud.com/casodata/sessions?$skiptoken=p2" },
      ]),
    );
    expect(error.message).toContain(
      "it returned 100 records and a link, so the hour holds more records than one page",
    );
  });

  it("fails when the probe returns other records: a server that honours $skip, but ignored it once", () => {
    const error = pagingError(() =>
      walk(100, [
        { count: 100, digest: "page one" },
        { count: 100, digest: "page one" },
        { count: 100, digest: "page two" },
      ]),
    );
    expect(error.message).toContain(
      `the API ignored $skip only once: its full first page of 100 records came again at $skip=100 without an @odata.nextLink, and asked there for 101 at ${url(100, 101)} it returned 100 records, not the first page again`,
    );
    expect(error.message).toContain("a later run or a redrive collects the hour again");
  });

  it("ends the hour on an empty probe: a server that honours $skip, ignored it once, and has nothing past TOP_N", () => {
    const { requested, kept, doneAfter } = walk(100, [
      { count: 100, digest: "page one" },
      { count: 100, digest: "page one" },
      { count: 0, digest: "empty" },
    ]);
    expect(requested).toEqual([url(0), url(100), url(100, 101)]);
    expect(kept).toEqual([true, false, true]);
    expect(doneAfter).toEqual([false, false, true]);
  });

  it("fails on an empty probe that carries a link", () => {
    const error = pagingError(() =>
      walk(100, [
        { count: 100, digest: "page one" },
        { count: 100, digest: "page one" },
        { count: 0, digest: "empty", nextLink: "https://api.cloud.com/casodata/sessions?$skiptoken=p2" },
      ]),
    );
    expect(error.message).toContain(
      "it returned 0 records and a link, so the hour holds more records than one page",
    );
  });

  it("probes only for the first page: a full page repeated after pages that progressed is an ignored $skip", () => {
    const error = pagingError(() =>
      walk(100, [{ count: 100 }, { count: 100, digest: "page two" }, { count: 100, digest: "page two" }]),
    );
    expect(error.message).toContain(`${url(200)} ($skip=200) returned the same 100 records as $skip=100`);
    expect(error.message).toContain("raise TOP_N");
  });

  it("probes only without a link: the same full page again with a link is an ignored $skip", () => {
    const error = pagingError(() =>
      walk(100, [
        { count: 100, digest: "page one" },
        { count: 100, digest: "page one", nextLink: "https://api.cloud.com/casodata/sessions?$skiptoken=p2" },
      ]),
    );
    expect(error.message).toContain(
      `the API ignored $skip: ${url(100)} ($skip=100) returned the same 100 records as $skip=0`,
    );
  });

  it("does not take two empty pages for a repeat (an empty page ends $skip paging anyway)", () => {
    const { kept, doneAfter } = walk(100, [{ count: 0, digest: "empty" }]);
    expect(kept).toEqual([true]);
    expect(doneAfter).toEqual([true]);
  });

  it("notices the repeat across invocations: the previous page's digest rides in the state", () => {
    const handedOver = oneInvocation(FIRST, [{ count: 40, digest: "page one" }]);
    expect(handedOver.lastPageDigest).toBe("page one");
    const { requested, kept, doneAfter } = walk(100, [{ count: 40, digest: "page one" }], handedOver);
    expect(requested).toEqual([url(40)]);
    expect(kept).toEqual([false]);
    expect(doneAfter).toEqual([true]);
  });
});

describe("PageWalker against links that make no progress", () => {
  const link1 = "https://api.cloud.com/casodata/sessions?$skiptoken=p2";
  const link2 = "https://api.cloud.com/casodata/sessions?$skiptoken=p3";

  it("fails on a nextLink that points at the first page itself", () => {
    const error = pagingError(() => walk(100, [{ count: 100, nextLink: url(0) }]));
    expect(error.message).toBe(
      `the API's @odata.nextLink points at the page itself: ${url(0)}; its paging makes no progress; report it to Citrix support`,
    );
  });

  it("fails on a followed link that points at itself", () => {
    const error = pagingError(() =>
      walk(100, [
        { count: 100, nextLink: link1 },
        { count: 100, nextLink: link1 },
      ]),
    );
    expect(error.message).toContain(`points at the page itself: ${link1}`);
  });

  it.each([
    [
      "back to the first ($skip) page",
      [
        { count: 100, nextLink: link1 },
        { count: 100, nextLink: url(0) },
      ],
      url(0),
    ],
    [
      "in a cycle of two links",
      [
        { count: 100, nextLink: link1 },
        { count: 100, nextLink: link2 },
        { count: 100, nextLink: link1 },
      ],
      link1,
    ],
  ])("fails on a link %s, naming it", (_what, pages, link) => {
    const error = pagingError(() => walk(100, pages));
    expect(error.message).toContain("cycles back to a page already read");
    expect(error.message).toContain(link);
  });

  it("fails on a page identical to the previous one while following links", () => {
    const error = pagingError(() =>
      walk(100, [
        { count: 100, nextLink: link1, digest: "same" },
        { count: 100, nextLink: link2, digest: "same" },
      ]),
    );
    expect(error.message).toContain(`the same 100 records again at its own @odata.nextLink ${link1}`);
  });

  it("follows empty pages whose links move on (no records, nothing repeated)", () => {
    const { requested, doneAfter } = walk(100, [
      { count: 0, nextLink: link1, digest: "empty" },
      { count: 0, nextLink: link2, digest: "empty" },
      { count: 5 },
    ]);
    expect(requested).toEqual([url(0), link1, link2]);
    expect(doneAfter).toEqual([false, false, true]);
  });

  it("notices a cycle across invocations: the recent links ride in the state, and pass the contract", () => {
    const handedOver = oneInvocation(FIRST, [{ count: 100, nextLink: link1 }]);
    expect(handedOver.recentLinkedUrls).toHaveLength(1);
    const progress = { ...handedOver, segments: [], parts: 0, records: 100, invocations: 1 };
    expect(collectProgressSchema.parse(progress)).toEqual(progress);
    const error = pagingError(() =>
      walk(100, [{ count: 100, nextLink: url(0), digest: "page two" }], handedOver),
    );
    expect(error.message).toContain(`cycles back to a page already read: ${url(0)}`);
  });

  it(`remembers the last ${MAX_RECENT_LINKED_URLS} linked pages, no more`, () => {
    const link = (n: number) => `https://api.cloud.com/casodata/sessions?$skiptoken=${n}`;
    const chain = Array.from({ length: 40 }, (_, n) => ({ count: 100, nextLink: link(n + 1) }));
    const state = oneInvocation(FIRST, chain);
    expect(state.recentLinkedUrls).toHaveLength(MAX_RECENT_LINKED_URLS);
    // The cursor is link(40); the pages at link(8)..link(39) are remembered, the first page and link(1..7) not.
    expect(pagingError(() => walk(100, [{ count: 100, nextLink: link(8) }], state)).message).toContain(
      "cycles back",
    );
    expect(walk(100, [{ count: 100, nextLink: link(7) }, { count: 1 }], state).doneAfter).toEqual([
      false,
      true,
    ]);
  });

  it("forgets the repeat checks' memory once the hour is done", () => {
    const { walker } = walk(100, [{ count: 100, nextLink: link1 }, { count: 7 }]);
    expect(walker.state).toEqual({ cursor: { nextLink: link1 }, largestPage: 100, pages: 2 });
  });
});

describe(`PageWalker's cursor bound (MAX_CURSOR_BYTES, ${MAX_CURSOR_BYTES})`, () => {
  const base = "https://api.cloud.com/casodata/sessions?$skiptoken=";
  /** A link whose JSON, quotes included, is `bytes` long. */
  const linkOf = (bytes: number) => `${base}${"a".repeat(bytes - 2 - base.length)}`;

  it("follows a link that fills the bound exactly", () => {
    const link = linkOf(MAX_CURSOR_BYTES);
    const { requested, doneAfter } = walk(100, [{ count: 100, nextLink: link }, { count: 1 }]);
    expect(requested).toEqual([url(0), link]);
    expect(doneAfter).toEqual([false, true]);
  });

  it("fails on a link one byte over, naming its length, the bound and the quota, and quoting only its start", () => {
    const link = linkOf(MAX_CURSOR_BYTES + 1);
    const error = pagingError(() => walk(100, [{ count: 100, nextLink: link }]));
    expect(error.message).toContain(
      `the API's @odata.nextLink from ${url(0)} is ${MAX_CURSOR_BYTES + 1} bytes long, over the ${MAX_CURSOR_BYTES} bytes a cursor may take of a Step Functions state (its quota is 262144 bytes)`,
    );
    expect(error.message).toContain(`${link.slice(0, 200)}…`);
    expect(error.message.length).toBeLessThan(1000);
    expect(error.retryable).toBe(false);
  });

  it("measures the link as the state's JSON holds it: a backslash (kept by URL parsing) counts twice", () => {
    const backslashes = Math.ceil((MAX_CURSOR_BYTES - base.length) / 2);
    const link = `${base}${"\\".repeat(backslashes)}`;
    expect(link.length).toBeLessThan(MAX_CURSOR_BYTES);
    expect(pagingError(() => walk(100, [{ count: 100, nextLink: link }])).message).toContain(
      `is ${2 + base.length + 2 * backslashes} bytes long`,
    );
  });
});

describe("PageWalker's page bound (MAX_PAGES_PER_ENTITY_HOUR)", () => {
  it("finishes an hour whose last page is the bound's", () => {
    const { doneAfter } = walk(100, [{ count: 100 }, { count: 100 }, { count: 37 }], { skip: 0 }, 3);
    expect(doneAfter).toEqual([false, false, true]);
  });

  it("fails when the bound is reached before the end, counting pages of earlier invocations", () => {
    const state: PagingState = { cursor: { skip: 200 }, largestPage: 100, pages: 2 };
    const error = pagingError(() => walk(100, [{ count: 100 }, { count: 100 }], state, 3));
    expect(error.message).toContain(
      "3 pages of this entity-hour read without reaching its end (MAX_PAGES_PER_ENTITY_HOUR is 3)",
    );
    expect(error.message).toContain(url(200));
  });

  it("counts the repeat and the probe against the bound", () => {
    const onePage = [
      { count: 100, digest: "page one" },
      { count: 100, digest: "page one" },
      { count: 100, digest: "page one" },
    ];
    expect(walk(100, onePage, { skip: 0 }, 3).doneAfter).toEqual([false, false, true]);
    expect(pagingError(() => walk(100, onePage, { skip: 0 }, 2)).message).toContain(
      `2 pages of this entity-hour read without reaching its end (MAX_PAGES_PER_ENTITY_HOUR is 2); the last was ${url(100)}`,
    );
  });

  it("bounds links that never repeat", () => {
    const pages = Array.from({ length: 10 }, (_, n) => ({
      count: 100,
      nextLink: `https://api.cloud.com/casodata/sessions?$skiptoken=${n}`,
    }));
    expect(pagingError(() => walk(100, pages, { skip: 0 }, 5)).message).toContain(
      "MAX_PAGES_PER_ENTITY_HOUR",
    );
  });
});

describe("pageDigest", () => {
  const digest = (body: string) => pageDigest(readODataPage(Buffer.from(body)).records);

  it("is the same for the same records, whatever else the page says", () => {
    expect(digest('{"value":[{"a":1},{"b":2}]}')).toBe(
      digest('{"@odata.context":"x","value":[{"a":1},{"b":2}],"@odata.nextLink":"https://h/n"}'),
    );
  });

  it("differs when a record differs, or records are split differently", () => {
    const one = digest('{"value":[{"a":1},{"b":2}]}');
    expect(digest('{"value":[{"a":1},{"b":3}]}')).not.toBe(one);
    expect(digest('{"value":[{"a":1}]}')).not.toBe(one);
    expect(digest('{"value":[]}')).not.toBe(one);
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2015-10-21T07:27:30Z");

  it("reads delay-seconds as milliseconds", () => {
    expect(parseRetryAfter("2", now)).toBe(2000);
    expect(parseRetryAfter("0", now)).toBe(0);
    expect(parseRetryAfter(" 120 ", now)).toBe(120_000);
  });

  it("reads an HTTP-date relative to now", () => {
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now)).toBe(30_000);
  });

  it("clamps a date in the past to 0", () => {
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:00:00 GMT", now)).toBe(0);
  });

  it("returns undefined without a usable header", () => {
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter("", now)).toBeUndefined();
    expect(parseRetryAfter("   ", now)).toBeUndefined();
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter("garbage", now)).toBeUndefined();
  });
});
