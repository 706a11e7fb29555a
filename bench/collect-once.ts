/**
 * One benchmark execution in a fresh process (so its peak RSS and start-up are its own, as a cold Lambda's):
 * runs the deployed definition locally for ENTITIES against the stand-ins named in the environment at
 * BENCH_NOW (FIRST_HOUR_UTC sets the first hour of the first execution), then reads the whole feed back, and
 * prints one JSON line of figures.
 */
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { s3ClientFor } from "../functions/lib/runtime";
import { runLocalCollection } from "../local/collection";
import { parseAwsOverheads, withRequestLatency } from "./aws-overheads";
import { phasesOf, type TimelineMark } from "./phases";

const FEED_PREFIX = "citrix_analytics/";
const RAW = Buffer.from(',"raw":');

async function main(): Promise<void> {
  // Loading the bundle is part of a cold start: performance.now() counts from process start.
  const loadedMs = performance.now();
  const lambdaTimeoutMs = Number(process.env.BENCH_LAMBDA_TIMEOUT_MS ?? 900_000);
  const nowMs = Date.parse(process.env.BENCH_NOW ?? "2026-11-24T09:20:00Z");
  // The AWS SDK reads its region and credentials from the process environment itself.
  Object.assign(process.env, {
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "bench",
    AWS_SECRET_ACCESS_KEY: "bench",
  });
  const env: Record<string, string | undefined> = {
    ...process.env,
    ENTITIES: process.env.ENTITIES ?? "sessions",
    FIRST_HOUR_UTC: process.env.FIRST_HOUR_UTC ?? "2026-11-24T08:00:00Z",
  };
  const s3 = s3ClientFor(env);
  const overheads =
    process.env.BENCH_AWS_OVERHEADS === undefined
      ? undefined
      : parseAwsOverheads(process.env.BENCH_AWS_OVERHEADS);
  const invocationsMs: number[] = [];
  const handlerMs: Record<string, number> = {};
  // What bench/phases.ts makes the phases of: kept as written, parsed once the execution is over.
  const marks: TimelineMark[] = [];
  const result = await runLocalCollection({
    env,
    // The functions' clients carry their roles' credentials; the benchmark's own (no credentials) is not slowed.
    s3: (credentials) =>
      credentials ? withRequestLatency(s3ClientFor(env, credentials), overheads?.s3RequestMs ?? 0) : s3,
    latencies: overheads,
    executionName: `bench-${nowMs}`,
    now: () => nowMs,
    timeoutsMs: { collect: lambdaTimeoutMs },
    // bench/run.ts checked it once, as AWS does when it is deployed.
    definitionChecked: true,
    logSink: (line) => marks.push({ atMs: performance.now(), line }),
    wrap: (key, handler) => async (event, context) => {
      const begin = performance.now();
      marks.push({ atMs: begin, handler: key, edge: "begin" });
      try {
        return await handler(event, context);
      } finally {
        marks.push({ atMs: performance.now(), handler: key, edge: "end" });
        const elapsed = performance.now() - begin;
        handlerMs[key] = (handlerMs[key] ?? 0) + elapsed;
        if (key === "collect") invocationsMs.push(elapsed);
      }
    },
  });
  const wallMs = performance.now();
  // Before the feed is read back, which is the benchmark's work, not the collector's.
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  const cpu = process.cpuUsage();
  if (result.status !== "SUCCEEDED")
    throw new Error(`collection failed: ${result.error?.name}: ${result.error?.cause}`);
  // The feed read back: every line, and how many distinct records (the raw JSON the API sent) they hold.
  let storedBytes = 0;
  let objects = 0;
  let feedLines = 0;
  const distinct = new Set<string>();
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: env.S3_BUCKET, Prefix: FEED_PREFIX, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) {
      storedBytes += object.Size ?? 0;
      objects++;
      const body = await s3.send(new GetObjectCommand({ Bucket: env.S3_BUCKET, Key: object.Key }));
      let bytes = Buffer.from(await (body.Body?.transformToByteArray() ?? new Uint8Array()));
      if (object.Key?.endsWith(".gz")) bytes = gunzipSync(bytes);
      for (let start = 0; start < bytes.length; ) {
        const end = bytes.indexOf(10, start);
        const line = bytes.subarray(start, end);
        feedLines++;
        const raw = line.subarray(line.indexOf(RAW) + RAW.length);
        distinct.add(createHash("sha1").update(raw).digest("base64"));
        start = end + 1;
      }
    }
    token = page.NextContinuationToken;
  } while (token);
  const items = result.collected ?? [];
  process.stdout.write(
    `${JSON.stringify({
      records: items.reduce((sum, item) => sum + item.records, 0),
      pages: items.reduce((sum, item) => sum + item.pages, 0),
      feedLines,
      distinctRecords: distinct.size,
      objects,
      storedBytes,
      wallMs,
      loadedMs,
      peakRssMb,
      cpuMs: (cpu.user + cpu.system) / 1000,
      invocations: Math.max(0, ...items.map((item) => item.invocations)),
      longestInvocationMs: Math.max(...invocationsMs),
      commitMs: handlerMs.commit ?? 0,
      lambdaTimeoutMs,
      iterationEvents: Math.max(0, ...Object.values(result.iterationEvents)),
      phases: phasesOf(marks, loadedMs, wallMs) ?? null,
    })}\n`,
  );
  s3.destroy();
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
