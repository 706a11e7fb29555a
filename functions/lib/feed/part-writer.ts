import { promisify } from "node:util";
import { gzip } from "node:zlib";
import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import type { PageRecords } from "../citrix/odata-page";
import type { Envelope } from "./envelope";

const gzipAsync = promisify(gzip);

export interface PartLimits {
  maxRecords: number;
  maxBytes: number;
  gzip: boolean;
}

/**
 * Cuts NDJSON lines into parts bounded by record count and bytes, and uploads each part while the caller
 * goes on paging. Lines are copied straight from the page into one buffer per part, and at most one upload
 * is in flight: memory stays at about two parts plus a page, whatever the volume of the hour. Gzip runs on
 * libuv's thread pool, off the thread that scans pages.
 */
export class NdjsonPartWriter {
  private buffer: Buffer | undefined;
  /**
   * The buffer of the last part stored, filled again by the next part: a fresh 8 MiB buffer per part
   * faults its memory in anew and, being off-heap, drives V8 into a full garbage collection every few parts.
   */
  private spare: Buffer | undefined;
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

  /** Adds one line per record, each record in `envelope`. */
  async add(envelope: Envelope, records: PageRecords): Promise<void> {
    for (let index = 0; index < records.length; index++) {
      const size = envelope.lineLength(records, index);
      if (
        this.records > 0 &&
        (this.records >= this.limits.maxRecords || this.used + size > this.limits.maxBytes)
      ) {
        await this.seal();
      }
      // Every line fits the open part's buffer: a part is sealed before a line would overflow it.
      this.buffer ??= this.open(size);
      this.used += envelope.writeLine(records, index, this.buffer, this.used);
      this.records++;
    }
  }

  /** Seals the open part (if any) and waits until every part is stored. */
  async finish(): Promise<void> {
    if (this.records > 0) await this.seal();
    await this.upload;
  }

  /** A buffer for a new part starting with a line of `firstLine` bytes; a longer line gets a part of its own. */
  private open(firstLine: number): Buffer {
    const size = Math.max(this.limits.maxBytes, firstLine);
    const buffer = this.spare && this.spare.length >= size ? this.spare : Buffer.allocUnsafe(size);
    // Taken, so no later part is handed it while this one's upload still reads it.
    this.spare = undefined;
    return buffer;
  }

  private async seal(): Promise<void> {
    const filled = this.buffer as Buffer;
    const plain = filled.subarray(0, this.used);
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
      this.spare = filled;
      this.log.info("wrote staging part", { part, records, bytes: body.byteLength });
    })();
    // An upload failure surfaces at the next seal or at finish(); never as an unhandled rejection.
    this.upload.catch(() => undefined);
  }
}
