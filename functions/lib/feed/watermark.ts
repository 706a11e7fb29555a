import type { S3Store } from "../aws/s3-store";
import { type RecordsPerHour, type RunMode, recordsPerHourSchema } from "../config/contracts";
import { InvalidInputError, StorageUnavailableError } from "../config/errors";
import { formatHour, HOUR_MS, parseHour, parseWatermarkHour } from "../config/hours";
import { mapConcurrently } from "./concurrency";
import {
  firstHourKey,
  type PublishedMarkerRef,
  publishedAfterKey,
  publishedHourPrefix,
  publishedMarkerOfKey,
  publishedPrefix,
} from "./keys";
import { parseJson, readLegacyManifest } from "./manifest";

/**
 * The watermark: the last hour up to which every hour is published for every configured entity. Stored as JSON keeping the seed's
 * `last_hour_utc` field, so a seed user's state file is read as-is.
 */
export interface Watermark {
  hourUtc: string | null;
  /** ETag of the state object, or null when it does not exist yet (first run or seed migration). */
  etag: string | null;
  /** The state file's `records_per_hour` (see recordsPerHourSchema), when it holds one. */
  recordsPerHour?: RecordsPerHour;
}

export async function readWatermark(
  store: S3Store,
  stateKey: string,
  seedStateKey?: string,
): Promise<Watermark> {
  const current = await store.getText(stateKey);
  if (current) return { ...parseStateFile(current.body, store.bucket, stateKey), etag: current.etag };
  if (seedStateKey) {
    // Migration: continue after the seed Lambda's last hour; our own state file is created on first commit.
    const seed = await store.getText(seedStateKey);
    if (seed) return { hourUtc: parseStateFile(seed.body, store.bucket, seedStateKey).hourUtc, etag: null };
  }
  return { hourUtc: null, etag: null };
}

function parseStateFile(
  body: string,
  bucket: string,
  key: string,
): Pick<Watermark, "hourUtc" | "recordsPerHour"> {
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
  const fields = parsed as { last_hour_utc?: unknown; records_per_hour?: unknown } | null;
  const value = fields?.last_hour_utc;
  if (value === undefined || value === null) return { hourUtc: null };
  const ms = typeof value === "string" ? parseWatermarkHour(value) : undefined;
  if (ms === undefined) {
    throw new InvalidInputError(
      `${where} has last_hour_utc ${JSON.stringify(value)}, which is not a whole UTC hour`,
    );
  }
  // Advice: one that is not a record of counts is none, never an error.
  const recordsPerHour = recordsPerHourSchema.safeParse(fields?.records_per_hour);
  return {
    hourUtc: formatHour(ms),
    ...(recordsPerHour.success ? { recordsPerHour: recordsPerHour.data } : {}),
  };
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
 * The hours every one of `entities` is published for, oldest first. Only configured entities are asked for,
 * so an entity removed from ENTITIES never blocks the watermark.
 */
export function hoursPublishedForEvery(
  byHour: ReadonlyMap<string, ReadonlySet<string>>,
  entities: readonly string[],
): string[] {
  return [...byHour]
    .filter(([, published]) => entities.every((entity) => published.has(entity)))
    .map(([hourUtc]) => hourUtc);
}

/**
 * The published entities of each hour a marker names: an entity-hour marker counts for its entity, a legacy
 * whole-hour marker for the entities its legacy manifest lists (`legacyEntities`).
 */
export function entitiesByHour(
  markers: readonly PublishedMarkerRef[],
  legacyEntities: ReadonlyMap<string, readonly string[]>,
): Map<string, Set<string>> {
  const byHour = new Map<string, Set<string>>();
  for (const { hourUtc, entity } of markers) {
    const entities = byHour.get(hourUtc) ?? new Set<string>();
    for (const published of entity === undefined ? (legacyEntities.get(hourUtc) ?? []) : [entity])
      entities.add(published);
    byHour.set(hourUtc, entities);
  }
  return byHour;
}

/**
 * The entities published for each hour after `afterHourUtc` (every hour when null), hours oldest first:
 * ListObjectsV2 returns keys in UTF-8 binary order, which for marker keys is hour order. Legacy whole-hour
 * markers cost one read of their manifest each; they only exist before the upgrade.
 */
export async function publishedEntitiesAfter(
  store: S3Store,
  controlPrefix: string,
  afterHourUtc: string | null,
): Promise<Map<string, Set<string>>> {
  const keys = await store.listKeys(
    publishedPrefix(controlPrefix),
    afterHourUtc === null ? undefined : publishedAfterKey(controlPrefix, afterHourUtc),
  );
  return publishedEntitiesOfMarkers(store, controlPrefix, keys);
}

/**
 * The entities published for each of `hours` that has any: one listing per hour, a few at a time, so a
 * backfill of last year's hours does not list every marker since.
 */
export async function publishedEntitiesOfHours(
  store: S3Store,
  controlPrefix: string,
  hours: readonly string[],
): Promise<Map<string, Set<string>>> {
  const keys = await mapConcurrently(hours, HOUR_LISTINGS_IN_PARALLEL, (hourUtc) =>
    store.listKeys(publishedHourPrefix(controlPrefix, hourUtc)),
  );
  return publishedEntitiesOfMarkers(store, controlPrefix, keys.flat());
}

const HOUR_LISTINGS_IN_PARALLEL = 8;

async function publishedEntitiesOfMarkers(
  store: S3Store,
  controlPrefix: string,
  keys: readonly string[],
): Promise<Map<string, Set<string>>> {
  const markers = keys.flatMap((key) => publishedMarkerOfKey(controlPrefix, key) ?? []);
  const legacyHours = markers.flatMap(({ hourUtc, entity }) => (entity === undefined ? [hourUtc] : []));
  const legacy = await mapConcurrently(legacyHours, LEGACY_READS_IN_PARALLEL, async (hourUtc) => {
    const manifest = await readLegacyManifest(store, controlPrefix, hourUtc);
    return [hourUtc, Object.keys(manifest?.entities ?? {})] as const;
  });
  return entitiesByHour(markers, new Map(legacy));
}

const LEGACY_READS_IN_PARALLEL = 8;

/**
 * What a published marker records: the manifest (execution and generation) published, who wrote the marker,
 * the mode of that execution and the watermark it planned from, for recoverWatermark. Markers written
 * before the upgrade have no mode or generation.
 */
export interface PublishedMarker {
  manifest: string;
  generation: number;
  by: string;
  at: string;
  mode: RunMode;
  watermark: string | null;
}

/**
 * When neither the state file nor a seed state file exists but entity-hours were published, the state file
 * was lost (deleted, or a new STATE_KEY). Every marker records the watermark its execution planned from, and
 * every hour up to that one was published then: the newest marker that records one is the base, and the
 * watermark continues over the hours published contiguously after it for every configured entity. Hours
 * published beyond a gap (an hour a failed execution never claimed) are not trusted. Markers of backfills
 * that ran before any watermark existed record none and are passed over, so they neither skip hours nor
 * send the next run back to them. Undefined when no marker records a watermark: a first run.
 */
export async function recoverWatermark(
  store: S3Store,
  controlPrefix: string,
  entities: readonly string[],
): Promise<string | undefined> {
  const keys = await store.listKeys(publishedPrefix(controlPrefix));
  let base: string | undefined;
  for (const key of keys.reverse()) {
    base = parseMarker((await store.getText(key))?.body)?.watermark ?? undefined;
    if (base !== undefined) break;
  }
  if (base === undefined) return undefined;
  const published = await publishedEntitiesAfter(store, controlPrefix, base);
  return newestContiguousHour(base, hoursPublishedForEvery(published, entities));
}

/** A marker's recorded watermark, or undefined when it records none (a backfill before the first run). */
export function parseMarker(body: string | undefined): { watermark: string } | undefined {
  const marker = parseJson(body ?? "") as Partial<PublishedMarker> | null | undefined;
  return typeof marker?.watermark === "string" && parseHour(marker.watermark) !== undefined
    ? { watermark: marker.watermark }
    : undefined;
}

/** What firstHourKey holds. */
export interface FirstHourRecord {
  hourUtc: string;
  by: string;
  at: string;
}

/**
 * The hour a first run starts at. The first run to get here records `proposedHourUtc` (FIRST_HOUR_UTC, or the
 * newest eligible hour on its clock) create-only; every other first run reads the hour it recorded. Two first
 * runs whose clocks lie on either side of the minute an hour falls due therefore start at the same hour, and
 * neither can move the watermark over an hour the other one was to collect.
 */
export async function firstRunHour(
  store: S3Store,
  controlPrefix: string,
  proposedHourUtc: string,
  runId: string,
  nowMs: number,
): Promise<string> {
  const key = firstHourKey(controlPrefix);
  let recorded = await store.getText(key);
  if (recorded === undefined) {
    const record: FirstHourRecord = {
      hourUtc: proposedHourUtc,
      by: runId,
      at: new Date(nowMs).toISOString(),
    };
    await store.put(key, JSON.stringify(record), "application/json", { ifNoneMatch: "*" });
    // Read back whether this run's record or another first run's won: the recorded hour is the one to use.
    recorded = await store.getText(key);
    if (recorded === undefined)
      throw new StorageUnavailableError(`s3://${store.bucket}/${key} vanished as it was read`);
  }
  return parseFirstHour(recorded.body, store.bucket, key);
}

export function parseFirstHour(body: string, bucket: string, key: string): string {
  const hourUtc = (parseJson(body) as Partial<FirstHourRecord> | null | undefined)?.hourUtc;
  const ms = typeof hourUtc === "string" ? parseHour(hourUtc) : undefined;
  if (ms === undefined) {
    throw new InvalidInputError(
      `s3://${bucket}/${key} records no UTC hour to start at: delete it (the next first run records its own) or fix its "hourUtc"`,
    );
  }
  return formatHour(ms);
}

export interface WatermarkLayout {
  stateKey: string;
  controlPrefix: string;
}

/**
 * Moves the watermark forward over every hour published contiguously after it for every one of `entities`
 * (by this execution or any other), never backwards; a missing one is left alone (Plan creates it, a backfill never does). Writes only
 * over the state object it last read (If-Match on its ETag, or create-only when there was none); when
 * another execution moved it in between, re-reads and tries again. Returns the watermark after. The state
 * object keeps `recordsPerHour` beside it (Commit's, from the hours it published), else the records per hour it
 * held.
 */
export async function advanceWatermark(
  store: S3Store,
  layout: WatermarkLayout,
  planned: Watermark,
  runId: string,
  entities: readonly string[],
  recordsPerHour?: RecordsPerHour,
): Promise<string | null> {
  let current = planned;
  for (let attempt = 1; attempt <= WATERMARK_WRITE_ATTEMPTS; attempt++) {
    const from = current.hourUtc;
    if (from === null) return null;
    const published = await publishedEntitiesAfter(store, layout.controlPrefix, from);
    const target = newestContiguousHour(from, hoursPublishedForEvery(published, entities));
    // A watermark known but not stored (a first run's start, recovered, or the seed's) is written as it is.
    if (from >= target && current.etag !== null) return from;
    const records = recordsPerHour ?? current.recordsPerHour;
    const body = JSON.stringify({
      last_hour_utc: target,
      updated_at: new Date().toISOString(),
      execution: runId,
      ...(records ? { records_per_hour: records } : {}),
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
