/**
 * The NDJSON envelope the SecOps "Citrix Analytics" parser expects (field names exactly as the seed's).
 * One record per line, UTF-8, each line terminated by "\n"; JSON.stringify escapes any newline inside
 * a string, so a record can never span lines.
 */
export type ODataRecord = Record<string, unknown>;

export function envelopeLine(
  entity: string,
  hourUtc: string,
  collectedAt: string,
  record: ODataRecord,
): string {
  return `${JSON.stringify({
    citrix_entity: entity,
    citrix_hour_utc: hourUtc,
    collection_timestamp: collectedAt,
    raw: record,
  })}\n`;
}
