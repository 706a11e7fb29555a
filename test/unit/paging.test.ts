import { describe, expect, it } from "vitest";
import { CitrixClient, parseRetryAfter } from "../../functions/lib/citrix-client";
import { PageWalker } from "../../functions/lib/collector";
import type { PageCursor } from "../../functions/lib/contracts";

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
}

/**
 * Drives a PageWalker against a scripted server the way collectEntityHour does; fails if the walker asks
 * for more pages than the script has. Returns the URLs requested and the walker's state after each page.
 */
function walk(pageSize: number, pages: FakePage[], cursor: PageCursor = { skip: 0 }) {
  const walker = new PageWalker(pageSize, cursor);
  const requested: string[] = [];
  const doneAfter: boolean[] = [];
  const cursors: PageCursor[] = [];
  while (!walker.done) {
    const page = pages[requested.length];
    if (page === undefined)
      throw new Error(`walker asked for page ${requested.length + 1} of ${pages.length}`);
    requested.push(walker.nextUrl(client, "sessions", HOUR));
    walker.advance(page.count, page.nextLink);
    doneAfter.push(walker.done);
    cursors.push(walker.cursor);
  }
  return { requested, doneAfter, cursors, walker };
}

describe("CitrixClient.pageUrl via PageWalker.nextUrl", () => {
  it("builds the SPEC's first-page URL exactly", () => {
    const walker = new PageWalker(100, { skip: 0 });
    expect(walker.nextUrl(client, "sessions", HOUR)).toBe(
      "https://api.cloud.com/casodata/sessions?year=2026&month=11&day=24&hour=08&$top=100&$skip=0",
    );
  });

  it("zero-pads the date parts and resumes at a saved $skip", () => {
    const walker = new PageWalker(1000, { skip: 2000 });
    expect(walker.nextUrl(client, "machines", "2027-01-05T03:00:00Z")).toBe(
      "https://api.cloud.com/casodata/machines?year=2027&month=01&day=05&hour=03&$top=1000&$skip=2000",
    );
  });

  it("returns a saved nextLink as is", () => {
    const link = "https://api.cloud.com/casodata/sessions?$skiptoken=abc";
    expect(new PageWalker(100, { nextLink: link }).nextUrl(client, "sessions", HOUR)).toBe(link);
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
