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

/** One create-only manifest per hour: it fixes, once, which staging parts become the hour's feed objects. */
export function manifestKey(controlPrefix: string, hourUtc: string): string {
  return `${controlPrefix}/manifests/${hourPath(hourUtc)}.json`;
}

/**
 * A small object written once every feed object a manifest names exists: the hour is published. Keys sort
 * in hour order, so the hours published after the watermark are one ListObjectsV2 with StartAfter.
 */
export function publishedMarkerKey(controlPrefix: string, hourUtc: string): string {
  return `${publishedPrefix(controlPrefix)}${hourPath(hourUtc)}`;
}

export function publishedPrefix(controlPrefix: string): string {
  return `${controlPrefix}/published/`;
}

/** The hour a published marker stands for, or undefined for a key that is not one. */
export function hourOfPublishedMarker(controlPrefix: string, key: string): string | undefined {
  if (!key.startsWith(publishedPrefix(controlPrefix))) return undefined;
  return hourOfPath(key.slice(publishedPrefix(controlPrefix).length));
}

/** The inverse of hourPath. */
function hourOfPath(path: string): string | undefined {
  const match = /^year=(\d{4})\/month=(\d{2})\/day=(\d{2})\/hour=(\d{2})$/.exec(path);
  return match ? `${match[1]}-${match[2]}-${match[3]}T${match[4]}:00:00Z` : undefined;
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
