/**
 * `npm run bench`: runs collections through the deployed definition, each in fresh processes (the Citrix
 * simulator, the S3 server and the collection each in its own), and prints four tables:
 * - throughput: one sessions entity-hour per volume and page latency;
 * - latency: one page at a time (MAX_PAGES_IN_FLIGHT=1) against the adaptive window, side by side, and the
 *   window's next hour (which starts from the page window's hint);
 * - throttling: whole executions (several entities and hours, the Map's iterations side by side) against a
 *   simulator that answers 429 above K concurrent requests;
 * - catch-up: 23 hours due at a limit of K requests learnt before, against the fewest requests × latency / K;
 * - phases: where the time of a cold hour and of a catch-up at K = 1 goes (bench/phases.ts), over several runs.
 * Every wall time counts from process start (bundle load included), as a cold Lambda does, and every
 * collection's feed is read back: "exactly once" means as many distinct records as the simulator served and
 * no line more.
 */
import { type ChildProcess, spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { build } from "esbuild";
import { checkDefinition, loadDefinition } from "../local/state-machine";
import { describeAwsOverheads, parseAwsOverheads } from "./aws-overheads";
import type { Phases } from "./phases";
import type { SimulatorFigures, SimulatorScenario } from "./stand-ins";

interface Figures {
  records: number;
  pages: number;
  feedLines: number;
  distinctRecords: number;
  objects: number;
  storedBytes: number;
  wallMs: number;
  loadedMs: number;
  peakRssMb: number;
  cpuMs: number;
  invocations: number;
  longestInvocationMs: number;
  commitMs: number;
  lambdaTimeoutMs: number;
  iterationEvents: number;
  /** Null when the Map ran iterations side by side (see phasesOf). */
  phases: Phases | null;
}

interface Scenario extends SimulatorScenario {
  /** Hours the first execution collects (default 1). */
  hours?: number;
  /** Hourly executions one after the other, each in a fresh process (default 1). */
  executions?: number;
  /**
   * Instead of `hours` and `executions`: how many new hours each execution finds due, one after the other
   * (0: an execution with nothing due, which measures the fixed part of one).
   */
  executionHours?: number[];
  /** Settings for the collection (on top of the command line's). */
  env?: Record<string, string>;
}

/** One execution's figures; the simulator's and the S3 server's are what that execution made them do. */
interface ExecutionFigures extends Figures {
  simulator: SimulatorFigures;
  s3CpuMs: number;
  /** Records the simulator served for every hour collected so far, this execution's included. */
  expectedRecords: number;
}

const USAGE = `npm run bench -- [options]
  --only TABLE        throughput, latency, throttling, catch-up or phases (default: all five)
  --scenarios 10000:0,100000:0,1000000:0,100000:200   the throughput table's records:pageLatencyMs
  --top 1000          TOP_N (page size)
  --in-flight N       MAX_PAGES_IN_FLIGHT for the throughput table (default: the configuration's)
  --gzip true|false   GZIP (default: the configuration's default)
  --lambda-timeout S  emulated collect Lambda timeout in seconds (default: serverless.yml's)
  --runs 3            runs of each case in the phases table
  --limits 1,2,4      the catch-up table's limits K (requests at a time)
  --aws-overheads X   add AWS-like latencies to every execution: "default" (bench/aws-overheads.ts), or
                      some of transition=50,invoke=25,cold=300,s3=30 (milliseconds; the others default)
  --profile DIR       write a V8 CPU profile of each process (collection, simulator, S3 server) into DIR
`;
const TABLES = ["throughput", "latency", "throttling", "catch-up", "phases"];
const BIN = path.join(__dirname, "..", "node_modules", ".bin");
/**
 * glibc settings for the stand-ins only: each request they serve allocates a buffer of up to a part
 * (8 MiB), which glibc would otherwise map fresh from the kernel and fault in page by page every time;
 * with these it reuses freed memory. The stand-ins share the collector's two cores, so what they waste is
 * taken from the figures. The collection itself runs with the defaults, as on Lambda.
 */
const STAND_IN_MALLOC = {
  MALLOC_MMAP_THRESHOLD_: String(32 * 2 ** 20),
  MALLOC_TRIM_THRESHOLD_: String(2 ** 30),
};
const BUILD = path.join(__dirname, "..", ".bench-build");
/** A hypothetical tenant's hour: what the throttling table's executions collect per hour. */
const TENANT_HOUR = { sessions: 100_000, machines: 20_000, users: 20_000 };

/** Reads a child's stdout line by line; each stand-in and the collection speak one JSON object per line. */
function lineReader(child: ChildProcess): () => Promise<string> {
  if (!child.stdout) throw new Error("no stdout");
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return async () => {
    const next = await lines.next();
    if (next.done) throw new Error(`${child.spawnargs.join(" ")} ended without answering`);
    return next.value;
  };
}

/** The first hour scenarios collect; each further execution runs an hour later and collects one more. */
const FIRST_HOUR_MS = Date.parse("2026-11-24T08:00:00Z");
const HOUR_MS = 3_600_000;

async function runScenario(
  scenario: Scenario,
  env: NodeJS.ProcessEnv,
  nodeFlags: string[],
): Promise<ExecutionFigures[]> {
  const simulatorScenario: SimulatorScenario = {
    volume: scenario.volume,
    pageLatencyMs: scenario.pageLatencyMs,
    ...(scenario.concurrencyLimit ? { concurrencyLimit: scenario.concurrencyLimit } : {}),
  };
  const standIns = [["simulator", JSON.stringify(simulatorScenario)], ["s3"]].map((args) => {
    // Node itself, not the tsx command (a wrapper process that passes on SIGTERM but not SIGUSR2).
    const child = spawn(
      path.join(BIN, "node"),
      [...nodeFlags, "--import", "tsx", path.join(__dirname, "stand-ins.ts"), ...args],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...STAND_IN_MALLOC } },
    );
    return { child, nextLine: lineReader(child) };
  });
  const report = (signal: NodeJS.Signals) =>
    Promise.all(
      standIns.map(async ({ child, nextLine }) => {
        child.kill(signal);
        return JSON.parse(await nextLine()) as SimulatorFigures;
      }),
    );
  try {
    const addresses = Object.assign(
      {},
      ...(await Promise.all(
        standIns.map(async ({ nextLine }) => JSON.parse(await nextLine()) as Record<string, string>),
      )),
    );
    const recordsPerHour = Object.values(scenario.volume).reduce((sum, n) => sum + n, 0);
    const executionHours =
      scenario.executionHours ??
      Array.from({ length: scenario.executions ?? 1 }, (_, n) => (n === 0 ? (scenario.hours ?? 1) : 1));
    const executions: ExecutionFigures[] = [];
    let s3CpuMs = 0;
    let hoursDue = 0;
    for (const newHours of executionHours) {
      hoursDue += newHours;
      const lastHourMs = FIRST_HOUR_MS + (hoursDue - 1) * HOUR_MS;
      const collector = spawn(path.join(BIN, "node"), [...nodeFlags, path.join(BUILD, "collect-once.js")], {
        stdio: ["ignore", "pipe", "inherit"],
        env: {
          ...env,
          ...scenario.env,
          ...addresses,
          ENTITIES: Object.keys(scenario.volume).join(","),
          FIRST_HOUR_UTC: new Date(FIRST_HOUR_MS).toISOString(),
          // 80 minutes after the hour began: with LOOKBACK_MINUTES 75 the hour is due, the next is not.
          BENCH_NOW: new Date(lastHourMs + 80 * 60_000).toISOString(),
        },
      });
      const figures = JSON.parse(await lineReader(collector)()) as Figures;
      const [simulator, s3] = await report("SIGUSR2");
      if (!simulator || !s3) throw new Error("a stand-in ended without its figures");
      executions.push({
        ...figures,
        simulator,
        s3CpuMs: s3.cpuMs - s3CpuMs,
        expectedRecords: hoursDue * recordsPerHour,
      });
      s3CpuMs = s3.cpuMs;
    }
    return executions;
  } finally {
    for (const { child } of standIns) child.kill("SIGTERM");
  }
}

/** "exact" when the feed holds every record the simulator served once and nothing else. */
function exactness(figures: ExecutionFigures): string {
  const { feedLines, distinctRecords, expectedRecords } = figures;
  if (feedLines === expectedRecords && distinctRecords === expectedRecords) return "exact";
  return `WRONG: ${feedLines} lines, ${distinctRecords} distinct, ${expectedRecords} served`;
}

function printTable(title: string, header: string[], rows: (string | number)[][]): void {
  process.stdout.write(`\n${title}\n${header.join(" | ")}\n`);
  for (const row of rows) process.stdout.write(`${row.join(" | ")}\n`);
}

const seconds = (ms: number) => (ms / 1000).toFixed(1);
const grouped = (n: number) => Math.round(n).toLocaleString("en-US");

async function throughputTable(
  scenarios: string,
  top: number,
  env: NodeJS.ProcessEnv,
  nodeFlags: string[],
): Promise<void> {
  const rows: (string | number)[][] = [];
  for (const scenario of scenarios.split(",")) {
    const [records, latency] = scenario.split(":").map(Number) as [number, number];
    const pageLatencyMs = latency ?? 0;
    const [figures] = await runScenario({ volume: { sessions: records }, pageLatencyMs }, env, nodeFlags);
    if (!figures) throw new Error("no execution ran");
    const wall = figures.wallMs / 1000;
    // With page latency L, one request at a time costs at least L per page: TOP_N records per L.
    const bound = pageLatencyMs > 0 ? Math.round((top * 1000) / pageLatencyMs) : undefined;
    rows.push([
      grouped(figures.records),
      `${pageLatencyMs} ms`,
      wall.toFixed(1),
      grouped(figures.records / wall),
      (figures.storedBytes / 2 ** 20 / wall).toFixed(1),
      figures.peakRssMb.toFixed(0),
      `${seconds(figures.cpuMs)} (${grouped(figures.records / (figures.cpuMs / 1000))})`,
      `${seconds(figures.simulator.cpuMs)} + ${seconds(figures.s3CpuMs)}`,
      figures.objects,
      figures.invocations,
      seconds(figures.longestInvocationMs),
      figures.iterationEvents,
      bound === undefined
        ? "-"
        : `${grouped(bound)} (${Math.round(((figures.records / wall) * 100) / bound)}%)`,
      exactness(figures),
    ]);
  }
  printTable(
    "Throughput: one sessions entity-hour",
    [
      "records",
      "page latency",
      "wall s",
      "records/s",
      "MB/s written",
      "peak RSS MB",
      "collector CPU s (records/CPU-s)",
      "simulator + S3 CPU s",
      "objects",
      "invocations",
      "longest inv. s",
      "events/item",
      "serial bound records/s",
      "feed",
    ],
    rows,
  );
}

async function latencyTable(env: NodeJS.ProcessEnv, nodeFlags: string[]): Promise<void> {
  const rows: (string | number)[][] = [];
  const cases: { records: number; latency: number; runSerial: boolean }[] = [
    { records: 50_000, latency: 0, runSerial: true },
    { records: 50_000, latency: 200, runSerial: true },
    { records: 50_000, latency: 1000, runSerial: true },
    // One request at a time this takes over 16 minutes; its bound (pages × latency) is shown instead.
    { records: 1_000_000, latency: 1000, runSerial: false },
  ];
  for (const { records, latency, runSerial } of cases) {
    const volume = { sessions: records };
    // The next hour's execution starts from what the first one's window reached (the page window's hint).
    const [adaptive, nextHour] = await runScenario(
      { volume, pageLatencyMs: latency, executions: 2 },
      env,
      nodeFlags,
    );
    if (!adaptive || !nextHour) throw new Error("no execution ran");
    const serialEnv = { MAX_PAGES_IN_FLIGHT: "1" };
    const serial = runSerial
      ? (await runScenario({ volume, pageLatencyMs: latency, env: serialEnv }, env, nodeFlags))[0]
      : undefined;
    const serialMs = serial?.wallMs ?? adaptive.pages * latency;
    rows.push([
      grouped(records),
      `${latency} ms`,
      serial ? seconds(serial.wallMs) : `≥ ${seconds(serialMs)} (pages × latency)`,
      seconds(adaptive.wallMs),
      `${(serialMs / adaptive.wallMs).toFixed(1)}×`,
      `${seconds(nextHour.wallMs)} (${(serialMs / nextHour.wallMs).toFixed(1)}×)`,
      grouped(records / (adaptive.wallMs / 1000)),
      adaptive.simulator.peakConcurrentRequests,
      adaptive.simulator.meanConcurrentRequests.toFixed(1),
      adaptive.peakRssMb.toFixed(0),
      [adaptive, nextHour].map(exactness).join(", "),
    ]);
  }
  printTable(
    "Page latency: one sessions entity-hour, one page at a time against the adaptive window (defaults) on a fresh bucket, and the next hour's execution",
    [
      "records",
      "page latency",
      "one at a time s",
      "adaptive s",
      "speed-up",
      "next hour s (speed-up)",
      "adaptive records/s",
      "peak in flight",
      "mean in flight",
      "peak RSS MB",
      "feed",
    ],
    rows,
  );
}

/**
 * The most 429 answers an execution may get (issue 21's bound): a first execution, which must find the limit,
 * five or 2% of its data requests, whichever is larger; a later one, which starts from the hint, under 1%.
 */
function refusalsAllowed(first: boolean, dataRequests: number): number {
  return first ? Math.max(5, Math.floor(dataRequests * 0.02)) : Math.ceil(dataRequests * 0.01) - 1;
}

async function throttlingTable(env: NodeJS.ProcessEnv, nodeFlags: string[]): Promise<void> {
  const rows: (string | number)[][] = [];
  const hours = 2;
  for (const limit of [1, 2, 4, 8]) {
    const executions = await runScenario(
      {
        volume: TENANT_HOUR,
        hours,
        executions: 2,
        pageLatencyMs: 200,
        concurrencyLimit: { requests: limit },
      },
      env,
      nodeFlags,
    );
    executions.forEach((figures, index) => {
      const { dataRequests, throttled } = figures.simulator;
      const allowed = refusalsAllowed(index === 0, dataRequests);
      rows.push([
        limit,
        index === 0 ? `first (${hours} hours)` : "next hour",
        grouped(figures.records),
        seconds(figures.wallMs),
        grouped(dataRequests),
        `${throttled} (${((throttled * 100) / dataRequests).toFixed(1)}%)`,
        `${throttled <= allowed ? "yes" : "NO"} (≤ ${allowed})`,
        figures.simulator.meanConcurrentRequests.toFixed(1),
        seconds(figures.commitMs),
        exactness(figures),
      ]);
    });
  }
  const entities = Object.entries(TENANT_HOUR)
    .map(([entity, records]) => `${entity} ${grouped(records)}`)
    .join(", ");
  printTable(
    `Throttling: hourly executions (${entities} records per hour; 200 ms pages; defaults) against HTTP 429 above K concurrent requests`,
    [
      "K",
      "execution",
      "records",
      "wall s",
      "data requests",
      "429 answers",
      "within the bound",
      "mean requests served at once",
      "Commit s",
      "feed (cumulative)",
    ],
    rows,
  );
}

/** The catch-up table's tenant hour: one entity-hour of several pages and two smaller than a page. */
const CATCH_UP_HOUR = { sessions: 3_000, machines: 300, users: 300 };
const CATCH_UP_LATENCY_MS = 200;

/**
 * The fewest data requests that collect `hours` of `volume` at page size `top`: every page that holds
 * records, and an empty one after a last page that is full (nothing else proves it the last).
 */
function fewestRequests(volume: Record<string, number>, hours: number, top: number): number {
  return hours * Object.values(volume).reduce((sum, records) => sum + Math.floor(records / top) + 1, 0);
}

/**
 * A catch-up against a limit of K requests at a time: after a first execution of one hour (which learns
 * the limit and the page size the API serves), one finds 23 hours due; then one with nothing due measures
 * the fixed part of an execution (start-up, Plan, Commit), which is taken from the catch-up's wall time to
 * give its collecting time. The bound is the fewest requests × the page latency / K. A first execution of
 * 24 hours, which must learn the limit as it goes, is shown against the same bound.
 */
async function catchUpTable(
  top: number,
  limits: number[],
  env: NodeJS.ProcessEnv,
  nodeFlags: string[],
): Promise<void> {
  const rows: (string | number)[][] = [];
  const row = (
    limit: number,
    label: string,
    hours: number,
    figures: ExecutionFigures,
    fixed: ExecutionFigures,
  ) => {
    const needed = fewestRequests(CATCH_UP_HOUR, hours, top);
    const { dataRequests, throttled } = figures.simulator;
    const collectingMs = figures.wallMs - fixed.wallMs;
    // Commit publishes every collected hour: what it takes beyond a Commit with nothing to publish is part of
    // collectingMs, but not of the Map's paging and staging that the bound is about.
    const publishingMs = figures.commitMs - fixed.commitMs;
    const boundMs = (needed * CATCH_UP_LATENCY_MS) / limit;
    rows.push([
      limit,
      label,
      hours * Object.keys(CATCH_UP_HOUR).length,
      grouped(dataRequests),
      grouped(needed),
      throttled,
      seconds(figures.wallMs),
      seconds(collectingMs),
      seconds(boundMs),
      `${(collectingMs / boundMs).toFixed(2)}×`,
      seconds(figures.commitMs),
      `${((collectingMs - publishingMs) / boundMs).toFixed(2)}×`,
      `${seconds(figures.cpuMs)} + ${seconds(figures.simulator.cpuMs)} + ${seconds(figures.s3CpuMs)}`,
      exactness(figures),
    ]);
  };
  for (const limit of limits) {
    const scenario = {
      volume: CATCH_UP_HOUR,
      pageLatencyMs: CATCH_UP_LATENCY_MS,
      concurrencyLimit: { requests: limit },
    };
    const [, catchUp, nothingDue] = await runScenario(
      { ...scenario, executionHours: [1, 23, 0] },
      env,
      nodeFlags,
    );
    const [first, firstNothingDue] = await runScenario(
      { ...scenario, executionHours: [24, 0] },
      env,
      nodeFlags,
    );
    if (!catchUp || !nothingDue || !first || !firstNothingDue) throw new Error("no execution ran");
    row(limit, "catch-up, limit known", 23, catchUp, nothingDue);
    row(limit, "first execution", 24, first, firstNothingDue);
  }
  const hour = Object.entries(CATCH_UP_HOUR)
    .map(([entity, records]) => `${entity} ${grouped(records)}`)
    .join(", ");
  printTable(
    `Catch-up at a known limit: ${hour} records per hour, ${CATCH_UP_LATENCY_MS} ms pages, HTTP 429 above K concurrent requests; collecting = wall − an execution with nothing due; bound = fewest requests × latency / K; without publishing = collecting − what Commit took beyond that execution's`,
    [
      "K",
      "execution",
      "entity-hours",
      "data requests",
      "fewest requests",
      "429 answers",
      "wall s",
      "collecting s",
      "bound s",
      "collecting / bound",
      "Commit s",
      "without publishing / bound",
      "CPU s: execution + simulator + S3",
      "feed (cumulative)",
    ],
    rows,
  );
}

/** The phases table's rows, in the order they happen, with what each is called. */
const PHASE_NAMES: [keyof Phases, string][] = [
  ["processStart", "process start (bundle loaded)"],
  ["localSetUp", "local twin set-up (no AWS counterpart)"],
  ["plan", "Plan"],
  ["token", "token (credentials read, token asked)"],
  ["firstPage", "first page (hint read, one round trip)"],
  ["ramp", "ramp (until the most requests in flight)"],
  ["paging", "paging (from then to the last answer)"],
  ["flushAndResult", "flush and result"],
  ["betweenStates", "between states (no handler running)"],
  ["commit", "Commit"],
];

/**
 * Where the time goes (bench/phases.ts), as the median of `runs` runs with the lowest and highest: the cold
 * 50k hour at 200 ms pages through the window and one request at a time, each from process start on a fresh
 * bucket, and the catch-up of 23 hours at K = 1 of the catch-up table (its phases summed over its 69
 * entity-hours, which run one at a time).
 */
async function phasesTable(
  top: number,
  runs: number,
  env: NodeJS.ProcessEnv,
  nodeFlags: string[],
): Promise<void> {
  // The data request lines the phases are made of are DEBUG lines.
  const debug = { POWERTOOLS_LOG_LEVEL: "DEBUG" };
  const cold = { volume: { sessions: 50_000 }, pageLatencyMs: 200, env: debug };
  const cases: { label: string; run(): Promise<ExecutionFigures | undefined> }[] = [
    { label: "cold 50k hour, window", run: async () => (await runScenario(cold, env, nodeFlags))[0] },
    {
      label: "cold 50k hour, one at a time",
      run: async () =>
        (await runScenario({ ...cold, env: { ...debug, MAX_PAGES_IN_FLIGHT: "1" } }, env, nodeFlags))[0],
    },
    {
      label: "catch-up of 23 hours at K = 1",
      run: async () =>
        (
          await runScenario(
            {
              volume: CATCH_UP_HOUR,
              pageLatencyMs: CATCH_UP_LATENCY_MS,
              concurrencyLimit: { requests: 1 },
              executionHours: [1, 23],
              env: debug,
            },
            env,
            nodeFlags,
          )
        )[1],
    },
  ];
  type Phased = ExecutionFigures & { phases: Phases };
  const measured: { label: string; figures: Phased[] }[] = [];
  for (const { label, run } of cases) {
    const figures: Phased[] = [];
    for (let n = 0; n < runs; n++) {
      const execution = await run();
      if (!execution) throw new Error("no execution ran");
      const feed = exactness(execution);
      if (feed !== "exact") throw new Error(`${label}: the feed is ${feed}`);
      if (!execution.phases) throw new Error(`${label}: collect invocations overlapped`);
      figures.push({ ...execution, phases: execution.phases });
    }
    measured.push({ label, figures });
  }
  const spread = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    return `${seconds(median)} (${seconds(sorted[0] ?? 0)}–${seconds(sorted.at(-1) ?? 0)})`;
  };
  const rows: (string | number)[][] = PHASE_NAMES.map(([phase, name]) => [
    name,
    ...measured.map(({ figures }) => spread(figures.map((f) => f.phases[phase]))),
  ]);
  rows.push(
    [
      "of which no request in flight",
      ...measured.map(({ figures }) => spread(figures.map((f) => f.phases.idle))),
    ],
    ["wall", ...measured.map(({ figures }) => spread(figures.map((f) => f.wallMs)))],
    [
      "invocations, data requests",
      ...measured.map(({ figures }) =>
        figures.map((f) => `${f.phases.invocations}, ${f.phases.requests}`).join("; "),
      ),
    ],
  );
  printTable(
    `Phases: seconds, median of ${runs} runs (lowest–highest); TOP_N ${top}, 200 ms pages, every feed exact; a catch-up's collect phases are summed over its entity-hours`,
    ["phase", ...measured.map(({ label }) => label)],
    rows,
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      only: { type: "string" },
      scenarios: { type: "string", default: "10000:0,100000:0,1000000:0,100000:200" },
      top: { type: "string", default: "1000" },
      runs: { type: "string", default: "3" },
      limits: { type: "string", default: "1,2,4" },
      gzip: { type: "string" },
      "in-flight": { type: "string" },
      "lambda-timeout": { type: "string" },
      profile: { type: "string" },
      "aws-overheads": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.only !== undefined && !TABLES.includes(values.only)) {
    throw new Error(`--only takes ${TABLES.join(", ")}, not "${values.only}"\n${USAGE}`);
  }
  // A bad figure fails before anything runs.
  const overheads =
    values["aws-overheads"] === undefined ? undefined : parseAwsOverheads(values["aws-overheads"]);
  const limits = values.limits.split(",").map(Number);
  if (!limits.every((limit) => Number.isInteger(limit) && limit > 0)) {
    throw new Error(`--limits takes whole numbers above 0, not "${values.limits}"\n${USAGE}`);
  }
  // AWS checks the definition when it is deployed, not per execution: once here, not in each execution's
  // process (the local engine's check compiles its schemas each time, about 0.3 s of CPU).
  checkDefinition(loadDefinition());
  // The collection runs bundled, as the Lambda does, so its RSS and start-up are not tsx's.
  await build({
    entryPoints: [path.join(__dirname, "collect-once.ts")],
    bundle: true,
    platform: "node",
    target: "node22",
    format: "cjs",
    outdir: BUILD,
    // Reads its data files beside its own module: loaded from node_modules when a stand-in evaluates a role.
    external: ["@cloud-copilot/iam-simulate"],
    logLevel: "warning",
  });
  const top = Number(values.top);
  const env: NodeJS.ProcessEnv = { ...process.env, TOP_N: String(top) };
  if (values.gzip !== undefined) env.GZIP = values.gzip;
  if (values["lambda-timeout"]) env.BENCH_LAMBDA_TIMEOUT_MS = String(Number(values["lambda-timeout"]) * 1000);
  if (overheads !== undefined) env.BENCH_AWS_OVERHEADS = values["aws-overheads"];
  const nodeFlags = values.profile ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(values.profile)}`] : [];
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  process.stdout.write(
    `machine: ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}; TOP_N ${top}, GZIP ${values.gzip ?? "as configured by default"}\n`,
  );
  process.stdout.write(
    `AWS-like overheads: ${overheads === undefined ? "none (the local engine's own)" : describeAwsOverheads(overheads)}\n`,
  );
  const runs = (table: string) => values.only === undefined || values.only === table;
  if (runs("throughput")) {
    const throughputEnv = { ...env };
    if (values["in-flight"]) throughputEnv.MAX_PAGES_IN_FLIGHT = values["in-flight"];
    await throughputTable(values.scenarios, top, throughputEnv, nodeFlags);
  }
  if (runs("latency")) await latencyTable(env, nodeFlags);
  if (runs("throttling")) await throttlingTable(env, nodeFlags);
  if (runs("catch-up")) await catchUpTable(top, limits, env, nodeFlags);
  if (runs("phases")) await phasesTable(top, Number(values.runs), env, nodeFlags);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
