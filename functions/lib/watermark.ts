import { InvalidInputError, StorageUnavailableError } from "./errors";
import { formatHour, parseWatermarkHour } from "./hours";
import type { S3Store } from "./s3-store";

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
    throw new InvalidInputError(`${where} is not JSON: fix it or delete it to start from FIRST_HOUR_UTC`);
  }
  const value =
    typeof parsed === "object" && parsed !== null
      ? (parsed as Record<string, unknown>).last_hour_utc
      : undefined;
  if (value === undefined || value === null) return null;
  const ms = typeof value === "string" ? parseWatermarkHour(value) : undefined;
  if (ms === undefined) {
    throw new InvalidInputError(
      `${where} has last_hour_utc ${JSON.stringify(value)}, which is not a whole UTC hour`,
    );
  }
  return formatHour(ms);
}

/**
 * Moves the watermark forward to `hourUtc`, never backwards. Writes only over the state object it last
 * read (If-Match on its ETag, or create-only when there was none); when another execution moved it in
 * between, re-reads and tries again unless that execution already went as far. Returns the watermark after.
 * The caller guarantees every hour from the watermark it planned from up to `hourUtc` is published.
 */
export async function advanceWatermark(
  store: S3Store,
  stateKey: string,
  hourUtc: string,
  planned: Watermark,
  runId: string,
): Promise<string> {
  let current = planned;
  for (let attempt = 1; attempt <= 5; attempt++) {
    if (current.hourUtc !== null && current.hourUtc >= hourUtc) return current.hourUtc;
    const body = JSON.stringify({
      last_hour_utc: hourUtc,
      updated_at: new Date().toISOString(),
      execution: runId,
    });
    const condition = current.etag === null ? { ifNoneMatch: "*" as const } : { ifMatch: current.etag };
    if ((await store.put(stateKey, body, "application/json", condition)).written) return hourUtc;
    current = await readWatermark(store, stateKey);
  }
  throw new StorageUnavailableError(
    `the watermark at s3://${store.bucket}/${stateKey} kept changing under this execution; retrying the state`,
  );
}
