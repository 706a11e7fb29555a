/**
 * `npm run bench:cost`: what an hourly execution costs on AWS, from counts measured by running it. For each
 * volume and gzip setting it runs two executions of the deployed definition locally (the local engine, the
 * real handlers, the Citrix simulator and the S3 server in a process of their own): a small warm-up hour,
 * then the measured hour, as the hourly schedule runs it in steady state (watermark one hour behind). Of the
 * measured execution it counts the state transitions (its history), the Lambda invocations and their
 * durations × serverless.yml's memory sizes, the S3 requests by price class (a middleware on the functions'
 * S3 client counts every attempt), the bytes it added to the bucket and to the feed, the log bytes the
 * functions wrote, and the CloudWatch metrics its EMF lines declare; then it multiplies them by PRICES for
 * EXECUTIONS_PER_MONTH and prints the monthly bill. The README's cost table is this script's output.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { parse } from "yaml";
import { s3ClientFor } from "../functions/lib/runtime";
import { runLocalCollection } from "../local/collection";
import { COST_BUCKET, MEASURED_HOUR } from "./cost-stand-ins";

const USAGE = `npm run bench:cost -- [options]
  --volumes 10000,100000,1000000   records per hour, all entities together, comma-separated
  --latency-ms 200                 the Citrix API's time per page (the simulator waits this long)
  --entities sessions,machines,users   ENTITIES; each gets an equal share of the hour's records
`;

/**
 * us-east-1 list prices in USD, as AWS's pricing pages gave them on PRICES_AS_OF (check them before relying
 * on the totals). Free tiers are not applied: they are per account and shared with everything else in it.
 */
export const PRICES_AS_OF = "2026-11-30";
export const PRICES = {
  /** Step Functions Standard, per state transition ($0.025 per 1,000). */
  stateTransition: 0.025 / 1000,
  /** Lambda, per request ($0.20 per million). */
  lambdaRequest: 0.2 / 1e6,
  /** Lambda on arm64 (serverless.yml's architecture), per GB-second; x86_64 is $0.0000166667. */
  lambdaGbSecond: 0.0000133334,
  /** S3 Standard PUT, COPY, POST and LIST requests ($0.005 per 1,000). */
  s3WriteOrList: 0.005 / 1000,
  /** S3 Standard GET, HEAD and other reads ($0.0004 per 1,000); DELETE is free. */
  s3Read: 0.0004 / 1000,
  /** S3 Standard storage, first 50 TB, per GB-month. */
  s3StorageGbMonth: 0.023,
  /** A CloudWatch custom metric (each name × dimension values), per month, first 10,000 metrics. */
  metricMonth: 0.3,
  /** A CloudWatch standard-resolution alarm, per month. */
  alarmMonth: 0.1,
  /** CloudWatch Logs ingestion (standard class), per GB. */
  logsIngestionGb: 0.5,
  /** Data transfer out of AWS to the internet (the SecOps feed's pull), first 10 TB, per GB. */
  transferOutGb: 0.09,
  /** A Secrets Manager secret (CITRIX_SECRET_ARN), per month. */
  secretMonth: 0.4,
} as const;

/** The hourly schedule: 24 × 365 / 12. */
export const EXECUTIONS_PER_MONTH = 730;
const GB = 2 ** 30;
/**
 * The Lambda platform's own lines per invocation (START, END, REPORT: about 420 bytes), which CloudWatch
 * Logs ingests beside the functions' lines. Not measured here: the local engine does not write them.
 */
const PLATFORM_LOG_BYTES_PER_INVOCATION = 420;

const ROOT = path.join(__dirname, "..");
const WARM_UP_HOUR = "2026-11-24T07:00:00Z";
/** 80 minutes after an hour starts it is the newest one due (LOOKBACK_MINUTES 75): one hour per execution. */
const clockFor = (hourUtc: string) => Date.parse(hourUtc) + 80 * 60_000;

/** What one steady-state hourly execution did, counted. */
export interface ExecutionCounts {
  records: number;
  stateTransitions: number;
  invocations: Record<string, number>;
  gbSeconds: number;
  s3Requests: Record<string, number>;
  s3WritesOrLists: number;
  s3Reads: number;
  bucketBytesAdded: number;
  feedObjects: number;
  feedBytes: number;
  logBytes: number;
  metricStreams: string[];
}

interface ServerlessYml {
  provider: { memorySize?: number };
  functions: Record<string, { memorySize?: number }>;
  resources: { Resources: Record<string, { Type: string }> };
}

function readServerlessYml(): ServerlessYml {
  return parse(readFileSync(path.join(ROOT, "serverless.yml"), "utf8")) as ServerlessYml;
}

/** S3's price class of an API operation: DELETE (and aborting an upload) is free. */
function s3PriceClass(command: string): "writeOrList" | "read" | "free" {
  if (/^(Delete|Abort)/.test(command)) return "free";
  if (/^(Get|Head)/.test(command)) return "read";
  return "writeOrList";
}

/** Counts into `counts` each attempt of each S3 command the client sends (after the retry middleware: each is billed). */
function countRequests(s3: S3Client, counts: Record<string, number>): S3Client {
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      counts[context.commandName ?? "Unknown"] = (counts[context.commandName ?? "Unknown"] ?? 0) + 1;
      return next(args);
    },
    { step: "finalizeRequest", priority: "low", name: "costRequestCounter" },
  );
  return s3;
}

async function objectsUnder(s3: S3Client, prefix: string): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: COST_BUCKET, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) {
      objects++;
      bytes += object.Size ?? 0;
    }
    token = page.NextContinuationToken;
  } while (token);
  return { objects, bytes };
}

/** Each metric CloudWatch creates from EMF lines: metric name × the values of its dimensions. */
export function metricStreams(lines: string[]): string[] {
  const streams = new Set<string>();
  for (const line of lines) {
    const emf = JSON.parse(line) as {
      _aws?: { CloudWatchMetrics: { Dimensions: string[][]; Metrics: { Name: string }[] }[] };
      [field: string]: unknown;
    };
    for (const definition of emf._aws?.CloudWatchMetrics ?? []) {
      for (const metric of definition.Metrics) {
        for (const dimensions of definition.Dimensions) {
          streams.add([metric.Name, ...dimensions.map((name) => `${name}=${String(emf[name])}`)].join(" "));
        }
      }
    }
  }
  return [...streams].sort();
}

async function startStandIns(
  recordsPerEntity: number,
  latencyMs: number,
): Promise<{
  env: Record<string, string>;
  child: ChildProcess;
}> {
  const child = spawn(
    path.join(ROOT, "node_modules", ".bin", "tsx"),
    [path.join(__dirname, "cost-stand-ins.ts"), String(recordsPerEntity), String(latencyMs)],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  if (!child.stdout) throw new Error("no stdout");
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done) throw new Error("the stand-ins ended without answering");
  return { env: JSON.parse(first.value) as Record<string, string>, child };
}

/** Runs the warm-up and the measured execution of one scenario and counts the measured one. */
export async function measureExecution(options: {
  recordsPerHour: number;
  entities: string[];
  gzip: boolean;
  latencyMs: number;
  env?: Record<string, string>;
}): Promise<ExecutionCounts> {
  const recordsPerEntity = Math.round(options.recordsPerHour / options.entities.length);
  const { env: addresses, child } = await startStandIns(recordsPerEntity, options.latencyMs);
  const service = readServerlessYml();
  const memoryMb = (key: string) => service.functions[key]?.memorySize ?? service.provider.memorySize ?? 1024;
  try {
    const env: Record<string, string | undefined> = {
      ...process.env,
      ...addresses,
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "cost",
      AWS_SECRET_ACCESS_KEY: "cost",
      ENTITIES: options.entities.join(","),
      FIRST_HOUR_UTC: WARM_UP_HOUR,
      GZIP: String(options.gzip),
      // The Map as Plan plans it with the defaults: how many runs of entity-hours it makes, and so the
      // invocations and state transitions, depend on how many iterations run at once. Their durations are
      // an upper bound: here they share this machine's event loop, on AWS each has a container of its own.
      ...options.env,
    };
    // The AWS SDK reads its region, credentials and endpoint from the process environment itself.
    Object.assign(process.env, {
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "cost",
      AWS_SECRET_ACCESS_KEY: "cost",
      AWS_ENDPOINT_URL_S3: addresses.AWS_ENDPOINT_URL_S3,
    });
    const s3 = s3ClientFor(env);
    // Every function's requests, each signed with its role (one client per role, as per Lambda container).
    const s3Requests: Record<string, number> = {};
    const roleClients = new Map<string, S3Client>();
    const clientFor = (credentials?: { accessKeyId: string; secretAccessKey: string }): S3Client => {
      if (!credentials) return s3;
      let client = roleClients.get(credentials.accessKeyId);
      if (!client) {
        client = countRequests(s3ClientFor(env, credentials), s3Requests);
        roleClients.set(credentials.accessKeyId, client);
      }
      return client;
    };
    const run = async (executionName: string, hourUtc: string) => {
      const logLines: string[] = [];
      const emfLines: string[] = [];
      const handlerMs: Record<string, number> = {};
      const result = await runLocalCollection({
        env,
        s3: clientFor,
        executionName,
        now: () => clockFor(hourUtc),
        logSink: (line) => logLines.push(line),
        metricsSink: (line) => emfLines.push(line),
        wrap: (key, handler) => async (event, context) => {
          const begin = performance.now();
          try {
            return await handler(event, context);
          } finally {
            handlerMs[key] = (handlerMs[key] ?? 0) + (performance.now() - begin);
          }
        },
      });
      if (result.status !== "SUCCEEDED") {
        throw new Error(`${executionName} failed: ${result.error?.name}: ${result.error?.message}`);
      }
      if (result.plan?.hours.join() !== hourUtc)
        throw new Error(`${executionName} did not plan ${hourUtc} alone`);
      return { result, logLines, emfLines, handlerMs };
    };

    await run("cost-warm-up", WARM_UP_HOUR);
    const before = await objectsUnder(s3, "");
    for (const command of Object.keys(s3Requests)) delete s3Requests[command];
    const { result, logLines, emfLines, handlerMs } = await run("cost-measured", MEASURED_HOUR);
    const counted = { ...s3Requests };
    const after = await objectsUnder(s3, "");
    const [date, time] = MEASURED_HOUR.split("T") as [string, string];
    const [year, month, day] = date.split("-");
    const hourPath = `year=${year}/month=${month}/day=${day}/hour=${time.slice(0, 2)}/`;
    let feedObjects = 0;
    let feedBytes = 0;
    for (const entity of options.entities) {
      const feed = await objectsUnder(s3, `citrix_analytics/${entity}/${hourPath}`);
      feedObjects += feed.objects;
      feedBytes += feed.bytes;
    }
    s3.destroy();
    const invocationsTotal = Object.values(result.invocations).reduce((sum, n) => sum + n, 0);
    const byClass = (kind: string) =>
      Object.entries(counted)
        .filter(([command]) => s3PriceClass(command) === kind)
        .reduce((sum, [, n]) => sum + n, 0);
    return {
      records: (result.collected ?? []).reduce((sum, item) => sum + item.records, 0),
      // Step Functions bills each state entered, and each retry of a state.
      stateTransitions:
        result.history.filter((event) => event.type.endsWith("StateEntered")).length + result.retries,
      invocations: result.invocations,
      gbSeconds: Object.entries(handlerMs).reduce(
        (sum, [key, ms]) => sum + (Math.ceil(ms) / 1000) * (memoryMb(key) / 1024),
        0,
      ),
      s3Requests: counted,
      s3WritesOrLists: byClass("writeOrList"),
      s3Reads: byClass("read"),
      bucketBytesAdded: after.bytes - before.bytes,
      feedObjects,
      feedBytes,
      logBytes:
        [...logLines, ...emfLines].reduce((sum, line) => sum + Buffer.byteLength(line), 0) +
        invocationsTotal * PLATFORM_LOG_BYTES_PER_INVOCATION,
      metricStreams: metricStreams(emfLines),
    };
  } finally {
    child.kill("SIGTERM");
  }
}

/** How many CloudWatch alarms serverless.yml deploys: each is a line of the bill. */
export function deployedAlarms(): number {
  return Object.values(readServerlessYml().resources.Resources).filter(
    (resource) => resource.Type === "AWS::CloudWatch::Alarm",
  ).length;
}

/** Monthly cost in USD of running `counts`' execution every hour, by line of the bill. */
export function monthlyBill(counts: ExecutionCounts, alarms: number): Record<string, number> {
  const perMonth = (perExecution: number) => perExecution * EXECUTIONS_PER_MONTH;
  const invocations = Object.values(counts.invocations).reduce((sum, n) => sum + n, 0);
  return {
    stepFunctions: perMonth(counts.stateTransitions) * PRICES.stateTransition,
    lambda: perMonth(invocations) * PRICES.lambdaRequest + perMonth(counts.gbSeconds) * PRICES.lambdaGbSecond,
    s3Requests:
      perMonth(counts.s3WritesOrLists) * PRICES.s3WriteOrList + perMonth(counts.s3Reads) * PRICES.s3Read,
    s3Storage: (perMonth(counts.bucketBytesAdded) / GB) * PRICES.s3StorageGbMonth,
    logs: (perMonth(counts.logBytes) / GB) * PRICES.logsIngestionGb,
    metrics: counts.metricStreams.length * PRICES.metricMonth,
    alarms: alarms * PRICES.alarmMonth,
    secret: PRICES.secretMonth,
    secOpsPull:
      perMonth(counts.feedObjects) * PRICES.s3Read + (perMonth(counts.feedBytes) / GB) * PRICES.transferOutGb,
  };
}

const dollars = (value: number) => (value < 0.005 ? "<$0.01" : `$${value.toFixed(2)}`);
const thousands = (value: number) => Math.round(value).toLocaleString("en-US");
const megabytes = (bytes: number) => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 1)} MB`;

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "--:")).join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ].join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      volumes: { type: "string", default: "10000,100000,1000000" },
      "latency-ms": { type: "string", default: "200" },
      entities: { type: "string", default: "sessions,machines,users" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const volumes = values.volumes.split(",").map(Number);
  const latencyMs = Number(values["latency-ms"]);
  const entities = values.entities.split(",");
  if (volumes.some((n) => !(n > 0)) || !(latencyMs >= 0)) throw new Error(USAGE);
  const alarms = deployedAlarms();

  const scenarios: { label: string; counts: ExecutionCounts }[] = [];
  for (const recordsPerHour of volumes) {
    for (const gzip of [false, true]) {
      const label = `${thousands(recordsPerHour)}/h, gzip ${gzip ? "on" : "off"}`;
      process.stderr.write(`measuring ${label}…\n`);
      scenarios.push({
        label,
        counts: await measureExecution({ recordsPerHour, entities, gzip, latencyMs }),
      });
    }
  }
  process.stderr.write("counting the metrics of DETAILED_METRICS=true…\n");
  const detailed = await measureExecution({
    recordsPerHour: volumes[0] ?? 10_000,
    entities,
    gzip: true,
    latencyMs: 0,
    env: { DETAILED_METRICS: "true" },
  });

  const header = ["", ...scenarios.map((scenario) => scenario.label)];
  const perExecution = table(header, [
    ["records collected", ...scenarios.map(({ counts }) => thousands(counts.records))],
    ["state transitions", ...scenarios.map(({ counts }) => String(counts.stateTransitions))],
    [
      "Lambda invocations (plan + collect + commit)",
      ...scenarios.map(({ counts: { invocations } }) =>
        ["plan", "collect", "commit"].map((key) => invocations[key] ?? 0).join(" + "),
      ),
    ],
    ["Lambda GB-seconds", ...scenarios.map(({ counts }) => counts.gbSeconds.toFixed(2))],
    ["S3 PUT/COPY/LIST requests", ...scenarios.map(({ counts }) => String(counts.s3WritesOrLists))],
    ["S3 GET/HEAD requests", ...scenarios.map(({ counts }) => String(counts.s3Reads))],
    ...[...new Set(scenarios.flatMap(({ counts }) => Object.keys(counts.s3Requests)))]
      .sort()
      .map((command) => [
        `– ${command.replace(/Command$/, "")}${s3PriceClass(command) === "free" ? " (free)" : ""}`,
        ...scenarios.map(({ counts }) => String(counts.s3Requests[command] ?? 0)),
      ]),
    ["bytes added to the bucket", ...scenarios.map(({ counts }) => megabytes(counts.bucketBytesAdded))],
    ["feed objects (SecOps GETs)", ...scenarios.map(({ counts }) => String(counts.feedObjects))],
    ["log bytes (incl. platform lines)", ...scenarios.map(({ counts }) => megabytes(counts.logBytes))],
    ["CloudWatch metrics declared", ...scenarios.map(({ counts }) => String(counts.metricStreams.length))],
  ]);
  const bills = scenarios.map(({ counts }) => monthlyBill(counts, alarms));
  const line = (label: string, key: string) => [label, ...bills.map((bill) => dollars(bill[key] ?? 0))];
  const monthly = table(header, [
    line("Step Functions state transitions", "stepFunctions"),
    line("Lambda requests and GB-seconds (arm64)", "lambda"),
    line("S3 requests", "s3Requests"),
    line("S3 storage, one month of data kept", "s3Storage"),
    line("CloudWatch Logs ingestion", "logs"),
    line("CloudWatch metrics", "metrics"),
    line(`CloudWatch alarms (${alarms})`, "alarms"),
    line("Secrets Manager secret", "secret"),
    line("SecOps pull: GETs and transfer out", "secOpsPull"),
    [
      "**Total**",
      ...bills.map((bill) => `**${dollars(Object.values(bill).reduce((sum, value) => sum + value, 0))}**`),
    ],
  ]);
  process.stdout.write(
    [
      `Per hourly execution (measured; ENTITIES=${entities.join(",")}, records split evenly, ${latencyMs} ms per page, defaults otherwise):`,
      "",
      perExecution,
      "",
      `Per month: ${EXECUTIONS_PER_MONTH} executions, us-east-1 list prices of ${PRICES_AS_OF}, no free tier:`,
      "",
      monthly,
      "",
      `DETAILED_METRICS=true declares ${detailed.metricStreams.length} metrics (+${dollars((detailed.metricStreams.length - (scenarios[0]?.counts.metricStreams.length ?? 0)) * PRICES.metricMonth)} a month).`,
      "",
    ].join("\n"),
  );
}

// Run as a script (tsx bench/cost.ts); the test imports measureExecution without running it.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === __filename) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
