import type { S3Store } from "../aws/s3-store";
import { type StagingSegment, stagingSegmentSchema } from "../config/contracts";
import { InvalidInputError } from "../config/errors";
import { legacyManifestKey } from "./keys";

/**
 * The commit record of one entity-hour's generation, created once (If-None-Match: *): it fixes which staging
 * parts of which execution become the entity-hour's feed objects. Whoever finds it, its creator or any later
 * execution, copies exactly those parts, each create-only, and then writes the entity-hour's published marker.
 */
export interface EntityManifest {
  runId: string;
  hourUtc: string;
  entity: string;
  /** 1 for the first claim; a higher one supersedes a generation none of whose parts can reach the feed. */
  generation: number;
  claimedAt: string;
  records: number;
  parts: number;
  segments: StagingSegment[];
}

/** The per-hour manifest deployments wrote before entity-hours were published one by one. */
export interface LegacyHourManifest {
  runId: string;
  hourUtc: string;
  claimedAt: string;
  entities: Record<string, { records: number; parts: number; segments: StagingSegment[] }>;
}

/** An entity-hour manifest's fields, or undefined when the text is not one. */
export function parseEntityManifest(text: string): EntityManifest | undefined {
  const manifest = parseJson(text) as Partial<EntityManifest> | undefined;
  if (
    typeof manifest?.runId !== "string" ||
    typeof manifest.hourUtc !== "string" ||
    typeof manifest.entity !== "string" ||
    !Number.isInteger(manifest.generation) ||
    typeof manifest.records !== "number" ||
    !validSegments(manifest.segments)
  ) {
    return undefined;
  }
  return manifest as EntityManifest;
}

/** A legacy per-hour manifest's fields, or undefined when the text is not one. */
export function parseLegacyManifest(text: string): LegacyHourManifest | undefined {
  const manifest = parseJson(text) as Partial<LegacyHourManifest> | undefined;
  if (
    typeof manifest?.runId !== "string" ||
    typeof manifest.hourUtc !== "string" ||
    typeof manifest.entities !== "object" ||
    manifest.entities === null ||
    !Object.values(manifest.entities).every((slice) => validSegments(slice?.segments))
  ) {
    return undefined;
  }
  return manifest as LegacyHourManifest;
}

/**
 * One entity's part of a legacy per-hour manifest, as the generation-1 manifest it stands for: an hour
 * claimed before the upgrade is finished from exactly the parts it named.
 */
export function legacyEntityManifest(legacy: LegacyHourManifest, entity: string): EntityManifest | undefined {
  const slice = legacy.entities[entity];
  if (slice === undefined) return undefined;
  return {
    runId: legacy.runId,
    hourUtc: legacy.hourUtc,
    entity,
    generation: 1,
    claimedAt: legacy.claimedAt,
    records: slice.records,
    parts: slice.parts,
    segments: slice.segments,
  };
}

/** The legacy manifest of an hour, if a deployment before the upgrade claimed it. */
export async function readLegacyManifest(
  store: S3Store,
  controlPrefix: string,
  hourUtc: string,
): Promise<LegacyHourManifest | undefined> {
  const key = legacyManifestKey(controlPrefix, hourUtc);
  const stored = await store.getText(key);
  if (stored === undefined) return undefined;
  const manifest = parseLegacyManifest(stored.body);
  if (manifest === undefined) throw notAManifest(store, key);
  return manifest;
}

export function notAManifest(store: S3Store, key: string): Error {
  return new InvalidInputError(
    `manifest s3://${store.bucket}/${key} is not a manifest; inspect it before redriving`,
  );
}

function validSegments(segments: unknown): segments is StagingSegment[] {
  return (
    Array.isArray(segments) && segments.every((segment) => stagingSegmentSchema.safeParse(segment).success)
  );
}

/** The value of a JSON text, or undefined when it is not JSON (a control object someone edited by hand). */
export function parseJson(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Not JSON: no value.
  }
  return value;
}
