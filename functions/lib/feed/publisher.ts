import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import type { CollectorConfig } from "../config/config";
import {
  type CollectedResult,
  type CommitInput,
  type CommitOutput,
  collectedResultSchema,
  type HourReport,
  type StagingSegment,
} from "../config/contracts";
import { InvalidInputError, StagingLostError } from "../config/errors";
import { mapConcurrently } from "./concurrency";
import {
  collectedResultKey,
  feedPartKey,
  leaseKey,
  manifestKey,
  publishedMarkerKey,
  stagingPartKey,
  stagingRunPrefix,
} from "./keys";
import { advanceWatermark, type PublishedMarker } from "./watermark";

/**
 * Commit's parallelism: hours at a time, and copies at a time within an hour. Up to 32 S3 requests in flight
 * keep a 168-hour catch-up to seconds, well inside S3's per-prefix request rates and the SDK's 50 sockets.
 */
const HOURS_IN_PARALLEL = 4;
const COPIES_IN_PARALLEL = 8;

export interface PublishDeps {
  store: S3Store;
  config: Pick<CollectorConfig, "feedPrefix" | "controlPrefix" | "stateKey">;
  log: Logger;
}

/**
 * The commit record of one hour, created once (If-None-Match: *): it fixes which staging parts of which
 * execution become the hour's feed objects. Whoever finds it, its creator or any later execution, copies
 * exactly those parts, each create-only, and then writes the hour's published marker.
 */
export interface HourManifest {
  runId: string;
  hourUtc: string;
  claimedAt: string;
  entities: Record<string, { records: number; parts: number; segments: StagingSegment[] }>;
}

/**
 * Commit. For each planned hour (a few at a time): if it has no published marker yet, claim it with a create-only
 * manifest built from what this execution collected, or adopt the manifest another execution created; copy
 * every part the manifest names to its feed key create-only; write the marker. Then the watermark moves over
 * every contiguously published hour, this execution's lease is released and its staging cleared.
 *
 * Why this is exactly-once and always finishes (the README's design section has the whole argument): a feed
 * key is only ever written by a create-only copy of the one part the hour's single manifest names, so it is
 * written once whoever copies it and however often; and because any execution finishes any manifest it
 * meets, an hour held by an execution that died is finished by the next one, with no claim to time out.
 */
export async function publishRun(deps: PublishDeps, input: CommitInput): Promise<CommitOutput> {
  const hours = [...input.hours].sort();
  // Hours are independent (each has its own manifest and marker); the watermark is derived afterwards.
  const reports = await mapConcurrently(hours, HOURS_IN_PARALLEL, (hourUtc) =>
    publishHour(deps, input, hourUtc),
  );
  const before = input.watermark.hourUtc;
  const after = await advanceWatermark(deps.store, deps.config, input.watermark, input.runId);
  deps.log.info("watermark checked", { from: before, to: after });
  // Every hour this execution claimed has its marker now, so nobody needs this staging any more.
  const staging = await deps.store.listKeys(stagingRunPrefix(deps.config.controlPrefix, input.runId));
  await deps.store.deleteKeys([...staging, leaseKey(deps.config.controlPrefix, input.runId)]);
  return {
    runId: input.runId,
    mode: input.mode,
    status: "committed",
    hours: reports,
    watermark: { before, after },
  };
}

async function publishHour(deps: PublishDeps, input: CommitInput, hourUtc: string): Promise<HourReport> {
  const { store, config } = deps;
  const log = deps.log.child({ hour: hourUtc });
  const marker = publishedMarkerKey(config.controlPrefix, hourUtc);
  const key = manifestKey(config.controlPrefix, hourUtc);
  const published = await store.exists(marker);
  // A redrive after this execution cleared its staging finds every hour published and needs no results.
  const collected = published
    ? await readCollectedIfPresent(deps, input, hourUtc)
    : await readCollected(deps, input, hourUtc);
  let manifest: HourManifest;
  if (published) {
    manifest = await readManifest(store, key);
  } else {
    const proposed: HourManifest = {
      runId: input.runId,
      hourUtc,
      claimedAt: new Date().toISOString(),
      entities: Object.fromEntries(
        [...collected.values()]
          .sort((a, b) => a.entity.localeCompare(b.entity))
          .map((item) => [
            item.entity,
            { records: item.records, parts: item.parts, segments: item.segments },
          ]),
      ),
    };
    const claimed = await store.put(key, JSON.stringify(proposed), "application/json", { ifNoneMatch: "*" });
    manifest = claimed.written ? proposed : await readManifest(store, key);
    if (manifest.runId !== input.runId) {
      log.info("finishing an hour another execution claimed", { publisher: manifest.runId });
    }
    await copyHour(deps, manifest);
    const record: PublishedMarker = {
      manifest: manifest.runId,
      by: input.runId,
      at: new Date().toISOString(),
      watermark: input.watermark.hourUtc,
    };
    await store.put(marker, JSON.stringify(record), "application/json", { ifNoneMatch: "*" });
  }
  const outcome: HourReport["outcome"] = published
    ? "already-published"
    : manifest.runId === input.runId
      ? "published"
      : "completed-for-another";
  log.info("hour published", { outcome, publisher: manifest.runId });
  return {
    hourUtc,
    outcome,
    publisher: manifest.runId,
    records: Object.fromEntries(
      [...new Set([...collected.keys(), ...Object.keys(manifest.entities)])].sort().map((entity) => [
        entity,
        {
          collected: collected.get(entity)?.records ?? 0,
          published: manifest.entities[entity]?.records ?? 0,
        },
      ]),
    ),
  };
}

/**
 * Copies every part the manifest names, each create-only: a part another execution copied already is left
 * as it is. A source that is gone means its execution cleared its staging, which it does only once every
 * hour it claimed has its marker.
 */
async function copyHour(deps: PublishDeps, manifest: HourManifest): Promise<void> {
  const { store, config } = deps;
  const parts = Object.entries(manifest.entities).flatMap(([entity, published]) =>
    published.segments.flatMap((segment) =>
      Array.from({ length: segment.parts }, (_, i) => ({ entity, segment, part: segment.firstPart + i })),
    ),
  );
  await mapConcurrently(parts, COPIES_IN_PARALLEL, async ({ entity, segment, part }) => {
    const source = stagingPartKey(
      config.controlPrefix,
      manifest.runId,
      entity,
      manifest.hourUtc,
      segment.attempt,
      part,
      segment.compressed,
    );
    const destination = feedPartKey(config.feedPrefix, entity, manifest.hourUtc, part, segment.compressed);
    if ((await store.copyIfAbsent(source, destination)) !== "no-source") return;
    // S3 may answer NoSuchKey for the source before it looks at the destination's precondition.
    if (await store.exists(destination)) return;
    throw new StagingLostError(
      `hour ${manifest.hourUtc} is claimed by execution ${manifest.runId}, whose staging part s3://${store.bucket}/${source} is gone although the hour is not published; ` +
        `it cannot be finished from staging: delete s3://${store.bucket}/${manifestKey(config.controlPrefix, manifest.hourUtc)} ` +
        `and every object under s3://${store.bucket}/${feedPartKey(config.feedPrefix, entity, manifest.hourUtc, 0).replace(/part-\d+\.ndjson$/, "")} of that hour, then redrive`,
    );
  });
}

/** This execution's results for every planned entity of the hour; all must exist before it claims the hour. */
async function readCollected(
  deps: PublishDeps,
  input: CommitInput,
  hourUtc: string,
): Promise<Map<string, CollectedResult>> {
  const found = await readCollectedIfPresent(deps, input, hourUtc);
  const missing = input.entities.filter((entity) => !found.has(entity));
  if (missing.length > 0) {
    throw new InvalidInputError(
      `PublishAndAdvance found no collected result of execution ${input.runId} for ${missing.join(", ")} at ${hourUtc}; the Map must collect every planned entity-hour first`,
    );
  }
  return found;
}

async function readCollectedIfPresent(
  deps: PublishDeps,
  input: CommitInput,
  hourUtc: string,
): Promise<Map<string, CollectedResult>> {
  const results = await mapConcurrently(input.entities, input.entities.length, async (entity) => {
    const key = collectedResultKey(deps.config.controlPrefix, input.runId, entity, hourUtc);
    const stored = await deps.store.getText(key);
    return stored && parseStored(collectedResultSchema.safeParse(parseJson(stored.body)), deps, key);
  });
  return new Map(results.flatMap((result) => (result ? [[result.entity, result] as const] : [])));
}

async function readManifest(store: S3Store, key: string): Promise<HourManifest> {
  const stored = await store.getText(key);
  if (!stored) {
    // Create-only failed or a marker exists, so it existed: only a manual delete in between gets here.
    throw new InvalidInputError(`manifest s3://${store.bucket}/${key} vanished while this execution read it`);
  }
  const manifest = parseJson(stored.body) as Partial<HourManifest> | undefined;
  if (
    typeof manifest?.runId !== "string" ||
    typeof manifest.entities !== "object" ||
    manifest.entities === null
  ) {
    throw new InvalidInputError(
      `manifest s3://${store.bucket}/${key} is not a manifest; inspect it before redriving`,
    );
  }
  return manifest as HourManifest;
}

function parseStored<T>(
  parsed: { success: true; data: T } | { success: false },
  deps: PublishDeps,
  key: string,
): T {
  if (parsed.success) return parsed.data;
  throw new InvalidInputError(
    `s3://${deps.store.bucket}/${key} is not a collected result; inspect it before redriving`,
  );
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
