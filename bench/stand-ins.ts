/**
 * One benchmark stand-in in a process of its own (`simulator <records> <latencyMs>` or `s3`), so neither
 * shares an event loop with the collector or the other: prints one JSON line with its address, serves until
 * SIGTERM, then prints one JSON line with the CPU time it used.
 */
import { startCitrixSimulator } from "../local/citrix-simulator";
import { startLocalS3 } from "../local/s3-server";

const BUCKET = "collector-bench";

async function main(): Promise<void> {
  const [kind, records, pageLatencyMs] = process.argv.slice(2);
  let addresses: Record<string, string>;
  let close: () => Promise<void>;
  if (kind === "simulator") {
    const simulator = await startCitrixSimulator({
      volume: { sessions: Number(records) },
      pageLatencyMs: Number(pageLatencyMs ?? 0),
      maxPageSize: 10_000,
    });
    addresses = {
      API_BASE: simulator.apiBase,
      TOKEN_URL: simulator.tokenUrl,
      CITRIX_CUSTOMER_ID: simulator.customerId,
      CITRIX_CLIENT_ID: simulator.clientId,
      CITRIX_CLIENT_SECRET: simulator.clientSecret,
    };
    close = () => simulator.close();
  } else {
    const s3 = await startLocalS3({ buckets: [BUCKET] });
    addresses = { S3_BUCKET: BUCKET, AWS_ENDPOINT_URL_S3: s3.endpoint };
    close = () => s3.close();
  }
  process.stdout.write(`${JSON.stringify(addresses)}\n`);
  const stop = async () => {
    const cpu = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
    await close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

void main();
