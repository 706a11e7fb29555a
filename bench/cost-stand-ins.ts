/**
 * The stand-ins of one `npm run bench:cost` scenario, in a process of their own so the collection's handler
 * durations are not theirs: `cost-stand-ins.ts <records per entity in the measured hour> <page latency ms>`.
 * The Citrix simulator serves WARM_UP_RECORDS per entity for any other hour (the warm-up execution's), the
 * S3 server starts with an empty bucket. Prints one JSON line with the addresses, serves until SIGTERM.
 */
import path from "node:path";
import { startCitrixSimulator } from "../stand-ins/citrix-simulator";
import { startLocalS3 } from "../stand-ins/s3-server";

export const COST_BUCKET = "collector-cost";
export const MEASURED_HOUR = "2026-11-24T08:00:00Z";
export const WARM_UP_RECORDS = 10;

async function main(): Promise<void> {
  const [recordsPerEntity, pageLatencyMs] = process.argv.slice(2).map(Number);
  const simulator = await startCitrixSimulator({
    volume: (_entity, hourUtc) => (hourUtc === MEASURED_HOUR ? (recordsPerEntity ?? 0) : WARM_UP_RECORDS),
    pageLatencyMs: pageLatencyMs ?? 0,
  });
  const s3 = await startLocalS3({ buckets: [COST_BUCKET] });
  process.stdout.write(
    `${JSON.stringify({
      S3_BUCKET: COST_BUCKET,
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      API_BASE: simulator.apiBase,
      TOKEN_URL: simulator.tokenUrl,
      CITRIX_CUSTOMER_ID: simulator.customerId,
      CITRIX_CLIENT_ID: simulator.clientId,
      CITRIX_CLIENT_SECRET: simulator.clientSecret,
    })}\n`,
  );
  const stop = async () => {
    await simulator.close();
    await s3.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// Run as a script; bench/cost.ts imports the constants above without starting anything.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === __filename) void main();
