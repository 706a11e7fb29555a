import { randomBytes } from "node:crypto";
import type { CitrixClient } from "./citrix-client";
import type { CollectorConfig } from "./config";
import type { CollectInput, CollectOutput, CollectProgress, PageCursor } from "./contracts";
import { envelopeLine } from "./envelope";
import { CitrixUnavailableError } from "./errors";
import { stagingPartKey } from "./keys";
import type { Logger } from "./log";
import type { S3Store } from "./s3-store";

export interface CollectDeps {
  store: S3Store;
  citrix: CitrixClient;
  config: Pick<CollectorConfig, "controlPrefix" | "pageSize" | "partMaxRecords" | "invocationReserveMs">;
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
  const segment = { attempt: randomBytes(4).toString("hex"), firstPart: progress.parts, parts: 0 };
  const pager = new PageWalker(config.pageSize, progress.cursor, progress.largestPage);
  let buffer: string[] = [];
  let pagesThisInvocation = 0;

  const flush = async () => {
    if (buffer.length === 0) return;
    const key = stagingPartKey(
      config.controlPrefix,
      input.runId,
      input.entity,
      input.hourUtc,
      segment.attempt,
      progress.parts,
    );
    await store.put(key, buffer.join(""), "application/x-ndjson");
    log.info("wrote staging part", { part: progress.parts, records: buffer.length });
    progress.parts++;
    segment.parts++;
    buffer = [];
  };

  while (!pager.done) {
    if (pagesThisInvocation > 0 && now() >= deadlineMs) break;
    const url = pager.nextUrl(citrix, input.entity, input.hourUtc);
    let page: Awaited<ReturnType<CitrixClient["getPage"]>>;
    try {
      page = await citrix.getPage(url, deadlineMs, log);
    } catch (error) {
      // Keep what this invocation already paged; the next invocation retries the failing page.
      if (error instanceof CitrixUnavailableError && pagesThisInvocation > 0) {
        log.warn("Citrix API unavailable, handing over to the next invocation", { reason: error.message });
        break;
      }
      throw error;
    }
    const collectedAt = new Date(now()).toISOString();
    for (const record of page.records) {
      buffer.push(envelopeLine(input.entity, input.hourUtc, collectedAt, record));
      if (buffer.length >= config.partMaxRecords) await flush();
    }
    pager.advance(page.records.length, page.nextLink);
    progress.records += page.records.length;
    progress.pages++;
    pagesThisInvocation++;
  }
  await flush();
  if (segment.parts > 0) progress.segments = [...progress.segments, segment];
  progress.cursor = pager.cursor;
  progress.largestPage = pager.largestPage;
  log.info(pager.done ? "entity-hour collected" : "time budget spent, continuing in the next invocation", {
    pages: progress.pages,
    records: progress.records,
    parts: progress.parts,
    invocation: progress.invocations,
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
