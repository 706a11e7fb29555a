import type { CollectorConfig } from "./config";
import type { CollectOutput, CommitInput, CommitOutput, PublishedItem } from "./contracts";
import { ConcurrentExecutionError, InvalidInputError } from "./errors";
import { feedPartKey, manifestKey, stagingPartKey, stagingRunPrefix } from "./keys";
import type { Logger } from "./log";
import type { S3Store } from "./s3-store";
import { advanceWatermark } from "./watermark";

export interface PublishDeps {
  store: S3Store;
  config: Pick<CollectorConfig, "feedPrefix" | "controlPrefix" | "stateKey">;
  log: Logger;
}

interface Manifest {
  runId: string;
  entity: string;
  hourUtc: string;
  parts: number;
  records: number;
  createdAt: string;
}

/**
 * Commit: publish every collected (entity, hour) from staging into the feed prefix, then advance the
 * watermark, then clear staging. Each step is idempotent for this run, so a Commit that dies half-way
 * finishes correctly when the execution is redriven.
 */
export async function publishRun(deps: PublishDeps, input: CommitInput): Promise<CommitOutput> {
  const unfinished = input.collected.filter((item) => !item.done);
  if (unfinished.length > 0) {
    throw new InvalidInputError(
      `Commit received ${unfinished.length} unfinished item(s), first ${unfinished[0]?.entity} ${unfinished[0]?.hourUtc}`,
    );
  }
  const ordered = [...input.collected].sort(
    (a, b) => a.hourUtc.localeCompare(b.hourUtc) || a.entity.localeCompare(b.entity),
  );
  const published: PublishedItem[] = [];
  for (const item of ordered) published.push(await publishEntityHour(deps, input.runId, item));

  const target = input.hours[input.hours.length - 1] as string;
  const before = input.watermark.hourUtc;
  // Hours are planned after the watermark, so this only ever moves it forward.
  const advance = before === null || target > before;
  if (advance) {
    await advanceWatermark(deps.store, deps.config.stateKey, target, input.watermark, input.runId);
    deps.log.info("watermark advanced", { from: before, to: target });
  }
  const staging = await deps.store.listKeys(stagingRunPrefix(deps.config.controlPrefix, input.runId));
  await deps.store.deleteKeys(staging);
  return {
    runId: input.runId,
    published,
    watermark: { before, after: advance ? target : (before as string) },
  };
}

async function publishEntityHour(
  deps: PublishDeps,
  runId: string,
  item: CollectOutput,
): Promise<PublishedItem> {
  const { store, config } = deps;
  const log = deps.log.child({ entity: item.entity, hour: item.hourUtc });
  const manifest: Manifest = {
    runId,
    entity: item.entity,
    hourUtc: item.hourUtc,
    parts: item.progress.parts,
    records: item.progress.records,
    createdAt: new Date().toISOString(),
  };
  const key = manifestKey(config.controlPrefix, item.entity, item.hourUtc);
  const claim = await store.put(key, JSON.stringify(manifest), "application/json", { ifNoneMatch: "*" });
  let outcome: PublishedItem["outcome"] = "published";
  if (!claim.written) {
    const existing = await store.getText(key);
    const owner = existing ? (JSON.parse(existing.body) as Partial<Manifest>).runId : undefined;
    if (owner !== runId) {
      throw new ConcurrentExecutionError(
        `${item.entity} ${item.hourUtc} was already published by execution ${owner}; this execution publishes nothing twice`,
      );
    }
    outcome = "already-published-by-this-run";
  }
  // Copy only parts not yet in the feed: a feed object is written once, never overwritten.
  for (let index = 0; index < item.progress.parts; index++) {
    const destination = feedPartKey(config.feedPrefix, item.entity, item.hourUtc, index);
    if (await store.exists(destination)) continue;
    await store.copy(
      stagingPartKey(config.controlPrefix, runId, item.entity, item.hourUtc, index),
      destination,
    );
  }
  log.info("published entity-hour", { parts: item.progress.parts, records: item.progress.records, outcome });
  return {
    entity: item.entity,
    hourUtc: item.hourUtc,
    parts: item.progress.parts,
    records: item.progress.records,
    outcome,
  };
}
