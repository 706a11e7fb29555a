/**
 * One benchmark collection in a fresh process (so its peak RSS is its own): runs the deployed definition
 * locally for one sessions entity-hour against the stand-ins named in the environment and prints one JSON
 * line of figures.
 */
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { s3ClientFor } from "../functions/lib/runtime";
import { runLocalCollection } from "../local/collection";

const HOUR = "2026-11-24T08:00:00Z";

async function main(): Promise<void> {
  const lambdaTimeoutMs = Number(process.env.BENCH_LAMBDA_TIMEOUT_MS ?? 900_000);
  // The AWS SDK reads its region and credentials from the process environment itself.
  Object.assign(process.env, {
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "bench",
    AWS_SECRET_ACCESS_KEY: "bench",
  });
  const env: Record<string, string | undefined> = {
    ...process.env,
    ENTITIES: "sessions",
    FIRST_HOUR_UTC: HOUR,
  };
  const s3 = s3ClientFor(env);
  const invocationsMs: number[] = [];
  const handlerMs: Record<string, number> = {};
  const startedAt = performance.now();
  const result = await runLocalCollection({
    env,
    s3,
    executionName: "bench",
    now: () => Date.parse("2026-11-24T09:20:00Z"),
    timeoutsMs: { collect: lambdaTimeoutMs },
    logSink: () => undefined,
    wrap: (key, handler) => async (event, context) => {
      const begin = performance.now();
      try {
        return await handler(event, context);
      } finally {
        const elapsed = performance.now() - begin;
        handlerMs[key] = (handlerMs[key] ?? 0) + elapsed;
        if (key === "collect") invocationsMs.push(elapsed);
      }
    },
  });
  const wallMs = performance.now() - startedAt;
  if (result.status !== "SUCCEEDED")
    throw new Error(`collection failed: ${result.error?.name}: ${result.error?.cause}`);
  let storedBytes = 0;
  let objects = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({
        Bucket: env.S3_BUCKET,
        Prefix: "citrix_analytics/",
        ContinuationToken: token,
      }),
    );
    for (const object of page.Contents ?? []) {
      storedBytes += object.Size ?? 0;
      objects++;
    }
    token = page.NextContinuationToken;
  } while (token);
  const item = result.collected?.[0];
  process.stdout.write(
    `${JSON.stringify({
      records: item?.progress.records ?? 0,
      pages: item?.progress.pages ?? 0,
      objects,
      storedBytes,
      wallMs,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      cpuMs: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
      invocations: item?.progress.invocations ?? 0,
      longestInvocationMs: Math.max(...invocationsMs),
      lambdaTimeoutMs,
      iterationEvents: Math.max(0, ...Object.values(result.iterationEvents)),
      handlerMs,
    })}\n`,
  );
  s3.destroy();
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
