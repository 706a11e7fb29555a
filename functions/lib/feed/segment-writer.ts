import { randomBytes } from "node:crypto";
import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import type { PageRecords } from "../citrix/odata-page";
import type { CollectorConfig } from "../config/config";
import type { CollectInput, StagingSegment } from "../config/contracts";
import { Envelope } from "./envelope";
import { stagingPartKey } from "./keys";
import { NdjsonPartWriter } from "./part-writer";

export interface SegmentWriterDeps {
  store: S3Store;
  config: Pick<CollectorConfig, "controlPrefix" | "partMaxRecords" | "partMaxBytes" | "gzip">;
  now: () => number;
  log: Logger;
}

/**
 * Writes this invocation's segment of an entity-hour's staging parts: numbered on from the parts earlier
 * invocations wrote, under an attempt id of its own, so that a retried invocation (which restarts from its
 * input's cursor) never overwrites a part under a name Commit will publish.
 */
export class SegmentWriter {
  private readonly segment: StagingSegment;
  private readonly writer: NdjsonPartWriter;

  constructor(
    private readonly deps: SegmentWriterDeps,
    private readonly input: CollectInput,
  ) {
    const { store, config, log } = deps;
    const segment = {
      attempt: randomBytes(4).toString("hex"),
      firstPart: input.progress?.parts ?? 0,
      parts: 0,
      compressed: config.gzip,
    };
    this.segment = segment;
    this.writer = new NdjsonPartWriter(
      store,
      { maxRecords: config.partMaxRecords, maxBytes: config.partMaxBytes, gzip: config.gzip },
      (part) =>
        stagingPartKey(
          config.controlPrefix,
          input.runId,
          input.entity,
          input.hourUtc,
          segment.attempt,
          segment.firstPart + part,
          segment.compressed,
        ),
      log,
    );
  }

  /** Bytes of the parts as stored (after gzip when on). */
  get storedBytes(): number {
    return this.writer.storedBytes;
  }

  /** Adds a page's records, each in the feed's envelope stamped with the time it is written. */
  add(records: PageRecords): Promise<void> {
    const { entity, hourUtc } = this.input;
    return this.writer.add(new Envelope(entity, hourUtc, new Date(this.deps.now()).toISOString()), records);
  }

  /** Seals the last part and waits until every part is stored: the segment, which may hold no part. */
  async finish(): Promise<StagingSegment> {
    await this.writer.finish();
    this.segment.parts = this.writer.sealed;
    return this.segment;
  }
}
