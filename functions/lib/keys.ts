import { hourParts } from "./hours";

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

/** One create-only manifest per hour: whoever creates it is that hour's only publisher. */
export function manifestKey(controlPrefix: string, hourUtc: string): string {
  return `${controlPrefix}/manifests/${hourPath(hourUtc)}.json`;
}
