import type { PageRecords } from "../citrix/odata-page";

const TAIL = Buffer.from("}\n");

/**
 * The NDJSON envelope the SecOps "Citrix Analytics" parser expects (field names exactly as the seed's):
 * `{"citrix_entity":…,"citrix_hour_utc":…,"collection_timestamp":…,"raw":<the record as the API sent it>}`
 * and a "\n". Each record is one JSON object on one line, as the API sent it (see readODataPage), so a
 * line is valid UTF-8 JSON and never spans lines. The head is encoded once for all records of a page.
 */
export class Envelope {
  private readonly head: Buffer;

  constructor(entity: string, hourUtc: string, collectedAt: string) {
    this.head = Buffer.from(
      `{"citrix_entity":${JSON.stringify(entity)},"citrix_hour_utc":${JSON.stringify(hourUtc)},"collection_timestamp":${JSON.stringify(collectedAt)},"raw":`,
    );
  }

  /** The length of the line for record `index` of `records`. */
  lineLength(records: PageRecords, index: number): number {
    return this.head.length + records.byteLength(index) + TAIL.length;
  }

  /** Writes the line for record `index` into `target` at `offset` (which must have room); returns its length. */
  writeLine(records: PageRecords, index: number, target: Buffer, offset: number): number {
    let at = offset + this.head.copy(target, offset);
    at += records.copy(index, target, at);
    return at + TAIL.copy(target, at) - offset;
  }
}
