import { hourParts } from "../config/hours";

/**
 * Object key naming. Feed keys follow the SPEC's Hive-style layout that the SecOps feed reads; control
 * keys (staging, manifests, watermark) live under the control prefix, outside the feed.
 * Part names are deterministic for an (entity, hour) so a re-run writes the same keys, never new ones.
 */
export function partFileName(index: number, compressed = false): string {
  return `part-${String(index).padStart(5, "0")}${compressed ? ".ndjson.gz" : ".ndjson"}`;
}

function hourPath(hourUtc: string): string {
  const { year, month, day, hour } = hourParts(hourUtc);
  return `year=${year}/month=${month}/day=${day}/hour=${hour}`;
}

export function feedPartKey(
  feedPrefix: string,
  entity: string,
  hourUtc: string,
  index: number,
  compressed = false,
): string {
  return `${feedPrefix}/${entity}/${hourPath(hourUtc)}/${partFileName(index, compressed)}`;
}

/**
 * Staging is keyed by execution and by invocation attempt: a retried or redriven invocation writes new
 * names, so an invocation that Step Functions gave up on but that still runs can never overwrite a part
 * Commit publishes. Commit publishes only the attempts the successful chain reported.
 */
export function stagingPartKey(
  controlPrefix: string,
  runId: string,
  entity: string,
  hourUtc: string,
  attempt: string,
  index: number,
  compressed = false,
): string {
  return `${stagingRunPrefix(controlPrefix, runId)}${entity}/${hourPath(hourUtc)}/${attempt}-${partFileName(index, compressed)}`;
}

export function stagingRunPrefix(controlPrefix: string, runId: string): string {
  return `${controlPrefix}/staging/${runId}/`;
}

/** Where every collectedResultKey of a run is: how many entity-hours of it have finished. */
export function collectedResultPrefix(controlPrefix: string, runId: string): string {
  return `${stagingRunPrefix(controlPrefix, runId)}collected/`;
}

/** Where the runFinishedKey of a run's Map items are: how many of them have finished. */
export function runFinishedPrefix(controlPrefix: string, runId: string): string {
  return `${stagingRunPrefix(controlPrefix, runId)}runs-finished/`;
}

/** Written when the Map item at `itemIndex` (a run of entity-hours, see planRuns) has collected all of them. */
export function runFinishedKey(controlPrefix: string, runId: string, itemIndex: number): string {
  return `${runFinishedPrefix(controlPrefix, runId)}item-${itemIndex}.json`;
}

/**
 * What one entity-hour's collection produced (its staging segments and counts), written by the invocation
 * that finished it. Commit reads these instead of receiving them through the state, which keeps the Map's
 * output small at any number of items.
 */
export function collectedResultKey(
  controlPrefix: string,
  runId: string,
  entity: string,
  hourUtc: string,
): string {
  return `${collectedResultPrefix(controlPrefix, runId)}${entity}/${hourPath(hourUtc)}.json`;
}

/**
 * The create-only manifest of one entity-hour's generation: it fixes, once, which staging parts become that
 * entity-hour's feed objects. Generation 1 is `<entity>.json`, later ones `<entity>.g<N>.json`; the highest
 * generation is current. A new generation is claimed only when no part of the previous one can ever reach
 * the feed (see the publisher), so each feed key still has one manifest that names it.
 */
export function manifestKey(controlPrefix: string, hourUtc: string, entity: string, generation = 1): string {
  const suffix = generation === 1 ? "" : `.g${generation}`;
  return `${manifestHourPrefix(controlPrefix, hourUtc)}/${entity}${suffix}.json`;
}

/**
 * Every manifest of an hour, the legacy per-hour one included: one ListObjectsV2 finds the current
 * generation of each entity.
 */
export function manifestHourPrefix(controlPrefix: string, hourUtc: string): string {
  return `${controlPrefix}/manifests/${hourPath(hourUtc)}`;
}

/** The entity and generation a key under manifestHourPrefix names, or undefined for another key (the legacy one). */
export function manifestOfKey(
  hourPrefix: string,
  key: string,
): { entity: string; generation: number } | undefined {
  if (!key.startsWith(hourPrefix)) return undefined;
  const match = /^\/([A-Za-z][A-Za-z0-9_]*)(?:\.g([2-9]|[1-9]\d+))?\.json$/.exec(
    key.slice(hourPrefix.length),
  );
  if (!match) return undefined;
  return { entity: match[1] as string, generation: match[2] === undefined ? 1 : Number(match[2]) };
}

/**
 * The per-hour manifest of deployments before entity-hours were published one by one: still honoured for
 * the entities it lists (an hour claimed before an upgrade is finished from it), never written any more.
 */
export function legacyManifestKey(controlPrefix: string, hourUtc: string): string {
  return `${manifestHourPrefix(controlPrefix, hourUtc)}.json`;
}

/**
 * A small object written once every feed object an entity-hour's manifest names exists: that entity-hour is
 * published. Keys sort in hour order, so what was published after the watermark is one ListObjectsV2 with
 * StartAfter (publishedAfterKey).
 */
export function publishedMarkerKey(controlPrefix: string, hourUtc: string, entity: string): string {
  return `${publishedHourPrefix(controlPrefix, hourUtc)}/${entity}`;
}

/** Every marker of an hour, the legacy per-hour one included: one ListObjectsV2. */
export function publishedHourPrefix(controlPrefix: string, hourUtc: string): string {
  return `${publishedPrefix(controlPrefix)}${hourPath(hourUtc)}`;
}

/**
 * The marker of a whole hour written by deployments before entity-hours were published one by one: it
 * stands for the entities its legacy manifest lists.
 */
export function legacyPublishedMarkerKey(controlPrefix: string, hourUtc: string): string {
  return publishedHourPrefix(controlPrefix, hourUtc);
}

export function publishedPrefix(controlPrefix: string): string {
  return `${controlPrefix}/published/`;
}

/**
 * StartAfter for the markers of hours after `hourUtc`: past that hour's own markers, since "~" sorts after
 * every character of an entity name, and before the next hour's.
 */
export function publishedAfterKey(controlPrefix: string, hourUtc: string): string {
  return `${publishedHourPrefix(controlPrefix, hourUtc)}/~`;
}

/** What a marker key stands for: an entity-hour, or (entity undefined) a legacy whole-hour marker. */
export interface PublishedMarkerRef {
  hourUtc: string;
  entity: string | undefined;
}

/** The entity-hour (or legacy hour) a published marker stands for, or undefined for a key that is not one. */
export function publishedMarkerOfKey(controlPrefix: string, key: string): PublishedMarkerRef | undefined {
  if (!key.startsWith(publishedPrefix(controlPrefix))) return undefined;
  const match = /^(year=\d{4}\/month=\d{2}\/day=\d{2}\/hour=\d{2})(?:\/([A-Za-z][A-Za-z0-9_]*))?$/.exec(
    key.slice(publishedPrefix(controlPrefix).length),
  );
  const hourUtc = match ? hourOfPath(match[1] as string) : undefined;
  return hourUtc === undefined ? undefined : { hourUtc, entity: match?.[2] };
}

/** The inverse of hourPath. */
function hourOfPath(path: string): string | undefined {
  const match = /^year=(\d{4})\/month=(\d{2})\/day=(\d{2})\/hour=(\d{2})$/.exec(path);
  return match ? `${match[1]}-${match[2]}-${match[3]}T${match[4]}:00:00Z` : undefined;
}

/**
 * Where the first scheduled run records, create-only, the hour it starts at: every first run that finds no
 * watermark reads the same hour, so two first runs on either side of the minute an hour falls due agree.
 */
export function firstHourKey(controlPrefix: string): string {
  return `${controlPrefix}/first-hour.json`;
}

/**
 * The hours a scheduled execution is collecting, written by its Plan and deleted by its Commit: another
 * execution that finds the lease held by a running execution does not collect those hours again.
 */
export function leaseKey(controlPrefix: string, runId: string): string {
  return `${leasePrefix(controlPrefix)}${runId}.json`;
}

export function leasePrefix(controlPrefix: string): string {
  return `${controlPrefix}/leases/`;
}

/**
 * The page window the Citrix API last allowed one entity-hour (see PageWindow): iterations that start later
 * begin there instead of finding the customer's rate limit again by being throttled.
 */
export function pageWindowHintKey(controlPrefix: string): string {
  return `${controlPrefix}/page-window.json`;
}
