import { gunzipSync } from "node:zlib";
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { S3Store } from "../functions/lib/aws/s3-store";
import type { WatermarkLocation } from "../functions/lib/config/config";
import { parseHour } from "../functions/lib/config/hours";
import {
  feedPartKey,
  firstHourKey,
  leasePrefix,
  manifestOfKey,
  pageWindowHintKey,
  publishedMarkerOfKey,
} from "../functions/lib/feed/keys";
import { parseEntityManifest } from "../functions/lib/feed/manifest";
import { readWatermark } from "../functions/lib/feed/watermark";
import { formatCount, type Output, UsageError } from "./context";

export interface FeedOptions {
  /** With `hour`: print this entity-hour's records instead of the overview. */
  entity?: string;
  hour?: string;
}

/** What `feed` reads: the bucket (the local one a `run --data DIR` keeps) and where to write. */
export interface FeedIo {
  s3: S3Client;
  location: WatermarkLocation;
  stdout: Output;
}

interface Listed {
  key: string;
  size: number;
}

/** One entity-hour as the feed, its manifest and its marker show it. */
interface EntityHourRow {
  hourUtc: string;
  entity: string;
  parts: number;
  bytes: number;
  manifest?: { generation: number; runId: string; records: number; parts: number };
  marker?: { by: string; at: string };
}

/**
 * `feed --data DIR`: the feed by entity and hour, and every control object in plain words; with `--entity`
 * and `--hour`, that entity-hour's records, decompressed, one JSON object a line as SecOps reads them.
 */
export async function feed(io: FeedIo, options: FeedOptions): Promise<number> {
  if ((options.entity === undefined) !== (options.hour === undefined)) {
    throw new UsageError("feed prints one entity-hour's records with both --entity and --hour");
  }
  if (options.entity !== undefined && options.hour !== undefined) {
    return printRecords(io, options.entity, options.hour);
  }
  return printOverview(io);
}

async function printRecords(io: FeedIo, entity: string, hour: string): Promise<number> {
  const hourMs = parseHour(hour);
  if (hourMs === undefined)
    throw new UsageError(`--hour (${hour}) is not a whole UTC hour like "2026-11-20T05:00:00Z"`);
  const folder = feedPartKey(io.location.feedPrefix, entity, hour, 0).replace(/[^/]*$/, "");
  const parts = await listObjects(io, folder);
  if (parts.length === 0) {
    const published = entityHours(io.location, await listObjects(io, `${io.location.feedPrefix}/`));
    const which = published.length === 0 ? "the feed is empty" : `the feed has ${describeHours(published)}`;
    throw new UsageError(`no feed objects for ${entity} at ${hour} (${folder}): ${which}`);
  }
  for (const part of parts) {
    const response = await io.s3.send(new GetObjectCommand({ Bucket: io.location.bucket, Key: part.key }));
    const body = Buffer.from((await response.Body?.transformToByteArray()) ?? []);
    io.stdout.write((part.key.endsWith(".gz") ? gunzipSync(body) : body).toString("utf8"));
  }
  return 0;
}

async function printOverview(io: FeedIo): Promise<number> {
  const { bucket, feedPrefix, controlPrefix } = io.location;
  const store = new S3Store(io.s3, bucket);
  const out = (line = "") => io.stdout.write(`${line}\n`);
  const [feedObjects, controlObjects] = await Promise.all([
    listObjects(io, `${feedPrefix}/`),
    listObjects(io, `${controlPrefix}/`),
  ]);
  const rows = new Map(entityHours(io.location, feedObjects).map((row) => [rowKey(row), row]));
  const row = (hourUtc: string, entity: string): EntityHourRow => {
    const existing = rows.get(rowKey({ hourUtc, entity }));
    if (existing) return existing;
    const added = { hourUtc, entity, parts: 0, bytes: 0 };
    rows.set(rowKey(added), added);
    return added;
  };
  const unexplained: string[] = [];
  const staging = new Map<string, number>();
  const leases: string[] = [];
  for (const { key } of controlObjects) {
    const manifest = manifestKeyOf(controlPrefix, key);
    const marker = publishedMarkerOfKey(controlPrefix, key);
    const stagingRun = new RegExp(`^${escapeRegExp(controlPrefix)}/staging/([^/]+)/`).exec(key)?.[1];
    if (manifest) {
      const body = parseEntityManifest((await store.getText(key))?.body ?? "");
      const current = row(manifest.hourUtc, manifest.entity).manifest;
      if (body && (current === undefined || body.generation > current.generation)) {
        row(manifest.hourUtc, manifest.entity).manifest = body;
      }
    } else if (marker?.entity !== undefined) {
      // A legacy whole-hour marker (no entity) is listed under "Other".
      const body = parseJson((await store.getText(key))?.body) as { by?: string; at?: string } | undefined;
      row(marker.hourUtc, marker.entity).marker = { by: body?.by ?? "?", at: body?.at ?? "?" };
    } else if (stagingRun !== undefined) {
      staging.set(stagingRun, (staging.get(stagingRun) ?? 0) + 1);
    } else if (key.startsWith(leasePrefix(controlPrefix))) {
      leases.push(leaseLine(parseJson((await store.getText(key))?.body), key));
    } else if (
      ![io.location.stateKey, firstHourKey(controlPrefix), pageWindowHintKey(controlPrefix)].includes(key)
    ) {
      unexplained.push(key);
    }
  }

  out(`Bucket  s3://${bucket}  (feed ${feedPrefix}/, control objects ${controlPrefix}/)`);
  out();
  if (rows.size === 0) out("The feed is empty: no entity-hour was published yet.");
  else printEntityHours([...rows.values()], out);
  out();
  out("Control objects:");
  const watermark = await readWatermark(store, io.location.stateKey, io.location.seedStateKey);
  out(
    `  Watermark    ${
      watermark.hourUtc === null
        ? "none yet: no scheduled run has moved it"
        : `${watermark.hourUtc}: every hour up to it is published for every entity`
    } (${io.location.stateKey})`,
  );
  const first = parseJson((await store.getText(firstHourKey(controlPrefix)))?.body) as
    | { hourUtc?: string; by?: string; at?: string }
    | undefined;
  out(
    `  First hour   ${
      first?.hourUtc === undefined
        ? "not recorded: no first run planned yet"
        : `${first.hourUtc}: the first run started there (recorded by ${first.by} at ${first.at})`
    }`,
  );
  out(
    `  Leases       ${leases.length === 0 ? "none: no scheduled execution is collecting" : leases.join("; ")}`,
  );
  const hint = parseJson((await store.getText(pageWindowHintKey(controlPrefix)))?.body) as
    | { limit?: number; throttled?: boolean; at?: string }
    | undefined;
  out(
    `  Page window  ${
      hint?.limit === undefined
        ? "not learned yet: the first iteration finds the Citrix API's limit"
        : `the Citrix API allowed ${hint.limit} page request(s) in flight${hint.throttled ? " and pushed back above that" : ""} (learned at ${hint.at}; iterations of the next 24 hours start there)`
    }`,
  );
  const stagingLines = [...staging].map(([runId, count]) => `${runId} (${count} object(s))`);
  out(
    `  Staging      ${stagingLines.length === 0 ? "none: every claimed entity-hour is published" : `left by ${stagingLines.join(", ")}`}`,
  );
  for (const key of unexplained) out(`  Other        ${key}`);
  return 0;
}

function printEntityHours(rows: EntityHourRow[], out: (line?: string) => void): void {
  rows.sort((a, b) => a.hourUtc.localeCompare(b.hourUtc) || a.entity.localeCompare(b.entity));
  const entityWidth = Math.max(6, ...rows.map((row) => row.entity.length));
  out(
    `${"HOUR (UTC)".padEnd(20)}  ${"ENTITY".padEnd(entityWidth)}  ${"PARTS".padStart(5)}  ${"RECORDS".padStart(9)}  ${"BYTES".padStart(11)}  MANIFEST, MARKER`,
  );
  for (const row of rows) {
    const records = row.manifest ? formatCount(row.manifest.records) : "?";
    const manifest = row.manifest
      ? `generation ${row.manifest.generation} by ${row.manifest.runId}`
      : "no manifest (not claimed by a Commit)";
    const marker = row.marker
      ? `published by ${row.marker.by} at ${row.marker.at}`
      : "not published yet (no marker)";
    out(
      `${row.hourUtc.padEnd(20)}  ${row.entity.padEnd(entityWidth)}  ${String(row.parts).padStart(5)}  ${records.padStart(9)}  ${formatCount(row.bytes).padStart(11)}  ${manifest}, ${marker}`,
    );
  }
  out();
  out(
    `${rows.length} entity-hour(s). One hour's records: citrix-collector feed --data DIR --entity ${rows[0]?.entity} --hour ${rows[0]?.hourUtc}`,
  );
}

/** The entity-hours the feed objects belong to, with their parts and bytes. */
function entityHours(location: WatermarkLocation, objects: Listed[]): EntityHourRow[] {
  const rows = new Map<string, EntityHourRow>();
  for (const { key, size } of objects) {
    const match =
      /^([^/]+)\/year=(\d{4})\/month=(\d{2})\/day=(\d{2})\/hour=(\d{2})\/part-\d+\.ndjson(\.gz)?$/.exec(
        key.slice(location.feedPrefix.length + 1),
      );
    if (!match) continue;
    const [, entity = "", year, month, day, hour] = match;
    const hourUtc = `${year}-${month}-${day}T${hour}:00:00Z`;
    const row = rows.get(rowKey({ hourUtc, entity })) ?? { hourUtc, entity, parts: 0, bytes: 0 };
    row.parts += 1;
    row.bytes += size;
    rows.set(rowKey(row), row);
  }
  return [...rows.values()];
}

/** "sessions at 2026-11-24T08:00:00Z and 2 more": what the feed holds, for a message naming a missing one. */
function describeHours(rows: EntityHourRow[]): string {
  const [first] = rows;
  const more = rows.length > 1 ? ` and ${rows.length - 1} more entity-hour(s)` : "";
  return `${first?.entity} at ${first?.hourUtc}${more}`;
}

/** The entity-hour a manifest key names (a legacy per-hour manifest is none). */
function manifestKeyOf(controlPrefix: string, key: string): { hourUtc: string; entity: string } | undefined {
  const match = new RegExp(
    `^${escapeRegExp(controlPrefix)}/manifests/year=(\\d{4})/month=(\\d{2})/day=(\\d{2})/hour=(\\d{2})(/.*)$`,
  ).exec(key);
  if (!match) return undefined;
  const hourUtc = `${match[1]}-${match[2]}-${match[3]}T${match[4]}:00:00Z`;
  const prefix = key.slice(0, key.length - (match[5] ?? "").length);
  const manifest = manifestOfKey(prefix, key);
  return manifest && { hourUtc, entity: manifest.entity };
}

function leaseLine(lease: unknown, key: string): string {
  const { runId, hours, plannedAt } = (lease ?? {}) as {
    runId?: string;
    hours?: string[];
    plannedAt?: string;
  };
  if (runId === undefined || !Array.isArray(hours)) return `${key} (unreadable)`;
  return `${runId} is collecting ${hours[0]} … ${hours.at(-1)} (${hours.length} hour(s), planned at ${plannedAt})`;
}

function rowKey(row: { hourUtc: string; entity: string }): string {
  return `${row.hourUtc} ${row.entity}`;
}

async function listObjects(io: FeedIo, prefix: string): Promise<Listed[]> {
  const objects: Listed[] = [];
  let token: string | undefined;
  do {
    const page = await io.s3.send(
      new ListObjectsV2Command({ Bucket: io.location.bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) objects.push({ key: object.Key ?? "", size: object.Size ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return objects.sort((a, b) => a.key.localeCompare(b.key));
}

function parseJson(text: string | undefined): unknown {
  try {
    return JSON.parse(text ?? "");
  } catch {
    return undefined;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
