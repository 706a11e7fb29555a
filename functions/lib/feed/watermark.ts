import type { S3Store } from "../aws/s3-store";
import { InvalidInputError, StorageUnavailableError } from "../config/errors";
import { formatHour, HOUR_MS, parseHour, parseWatermarkHour } from "../config/hours";
import { hourOfPublishedMarker, publishedMarkerKey, publishedPrefix } from "./keys";

/**
 * The watermark: the last hour whose every entity is published. Stored as JSON keeping the seed's
 * `last_hour_utc` field, so a seed user's state file is read as-is.
 */
export interface Watermark {
  hourUtc: string | null;
  /** ETag of the state object, or null when it does not exist yet (first run or seed migration). */
  etag: string | null;
}

export async function readWatermark(
  store: S3Store,
  stateKey: string,
  seedStateKey?: string,
): Promise<Watermark> {
  const current = await store.getText(stateKey);
  if (current) return { hourUtc: parseStateFile(current.body, store.bucket, stateKey), etag: current.etag };
  if (seedStateKey) {
    // Migration: continue after the seed Lambda's last hour; our own state file is created on first commit.
    const seed = await store.getText(seedStateKey);
    if (seed) return { hourUtc: parseStateFile(seed.body, store.bucket, seedStateKey), etag: null };
  }
  return { hourUtc: null, etag: null };
}

function parseStateFile(body: string, bucket: string, key: string): string | null {
  const where = `state file s3://${bucket}/${key}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new InvalidInputError(
      `${where} is not JSON: fix it, or delete it (the collector then continues after the hours published so far)`,
    );
  }
  // JSON that is not an object (null, a number, a string, an array) has no last_hour_utc: no watermark yet.
  const value = (parsed as { last_hour_utc?: unknown } | null)?.last_hour_utc;
  if (value === undefined || value === null) return null;
  const ms = typeof value === "string" ? parseWatermarkHour(value) : undefined;
  if (ms === undefined) {
    throw new InvalidInputError(
      `${where} has last_hour_utc ${JSON.stringify(value)}, which is not a whole UTC hour`,
    );
  }
  return formatHour(ms);
}

/** The newest hour H such that every hour after `base` up to H is in `published` (base itself when none). */
export function newestContiguousHour(base: string, published: readonly string[]): string {
  const set = new Set(published);
  let ms = parseHour(base);
  if (ms === undefined) throw new RangeError(`not a UTC hour: ${base}`);
  while (set.has(formatHour(ms + HOUR_MS))) ms += HOUR_MS;
  return formatHour(ms);
}

/**
 * The hours with a published marker after `afterHourUtc` (all of them when null), oldest first:
 * ListObjectsV2 returns keys in UTF-8 binary order, which for marker keys is hour order.
 */
export async function publishedHoursAfter(
  store: S3Store,
  controlPrefix: string,
  afterHourUtc: string | null,
): Promise<string[]> {
  const keys = await store.listKeys(
    publishedPrefix(controlPrefix),
    afterHourUtc === null ? undefined : publishedMarkerKey(controlPrefix, afterHourUtc),
  );
  return keys.flatMap((key) => hourOfPublishedMarker(controlPrefix, key) ?? []);
}

/** What a published marker records: the watermark its publisher planned from, for recoverWatermark. */
export interface PublishedMarker {
  manifest: string;
  by: string;
  at: string;
  watermark: string | null;
}

/**
 * When neither the state file nor a seed state file exists but hours were published, the state file was lost
 * (deleted, or a new STATE_KEY). The newest marker records the watermark its execution planned from, and
 * every hour up to that one was published then: continue over the hours published contiguously after it.
 * Hours published beyond a gap (the gap may be an hour a failed execution never claimed) are not trusted.
 * Undefined when nothing was ever published: a first run.
 */
export async function recoverWatermark(store: S3Store, controlPrefix: string): Promise<string | undefined> {
  const published = await publishedHoursAfter(store, controlPrefix, null);
  const newest = published[published.length - 1];
  if (newest === undefined) return undefined;
  const marker = parseMarker((await store.getText(publishedMarkerKey(controlPrefix, newest)))?.body);
  const oldest = parseHour(published[0] as string) as number;
  // A marker that records no watermark (a backfill before any): trust only the run from the oldest marker.
  const base = marker?.watermark ?? formatHour(oldest - HOUR_MS);
  return newestContiguousHour(base, published);
}

function parseMarker(body: string | undefined): PublishedMarker | undefined {
  try {
    const marker = JSON.parse(body ?? "") as Partial<PublishedMarker>;
    return typeof marker.watermark === "string" && parseHour(marker.watermark) !== undefined
      ? (marker as PublishedMarker)
      : undefined;
  } catch {
    return undefined;
  }
}

export interface WatermarkLayout {
  stateKey: string;
  controlPrefix: string;
}

/**
 * Moves the watermark forward over every hour published contiguously after it (by this execution or any
 * other), never backwards; a missing one is left alone (Plan creates it, a backfill never does). Writes only
 * over the state object it last read (If-Match on its ETag, or create-only when there was none); when
 * another execution moved it in between, re-reads and tries again. Returns the watermark after.
 */
export async function advanceWatermark(
  store: S3Store,
  layout: WatermarkLayout,
  planned: Watermark,
  runId: string,
): Promise<string | null> {
  let current = planned;
  for (let attempt = 1; attempt <= WATERMARK_WRITE_ATTEMPTS; attempt++) {
    const from = current.hourUtc;
    if (from === null) return null;
    const target = newestContiguousHour(from, await publishedHoursAfter(store, layout.controlPrefix, from));
    // A watermark known but not stored (a first run's start, recovered, or the seed's) is written as it is.
    if (from >= target && current.etag !== null) return from;
    const body = JSON.stringify({
      last_hour_utc: target,
      updated_at: new Date().toISOString(),
      execution: runId,
    });
    const condition = current.etag === null ? { ifNoneMatch: "*" as const } : { ifMatch: current.etag };
    if ((await store.put(layout.stateKey, body, "application/json", condition)).written) return target;
    current = await readWatermark(store, layout.stateKey);
  }
  throw new StorageUnavailableError(
    `the watermark at s3://${store.bucket}/${layout.stateKey} kept changing under this execution; retrying the state`,
  );
}

/** Each write loses only to another execution moving the watermark, which moves it forward: a few suffice. */
const WATERMARK_WRITE_ATTEMPTS = 5;
