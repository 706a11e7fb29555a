import { promisify } from "node:util";
import { gzip } from "node:zlib";
import type { Logger } from "./log";
import type { S3Store } from "./s3-store";

const gzipAsync = promisify(gzip);

export interface PartLimits {
  maxRecords: number;
  maxBytes: number;
  gzip: boolean;
}

/**
 * Cuts NDJSON lines into parts bounded by record count and bytes, and uploads each part while the caller
 * goes on paging. Lines are encoded straight into one buffer per part (joining strings first costs more
 * than the encoding), and at most one upload is in flight: memory stays at about two parts plus a page,
 * whatever the volume of the hour. Gzip runs on libuv's thread pool, off the thread that parses pages.
 */
export class NdjsonPartWriter {
  private buffer: Buffer | undefined;
  private used = 0;
  private records = 0;
  private upload: Promise<void> = Promise.resolve();
  /** Parts sealed so far (uploaded or uploading). */
  sealed = 0;
  /** Bytes of the parts as stored (after gzip when on). */
  storedBytes = 0;

  constructor(
    private readonly store: S3Store,
    private readonly limits: PartLimits,
    private readonly keyFor: (part: number) => string,
    private readonly log: Logger,
  ) {}

  async add(lines: readonly string[]): Promise<void> {
    for (const line of lines) {
      const size = Buffer.byteLength(line);
      if (
        this.records > 0 &&
        (this.records >= this.limits.maxRecords || this.used + size > this.limits.maxBytes)
      ) {
        await this.seal();
      }
      // A line longer than a part gets a part of its own.
      if (!this.buffer || this.used + size > this.buffer.length) this.grow(size);
      this.used += (this.buffer as Buffer).write(line, this.used, "utf8");
      this.records++;
    }
  }

  /** Seals the open part (if any) and waits until every part is stored. */
  async finish(): Promise<void> {
    if (this.records > 0) await this.seal();
    await this.upload;
  }

  private grow(needed: number): void {
    const next = Buffer.allocUnsafe(Math.max(this.limits.maxBytes, this.used + needed));
    this.buffer?.copy(next, 0, 0, this.used);
    this.buffer = next;
  }

  private async seal(): Promise<void> {
    const plain = (this.buffer as Buffer).subarray(0, this.used);
    const records = this.records;
    const part = this.sealed++;
    this.buffer = undefined;
    this.used = 0;
    this.records = 0;
    // Wait for the previous upload first: that bounds memory and keeps part order in the logs.
    await this.upload;
    this.upload = (async () => {
      const body = this.limits.gzip ? await gzipAsync(plain) : plain;
      await this.store.put(
        this.keyFor(part),
        body,
        this.limits.gzip ? "application/gzip" : "application/x-ndjson",
      );
      this.storedBytes += body.byteLength;
      this.log.info("wrote staging part", { part, records, bytes: body.byteLength });
    })();
    // An upload failure surfaces at the next seal or at finish(); never as an unhandled rejection.
    this.upload.catch(() => undefined);
  }
}
