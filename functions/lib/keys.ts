import { hourParts } from "./hours";

/**
 * Object key naming. Feed keys follow the SPEC's Hive-style layout that the SecOps feed reads; control
 * keys (staging, manifests, watermark) live under the control prefix, outside the feed.
 * Part names are deterministic for an (entity, hour) so a re-run writes the same keys, never new ones.
 */
export const PART_EXTENSION = ".ndjson";

export function partFileName(index: number): string {
  return `part-${String(index).padStart(5, "0")}${PART_EXTENSION}`;
}

function hourPath(hourUtc: string): string {
  const { year, month, day, hour } = hourParts(hourUtc);
  return `year=${year}/month=${month}/day=${day}/hour=${hour}`;
}

export function feedPartKey(feedPrefix: string, entity: string, hourUtc: string, index: number): string {
  return `${feedPrefix}/${entity}/${hourPath(hourUtc)}/${partFileName(index)}`;
}

/** Staging is keyed by execution, so a retried or redriven iteration only ever overwrites its own parts. */
export function stagingItemPrefix(
  controlPrefix: string,
  runId: string,
  entity: string,
  hourUtc: string,
): string {
  return `${controlPrefix}/staging/${runId}/${entity}/${hourPath(hourUtc)}/`;
}

export function stagingPartKey(
  controlPrefix: string,
  runId: string,
  entity: string,
  hourUtc: string,
  index: number,
): string {
  return `${stagingItemPrefix(controlPrefix, runId, entity, hourUtc)}${partFileName(index)}`;
}

export function stagingRunPrefix(controlPrefix: string, runId: string): string {
  return `${controlPrefix}/staging/${runId}/`;
}

/** One create-only manifest per published (entity, hour): whoever creates it is the hour's only publisher. */
export function manifestKey(controlPrefix: string, entity: string, hourUtc: string): string {
  return `${controlPrefix}/manifests/${entity}/${hourPath(hourUtc)}.json`;
}
