/**
 * One benchmark stand-in in a process of its own (`simulator <scenario JSON>` or `s3`), so neither shares an
 * event loop with the collector or the other: prints one JSON line with its address, then serves; on SIGUSR2
 * it prints one JSON line with the CPU time it used so far (and, for the simulator, what it answered), and
 * on SIGTERM the same before it ends.
 */
import { type ConcurrencyLimit, startCitrixSimulator } from "../stand-ins/citrix-simulator";
import { startLocalS3 } from "../stand-ins/s3-server";

const BUCKET = "collector-bench";

/** What bench/run.ts asks the simulator for. */
export interface SimulatorScenario {
  /** Records per hour, by entity. */
  volume: Record<string, number>;
  pageLatencyMs: number;
  concurrencyLimit?: ConcurrencyLimit;
}

/** What the simulator served since the previous report (SIGUSR2 or SIGTERM). */
export interface SimulatorFigures {
  cpuMs: number;
  dataRequests: number;
  throttled: number;
  peakConcurrentRequests: number;
  meanConcurrentRequests: number;
}

async function main(): Promise<void> {
  const [kind, scenarioJson] = process.argv.slice(2);
  let addresses: Record<string, string>;
  let close: () => Promise<void>;
  let figures: () => Partial<SimulatorFigures> = () => ({});
  if (kind === "simulator") {
    const scenario = JSON.parse(scenarioJson ?? "{}") as SimulatorScenario;
    const simulator = await startCitrixSimulator({
      volume: scenario.volume,
      pageLatencyMs: scenario.pageLatencyMs,
      maxPageSize: 10_000,
      ...(scenario.concurrencyLimit ? { concurrencyLimit: scenario.concurrencyLimit } : {}),
    });
    addresses = {
      API_BASE: simulator.apiBase,
      TOKEN_URL: simulator.tokenUrl,
      CITRIX_CUSTOMER_ID: simulator.customerId,
      CITRIX_CLIENT_ID: simulator.clientId,
      CITRIX_CLIENT_SECRET: simulator.clientSecret,
    };
    close = () => simulator.close();
    // Each report covers what was served since the one before.
    let reported = 0;
    figures = () => {
      const data = simulator.requests.slice(reported).filter((entry) => entry.entity !== undefined);
      reported = simulator.requests.length;
      const served = {
        dataRequests: data.length,
        throttled: data.filter((entry) => entry.status === 429).length,
        peakConcurrentRequests: simulator.peakConcurrentRequests,
        meanConcurrentRequests: simulator.meanConcurrentRequests,
      };
      simulator.resetConcurrency();
      return served;
    };
  } else {
    const s3 = await startLocalS3({ buckets: [BUCKET] });
    addresses = { S3_BUCKET: BUCKET, AWS_ENDPOINT_URL_S3: s3.endpoint };
    close = () => s3.close();
  }
  process.stdout.write(`${JSON.stringify(addresses)}\n`);
  const report = () => {
    const cpu = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000, ...figures() })}\n`);
  };
  const stop = async () => {
    report();
    await close();
    process.exit(0);
  };
  process.on("SIGUSR2", report);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

void main();
