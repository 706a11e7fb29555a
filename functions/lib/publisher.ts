import type { CollectorConfig } from "./config";
import type { CollectOutput, CommitInput, CommitOutput, HourReport, StagingSegment } from "./contracts";
import { InvalidInputError } from "./errors";
import { feedPartKey, manifestKey, stagingPartKey, stagingRunPrefix } from "./keys";
import type { Logger } from "./log";
import type { S3Store } from "./s3-store";
import { advanceWatermark } from "./watermark";

export interface PublishDeps {
  store: S3Store;
  config: Pick<CollectorConfig, "feedPrefix" | "controlPrefix" | "stateKey">;
  log: Logger;
}

/** The commit record of one hour: created once (If-None-Match: *), completed once every part is copied. */
export interface HourManifest {
  runId: string;
  hourUtc: string;
  claimedAt: string;
  completedAt: string | null;
  entities: Record<string, { records: number; parts: number; segments: StagingSegment[] }>;
}

/**
 * Commit. For each planned hour, in order: claim it with a create-only manifest, copy its staged parts to
 * their deterministic feed keys (skipping parts already there), mark it complete. An hour another execution
 * completed is skipped; an hour another execution holds but has not completed stops this one ("superseded"):
 * copying it here could race that execution's own copies and show SecOps an object twice. Then the
 * watermark moves forward over the published prefix of hours (scheduled runs only), and staging is cleared.
 * Every step is idempotent for this run, so a Commit that dies half-way finishes when redriven.
 */
export async function publishRun(deps: PublishDeps, input: CommitInput): Promise<CommitOutput> {
  const byHour = groupByHour(input);
  const reports: HourReport[] = [];
  let reason: string | null = null;
  for (const hourUtc of [...input.hours].sort()) {
    const report = await publishHour(deps, input.runId, hourUtc, byHour.get(hourUtc) ?? []);
    reports.push(report);
    if (report.outcome === "being-published-elsewhere") {
      reason = `hour ${hourUtc} is held by execution ${report.publisher}, which has not finished publishing it; this execution stopped there (if ${report.publisher} failed, redrive it)`;
      deps.log.warn("standing down: another execution holds an hour", {
        hour: hourUtc,
        publisher: report.publisher,
      });
      break;
    }
  }

  const before = input.watermark.hourUtc;
  let after = before;
  const publishedPrefix = reports.filter((report) => report.outcome !== "being-published-elsewhere");
  const newest = publishedPrefix[publishedPrefix.length - 1]?.hourUtc;
  // A backfill never moves the watermark: its hours may lie anywhere, before it or after it.
  if (input.mode === "scheduled" && newest !== undefined) {
    after = await advanceWatermark(deps.store, deps.config.stateKey, newest, input.watermark, input.runId);
    deps.log.info("watermark checked", { from: before, to: after });
  }
  const staging = await deps.store.listKeys(stagingRunPrefix(deps.config.controlPrefix, input.runId));
  await deps.store.deleteKeys(staging);
  return {
    runId: input.runId,
    mode: input.mode,
    status: reason === null ? "committed" : "superseded",
    reason,
    hours: reports,
    watermark: { before, after },
  };
}

function groupByHour(input: CommitInput): Map<string, CollectOutput[]> {
  const unfinished = input.collected.filter((item) => !item.done);
  if (unfinished.length > 0) {
    throw new InvalidInputError(
      `PublishAndAdvance received ${unfinished.length} unfinished item(s), first ${unfinished[0]?.entity} ${unfinished[0]?.hourUtc}`,
    );
  }
  const byHour = new Map<string, CollectOutput[]>();
  for (const item of input.collected) byHour.set(item.hourUtc, [...(byHour.get(item.hourUtc) ?? []), item]);
  const missing = input.hours.filter((hourUtc) => !byHour.has(hourUtc));
  if (missing.length > 0)
    throw new InvalidInputError(`PublishAndAdvance received no items for ${missing.join(", ")}`);
  return byHour;
}

async function publishHour(
  deps: PublishDeps,
  runId: string,
  hourUtc: string,
  items: CollectOutput[],
): Promise<HourReport> {
  const { store, config } = deps;
  const log = deps.log.child({ hour: hourUtc });
  const key = manifestKey(config.controlPrefix, hourUtc);
  const proposed: HourManifest = {
    runId,
    hourUtc,
    claimedAt: new Date().toISOString(),
    completedAt: null,
    entities: Object.fromEntries(
      [...items]
        .sort((a, b) => a.entity.localeCompare(b.entity))
        .map((item) => [
          item.entity,
          { records: item.progress.records, parts: item.progress.parts, segments: item.progress.segments },
        ]),
    ),
  };
  const claimed = await store.put(key, JSON.stringify(proposed), "application/json", { ifNoneMatch: "*" });
  const manifest = claimed.written ? proposed : await readManifest(store, key);
  const collected = Object.fromEntries(items.map((item) => [item.entity, item.progress.records]));
  const report = (outcome: HourReport["outcome"]): HourReport => ({
    hourUtc,
    outcome,
    publisher: manifest.runId,
    records: Object.fromEntries(
      [...new Set([...Object.keys(collected), ...Object.keys(manifest.entities)])]
        .sort()
        .map((entity) => [
          entity,
          { collected: collected[entity] ?? 0, published: manifest.entities[entity]?.records ?? 0 },
        ]),
    ),
  });
  if (manifest.runId !== runId) {
    log.info("hour claimed by another execution", {
      publisher: manifest.runId,
      complete: manifest.completedAt !== null,
    });
    return report(manifest.completedAt === null ? "being-published-elsewhere" : "already-published");
  }
  // Ours: claimed now, or on an earlier attempt of this Commit (a retry or a redrive finishing the job).
  if (manifest.completedAt === null) {
    await copyHour(deps, manifest);
    await store.put(
      key,
      JSON.stringify({ ...manifest, completedAt: new Date().toISOString() }),
      "application/json",
    );
  }
  log.info("published hour", { entities: Object.keys(manifest.entities).length });
  return report("published");
}

/** Copies every part the manifest names, skipping feed keys already written: a feed object is written once. */
async function copyHour(deps: PublishDeps, manifest: HourManifest): Promise<void> {
  const { store, config } = deps;
  for (const [entity, published] of Object.entries(manifest.entities)) {
    for (const segment of published.segments) {
      for (let part = segment.firstPart; part < segment.firstPart + segment.parts; part++) {
        const destination = feedPartKey(
          config.feedPrefix,
          entity,
          manifest.hourUtc,
          part,
          segment.compressed,
        );
        if (await store.exists(destination)) continue;
        const source = stagingPartKey(
          config.controlPrefix,
          manifest.runId,
          entity,
          manifest.hourUtc,
          segment.attempt,
          part,
          segment.compressed,
        );
        await store.copy(source, destination);
      }
    }
  }
}

async function readManifest(store: S3Store, key: string): Promise<HourManifest> {
  const stored = await store.getText(key);
  if (!stored) {
    // Create-only failed, so it existed a moment ago: only a manual delete in between gets here.
    throw new InvalidInputError(`manifest s3://${store.bucket}/${key} vanished while this execution read it`);
  }
  try {
    return JSON.parse(stored.body) as HourManifest;
  } catch {
    throw new InvalidInputError(
      `manifest s3://${store.bucket}/${key} is not JSON; inspect it before redriving`,
    );
  }
}
