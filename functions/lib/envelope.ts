/**
 * The NDJSON envelope the SecOps "Citrix Analytics" parser expects (field names exactly as the seed's).
 * One record per line, UTF-8, each line terminated by "\n"; JSON.stringify escapes any newline inside
 * a string, so a record can never span lines.
 */
export type ODataRecord = Record<string, unknown>;

/**
 * Builds lines for many records that share entity, hour and collection time. Byte for byte the same as
 * JSON.stringify of the envelope object, without building one object per record.
 */
export function envelopeWriter(
  entity: string,
  hourUtc: string,
  collectedAt: string,
): (record: ODataRecord) => string {
  const head = `{"citrix_entity":${JSON.stringify(entity)},"citrix_hour_utc":${JSON.stringify(hourUtc)},"collection_timestamp":${JSON.stringify(collectedAt)},"raw":`;
  return (record) => `${head}${JSON.stringify(record)}}\n`;
}
