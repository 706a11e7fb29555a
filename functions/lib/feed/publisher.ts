import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import type { CollectorConfig } from "../config/config";
import {
  type CollectedResult,
  type CommitInput,
  type CommitOutput,
  collectedResultSchema,
  type EntityHourReport,
  type HourOutcome,
  type HourReport,
  type RecordsPerHour,
} from "../config/contracts";
import { InvalidInputError, StagingLostError } from "../config/errors";
import { mapConcurrently } from "./concurrency";
import {
  collectedResultKey,
  feedPartKey,
  leaseKey,
  legacyManifestKey,
  manifestHourPrefix,
  manifestKey,
  manifestOfKey,
  type PublishedMarkerRef,
  publishedHourPrefix,
  publishedMarkerKey,
  publishedMarkerOfKey,
  stagingPartKey,
  stagingRunPrefix,
} from "./keys";
import {
  type EntityManifest,
  type LegacyHourManifest,
  legacyEntityManifest,
  notAManifest,
  parseEntityManifest,
  parseJson,
  readLegacyManifest,
} from "./manifest";
import { advanceWatermark, type PublishedMarker } from "./watermark";

/**
 * Commit's parallelism: entity-hours at a time (whole hours, at least four), and copies at a time within an
 * entity-hour. An entity-hour has one S3 request in flight but while it copies its parts, so about 36 of them
 * keep a 168-hour catch-up to seconds, well inside S3's per-prefix request rates and near the SDK's 50 sockets.
 * Each hour's requests follow one another (list, read the results, claim, copy, mark): with few entities, more
 * hours at once is what shortens a catch-up's Commit (23 hours of 3 entities: 2.4 s → 1.8 s with AWS-like
 * latencies, docs/performance.md).
 */
const ENTITY_HOURS_IN_PARALLEL = 36;
const MIN_HOURS_IN_PARALLEL = 4;
const COPIES_IN_PARALLEL = 8;

/** How many hours Commit publishes at once for `entities` entities. */
export function hoursInParallel(entities: number): number {
  return Math.max(MIN_HOURS_IN_PARALLEL, Math.floor(ENTITY_HOURS_IN_PARALLEL / entities));
}

export interface PublishDeps {
  store: S3Store;
  config: Pick<CollectorConfig, "feedPrefix" | "controlPrefix" | "stateKey" | "entities">;
  log: Logger;
}

/**
 * Commit. For each planned hour (a few at a time) and each of its entities without a published marker: claim
 * the entity-hour with a create-only manifest built from what this execution collected, or adopt the manifest
 * another execution created; copy every part the manifest names to its feed key create-only; write the
 * entity-hour's marker. Then the watermark moves over every hour published contiguously for every planned
 * and every configured entity, this execution's lease is released and its staging cleared.
 *
 * Why this is exactly-once and always finishes (docs/design.md has the whole argument): a feed key is only
 * ever written by a create-only copy of a part that its entity-hour's single current manifest names, so it is
 * written once whoever copies it and however often; and because any execution finishes any manifest it
 * meets, an entity-hour held by an execution that died is finished by the next one, with no claim to time out.
 */
export async function publishRun(deps: PublishDeps, input: CommitInput): Promise<CommitOutput> {
  const hours = [...input.hours].sort();
  const listHour = dayListings(deps.store);
  // Hours are independent (each has its own manifests and markers); the watermark is derived afterwards.
  const reports = await mapConcurrently(hours, hoursInParallel(input.entities.length), (hourUtc) =>
    publishHour(deps, input, hourUtc, listHour),
  );
  const before = input.watermark.hourUtc;
  // Configured as well as planned: an execution planned before an entity was added (and redriven after) must
  // not carry the watermark over hours that entity still lacks.
  const entities = [...new Set([...input.entities, ...deps.config.entities])];
  const after = await advanceWatermark(
    deps.store,
    deps.config,
    input.watermark,
    input.runId,
    entities,
    recordsPerHourOf(reports),
  );
  deps.log.info("watermark checked", { from: before, to: after });
  // Every entity-hour this execution claimed has its marker now, so nobody needs this staging any more.
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

/**
 * Each entity's records per hour, on average over the hours of `reports` (what their feed holds, whoever
 * published it): stored beside the watermark for the next Plan to balance its runs by (see planRuns). Undefined
 * for a Commit of no hours, which leaves the stored figures as they are.
 */
export function recordsPerHourOf(reports: readonly HourReport[]): RecordsPerHour | undefined {
  const sums = new Map<string, { records: number; hours: number }>();
  for (const report of reports) {
    for (const [entity, { published }] of Object.entries(report.records)) {
      const sum = sums.get(entity) ?? { records: 0, hours: 0 };
      sums.set(entity, { records: sum.records + published, hours: sum.hours + 1 });
    }
  }
  if (sums.size === 0) return undefined;
  return Object.fromEntries(
    [...sums].map(([entity, { records, hours }]) => [entity, Math.round(records / hours)]),
  );
}

/** What one hour's markers and manifests say, from its day's listings (and the legacy manifest if any). */
interface HourState {
  hourUtc: string;
  /** Entities with a marker: their own, or a legacy whole-hour marker whose manifest lists them. */
  published: Set<string>;
  legacy: LegacyHourManifest | undefined;
  /** The highest generation of each entity's own manifests. */
  generations: Map<string, number>;
}

/** The keys under an hour's prefix (publishedHourPrefix, manifestHourPrefix), as S3 would list them. */
type HourListing = (hourPrefix: string) => Promise<string[]>;

/**
 * Lists each day once for all of its hours: a Commit of 23 hours lists two or three days' markers and
 * manifests instead of 23 hours' (a day holds 24 × entities of each, one ListObjectsV2 page). An hour may be
 * published from a listing made a while before its turn; that is as safe as one made just before it, since
 * whatever another execution writes in between is met by the create-only writes (a claim that loses adopts
 * the winner's manifest, a copy or a marker already there is left as it is).
 */
export function dayListings(store: Pick<S3Store, "listKeys">): HourListing {
  const days = new Map<string, Promise<string[]>>();
  return async (hourPrefix) => {
    const day = hourPrefix.slice(0, hourPrefix.lastIndexOf("/") + 1);
    let listing = days.get(day);
    if (listing === undefined) {
      listing = store.listKeys(day);
      days.set(day, listing);
    }
    return (await listing).filter((key) => key.startsWith(hourPrefix));
  };
}

async function readHourState(deps: PublishDeps, hourUtc: string, listHour: HourListing): Promise<HourState> {
  const { store, config } = deps;
  const manifestPrefix = manifestHourPrefix(config.controlPrefix, hourUtc);
  // Markers first: a marker is written after its manifest, so every marker listed has its manifest in the
  // listing after it. Listed side by side, a manifest created between the two answers could be missing beside
  // its marker (another execution claiming, copying and marking in between), which reads as a manifest deleted.
  // With a day's listings shared by its hours, that order costs one round trip a day.
  const markerKeys = await listHour(publishedHourPrefix(config.controlPrefix, hourUtc));
  const manifestKeys = await listHour(manifestPrefix);
  const legacy = manifestKeys.includes(legacyManifestKey(config.controlPrefix, hourUtc))
    ? await readLegacyManifest(store, config.controlPrefix, hourUtc)
    : undefined;
  const markers = markerKeys.flatMap((key) => publishedMarkerOfKey(config.controlPrefix, key) ?? []);
  return {
    hourUtc,
    published: publishedEntitiesOfHour(markers, legacy),
    legacy,
    generations: currentGenerations(manifestKeys.flatMap((key) => manifestOfKey(manifestPrefix, key) ?? [])),
  };
}

/** The entities an hour's markers stand for; a legacy whole-hour marker, for those its manifest lists. */
export function publishedEntitiesOfHour(
  markers: readonly PublishedMarkerRef[],
  legacy: LegacyHourManifest | undefined,
): Set<string> {
  const whole = markers.some(({ entity }) => entity === undefined);
  return new Set([
    ...markers.flatMap(({ entity }) => entity ?? []),
    ...(whole ? Object.keys(legacy?.entities ?? {}) : []),
  ]);
}

/** The highest generation of each entity among an hour's manifests. */
export function currentGenerations(
  manifests: readonly { entity: string; generation: number }[],
): Map<string, number> {
  const generations = new Map<string, number>();
  for (const { entity, generation } of manifests)
    generations.set(entity, Math.max(generation, generations.get(entity) ?? 0));
  return generations;
}

async function publishHour(
  deps: PublishDeps,
  input: CommitInput,
  hourUtc: string,
  listHour: HourListing,
): Promise<HourReport> {
  // Read side by side (one round trip less per hour): the results are this execution's own, written before
  // the Map ended and deleted only after every marker. A redrive after this execution cleared its staging
  // finds no results and needs none: every entity-hour is published.
  const [state, collected] = await Promise.all([
    readHourState(deps, hourUtc, listHour),
    readCollected(deps, input, hourUtc),
  ]);
  const missing = input.entities.filter((entity) => !state.published.has(entity) && !collected.has(entity));
  if (missing.length > 0) {
    throw new InvalidInputError(
      `PublishAndAdvance found no collected result of execution ${input.runId} for ${missing.join(", ")} at ${hourUtc}; the Map must collect every planned entity-hour first`,
    );
  }
  const entities = await mapConcurrently(input.entities, input.entities.length, async (entity) => {
    const own = collected.get(entity);
    const report =
      state.published.has(entity) || own === undefined
        ? await alreadyPublished(deps, state, entity)
        : await publishEntityHour(deps, input, state, own);
    return [entity, { ...(own === undefined ? {} : { collected: own.records }), ...report }] as const;
  });
  const report = hourReport(hourUtc, input.runId, entities);
  deps.log.info("hour published", { hour: hourUtc, outcome: report.outcome, publisher: report.publisher });
  return report;
}

/**
 * An hour's outcome from its entity-hours': already published when every one was; published when this
 * execution published one from its own manifest; otherwise it finished another execution's claim.
 */
export function hourReport(
  hourUtc: string,
  runId: string,
  entities: readonly (readonly [string, EntityHourReport])[],
): HourReport {
  const written = entities.filter(([, entity]) => entity.outcome !== "already-published");
  const outcome: HourOutcome =
    written.length === 0
      ? "already-published"
      : written.some(([, entity]) => entity.outcome === "published")
        ? "published"
        : "completed-for-another";
  const publisher = outcome === "published" ? runId : ((written[0] ?? entities[0])?.[1].publisher ?? runId);
  return { hourUtc, outcome, publisher, records: Object.fromEntries([...entities].sort()) };
}

async function alreadyPublished(
  deps: PublishDeps,
  state: HourState,
  entity: string,
): Promise<Omit<EntityHourReport, "collected">> {
  const manifest = await readCurrentManifest(deps, state, entity);
  if (manifest === undefined) {
    const key = manifestKey(deps.config.controlPrefix, state.hourUtc, entity);
    // A marker is written only after its manifest: only a manual delete in between gets here.
    throw new InvalidInputError(
      `manifest s3://${deps.store.bucket}/${key} vanished while this execution read it`,
    );
  }
  return { published: manifest.records, outcome: "already-published", publisher: manifest.runId };
}

/** The entity-hour's current manifest: its highest own generation, else the legacy hour manifest's part. */
async function readCurrentManifest(
  deps: PublishDeps,
  state: HourState,
  entity: string,
): Promise<EntityManifest | undefined> {
  const generation = state.generations.get(entity);
  if (generation === undefined) return state.legacy && legacyEntityManifest(state.legacy, entity);
  return readManifest(deps.store, manifestKey(deps.config.controlPrefix, state.hourUtc, entity, generation));
}

/**
 * Publishes one entity-hour: claims generation 1 or adopts the current manifest; a manifest of another
 * execution whose staging is gone is superseded by a new generation when none of its parts can ever reach the
 * feed, and refused with StagingLostError before anything is written when some could or did.
 */
async function publishEntityHour(
  deps: PublishDeps,
  input: CommitInput,
  state: HourState,
  own: CollectedResult,
): Promise<Omit<EntityHourReport, "collected">> {
  const { store, config } = deps;
  let manifest = (await readCurrentManifest(deps, state, own.entity)) ?? (await claim(deps, input, own, 1));
  for (let step = 1; manifest.runId !== input.runId; step++) {
    const verdict = stagingVerdict(await checkStaging(deps, manifest));
    if (verdict.kind === "finishable") break;
    if (verdict.kind === "lost" || step > MAX_SUPERSEDED_GENERATIONS)
      throw stagingLostError(deps.store.bucket, deps.config.controlPrefix, manifest, verdict);
    deps.log.warn("superseding a manifest whose staging is gone and none of whose parts reached the feed", {
      hour: manifest.hourUtc,
      entity: manifest.entity,
      publisher: manifest.runId,
      generation: manifest.generation,
    });
    manifest = await claim(deps, input, own, manifest.generation + 1);
  }
  if (manifest.runId !== input.runId)
    deps.log.info("finishing an entity-hour another execution claimed", {
      hour: manifest.hourUtc,
      entity: manifest.entity,
      publisher: manifest.runId,
    });
  await copyEntityHour(deps, manifest);
  const record: PublishedMarker = {
    manifest: manifest.runId,
    generation: manifest.generation,
    by: input.runId,
    at: new Date().toISOString(),
    mode: input.mode,
    watermark: input.watermark.hourUtc,
  };
  await store.put(
    publishedMarkerKey(config.controlPrefix, manifest.hourUtc, manifest.entity),
    JSON.stringify(record),
    "application/json",
    { ifNoneMatch: "*" },
  );
  return {
    published: manifest.records,
    outcome: manifest.runId === input.runId ? "published" : "completed-for-another",
    publisher: manifest.runId,
  };
}

/**
 * A bound on generations superseded in one Commit: each needs another execution's staging to vanish between
 * its claim and this look, so more than a few means something deletes staging as it is written.
 */
const MAX_SUPERSEDED_GENERATIONS = 3;

/** Creates the entity-hour's manifest of `generation` from this execution's collection, or reads the winner's. */
async function claim(
  deps: PublishDeps,
  input: CommitInput,
  own: CollectedResult,
  generation: number,
): Promise<EntityManifest> {
  const key = manifestKey(deps.config.controlPrefix, own.hourUtc, own.entity, generation);
  const proposed: EntityManifest = {
    runId: input.runId,
    hourUtc: own.hourUtc,
    entity: own.entity,
    generation,
    claimedAt: new Date().toISOString(),
    records: own.records,
    parts: own.parts,
    segments: own.segments,
  };
  const claimed = await deps.store.put(key, JSON.stringify(proposed), "application/json", {
    ifNoneMatch: "*",
  });
  if (claimed.written) return proposed;
  const winner = await readManifest(deps.store, key);
  if (winner === undefined) {
    throw new InvalidInputError(
      `manifest s3://${deps.store.bucket}/${key} vanished while this execution read it`,
    );
  }
  return winner;
}

/** One part a manifest names: its staging source and its feed destination. */
interface ManifestPart {
  source: string;
  destination: string;
}

function manifestParts(config: PublishDeps["config"], manifest: EntityManifest): ManifestPart[] {
  return manifest.segments.flatMap((segment) =>
    Array.from({ length: segment.parts }, (_, i) => ({
      source: stagingPartKey(
        config.controlPrefix,
        manifest.runId,
        manifest.entity,
        manifest.hourUtc,
        segment.attempt,
        segment.firstPart + i,
        segment.compressed,
      ),
      destination: feedPartKey(
        config.feedPrefix,
        manifest.entity,
        manifest.hourUtc,
        segment.firstPart + i,
        segment.compressed,
      ),
    })),
  );
}

interface PartPresence extends ManifestPart {
  sourceExists: boolean;
  destinationExists: boolean;
}

/**
 * Which sources and which feed keys of a manifest exist. Every source is looked at before any feed key: once
 * every source is seen gone, no copy of the manifest can land any more (a copy needs its source, and S3 is
 * strongly consistent), so feed keys absent afterwards stay absent.
 */
async function checkStaging(deps: PublishDeps, manifest: EntityManifest): Promise<PartPresence[]> {
  const parts = manifestParts(deps.config, manifest);
  const sources = await mapConcurrently(parts, COPIES_IN_PARALLEL, ({ source }) => deps.store.exists(source));
  const destinations = await mapConcurrently(parts, COPIES_IN_PARALLEL, ({ destination }) =>
    deps.store.exists(destination),
  );
  return parts.map((part, i) => ({
    ...part,
    sourceExists: sources[i] as boolean,
    destinationExists: destinations[i] as boolean,
  }));
}

export type StagingVerdict =
  /** Every part is in the feed or can still be copied there. */
  | { kind: "finishable" }
  /** No source is left and no part reached the feed: a new generation can take its place. */
  | { kind: "supersede" }
  /** Some part can never be copied, and others could or did reach the feed. */
  | { kind: "lost"; missing: string[]; remainingSources: string[]; feedObjects: string[] };

/** What can be done with a manifest another execution claimed, from which of its objects exist. */
export function stagingVerdict(parts: readonly PartPresence[]): StagingVerdict {
  const missing = parts.filter((part) => !part.sourceExists && !part.destinationExists);
  if (missing.length === 0) return { kind: "finishable" };
  const remainingSources = parts.filter((part) => part.sourceExists).map((part) => part.source);
  const feedObjects = parts.filter((part) => part.destinationExists).map((part) => part.destination);
  if (remainingSources.length === 0 && feedObjects.length === 0) return { kind: "supersede" };
  return { kind: "lost", missing: missing.map((part) => part.source), remainingSources, feedObjects };
}

/**
 * The error for an entity-hour that cannot be finished nor safely re-collected: it names what is gone and the
 * objects to delete, after which no part of the manifest can reach the feed and the next run re-collects the
 * entity-hour under a new generation.
 */
export function stagingLostError(
  bucket: string,
  controlPrefix: string,
  manifest: EntityManifest,
  verdict: StagingVerdict,
): StagingLostError {
  const url = (key: string) => `s3://${bucket}/${key}`;
  const key = manifestKey(controlPrefix, manifest.hourUtc, manifest.entity, manifest.generation);
  const where = `${manifest.entity} ${manifest.hourUtc} (manifest ${url(key)} of execution ${manifest.runId})`;
  if (verdict.kind === "supersede") {
    // Only this execution's own staging, deleted while it committed, gets here: another one is superseded.
    return new StagingLostError(
      `${where}: every staging part is gone and none reached the feed; the next scheduled run re-collects it ` +
        `under a new manifest generation (a redrive of this execution cannot: its collection is gone)`,
    );
  }
  if (verdict.kind === "finishable") {
    return new StagingLostError(
      `${where}: staging parts vanished while this execution copied them, more than once; ` +
        `find what deletes s3://${bucket}/${controlPrefix}/staging/ objects, then redrive`,
    );
  }
  const lost = verdict;
  const toDelete = [...lost.feedObjects, ...lost.remainingSources];
  const shown = toDelete.slice(0, LISTED_OBJECTS).map((object) => `aws s3 rm ${url(object)}`);
  const more =
    toDelete.length > LISTED_OBJECTS ? `; and ${toDelete.length - LISTED_OBJECTS} more like them` : "";
  return new StagingLostError(
    `${where} cannot be finished: ${lost.missing.length} staging part(s) are gone, e.g. ${url(lost.missing[0] as string)}, ` +
      `while ${lost.feedObjects.length} of its part(s) are already in the feed and ${lost.remainingSources.length} staging part(s) remain. ` +
      `Delete them (SecOps may have ingested the feed objects already; the re-collected entity-hour replaces them): ` +
      `${shown.join(" ; ")}${more}. Then redrive or wait for the next run: it re-collects the entity-hour under a new manifest generation.`,
  );
}

const LISTED_OBJECTS = 20;

/**
 * Copies every part the manifest names, each create-only: a part another execution copied already is left
 * as it is. A source that is gone means its execution cleared its staging, which it does only once every
 * entity-hour it claimed has its marker, or that the staging was deleted under a running Commit.
 */
async function copyEntityHour(deps: PublishDeps, manifest: EntityManifest): Promise<void> {
  const { store } = deps;
  const parts = manifestParts(deps.config, manifest);
  await mapConcurrently(parts, COPIES_IN_PARALLEL, async ({ source, destination }) => {
    if ((await store.copyIfAbsent(source, destination)) !== "no-source") return;
    // S3 may answer NoSuchKey for the source before it looks at the destination's precondition.
    if (await store.exists(destination)) return;
    const verdict = stagingVerdict(await checkStaging(deps, manifest));
    throw stagingLostError(deps.store.bucket, deps.config.controlPrefix, manifest, verdict);
  });
}

/** This execution's results for the hour's entities, those it has (all of them unless a redrive cleared them). */
async function readCollected(
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

async function readManifest(store: S3Store, key: string): Promise<EntityManifest | undefined> {
  const stored = await store.getText(key);
  if (!stored) return undefined;
  const manifest = parseEntityManifest(stored.body);
  if (manifest === undefined) throw notAManifest(store, key);
  return manifest;
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
