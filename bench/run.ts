/**
 * `npm run bench`: collects one sessions entity-hour of each volume through the deployed definition and
 * prints records/s, MB/s written, wall time, peak RSS and invocations per item. Each scenario runs in
 * fresh processes: the Citrix simulator, the S3 server and the collection each in its own (see USAGE).
 */
import { type ChildProcess, spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { build } from "esbuild";

interface Figures {
  records: number;
  pages: number;
  objects: number;
  storedBytes: number;
  wallMs: number;
  peakRssMb: number;
  cpuMs: number;
  invocations: number;
  longestInvocationMs: number;
  lambdaTimeoutMs: number;
  iterationEvents: number;
}

const USAGE = `npm run bench -- [options]
  --scenarios 10000:0,100000:0,1000000:0,100000:200   records:pageLatencyMs, comma-separated
  --top 1000          TOP_N (page size)
  --in-flight N       MAX_PAGES_IN_FLIGHT (default 1)
  --gzip              GZIP=true
  --lambda-timeout S  emulated collect Lambda timeout in seconds (default: serverless.yml's)
  --profile DIR       write a V8 CPU profile of each process (collection, simulator, S3 server) into DIR
`;
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

interface ScenarioFigures extends Figures {
  /** CPU seconds the stand-ins spent: what shares the machine's cores with the collection. */
  simulatorCpuMs: number;
  s3CpuMs: number;
}

async function runScenario(
  records: number,
  latencyMs: number,
  env: NodeJS.ProcessEnv,
  nodeFlags: string[],
): Promise<ScenarioFigures> {
  const standIns = [["simulator", String(records), String(latencyMs)], ["s3"]].map((args) => {
    const child = spawn(
      path.join(BIN, "tsx"),
      [...nodeFlags, path.join(__dirname, "stand-ins.ts"), ...args],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...STAND_IN_MALLOC } },
    );
    return { child, nextLine: lineReader(child) };
  });
  try {
    const addresses = Object.assign(
      {},
      ...(await Promise.all(
        standIns.map(async ({ nextLine }) => JSON.parse(await nextLine()) as Record<string, string>),
      )),
    );
    const collector = spawn(path.join(BIN, "node"), [...nodeFlags, path.join(BUILD, "collect-once.js")], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...env, ...addresses },
    });
    const figures = JSON.parse(await lineReader(collector)()) as Figures;
    const [simulatorCpuMs, s3CpuMs] = await Promise.all(
      standIns.map(async ({ child, nextLine }) => {
        child.kill("SIGTERM");
        return (JSON.parse(await nextLine()) as { cpuMs: number }).cpuMs;
      }),
    );
    return { ...figures, simulatorCpuMs: simulatorCpuMs ?? 0, s3CpuMs: s3CpuMs ?? 0 };
  } finally {
    for (const { child } of standIns) child.kill("SIGTERM");
  }
}

async function main(): Promise<void> {
  // The collection runs bundled, as the Lambda does, so its RSS and start-up are not tsx's.
  await build({
    entryPoints: [path.join(__dirname, "collect-once.ts")],
    bundle: true,
    platform: "node",
    target: "node22",
    format: "cjs",
    outdir: BUILD,
    logLevel: "warning",
  });
  const { values } = parseArgs({
    options: {
      scenarios: { type: "string", default: "10000:0,100000:0,1000000:0,100000:200" },
      top: { type: "string", default: "1000" },
      gzip: { type: "boolean", default: false },
      "in-flight": { type: "string", default: "1" },
      "lambda-timeout": { type: "string" },
      profile: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const top = Number(values.top);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TOP_N: String(top),
    GZIP: String(values.gzip),
    MAX_PAGES_IN_FLIGHT: values["in-flight"],
  };
  if (values["lambda-timeout"]) env.BENCH_LAMBDA_TIMEOUT_MS = String(Number(values["lambda-timeout"]) * 1000);
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  process.stdout.write(
    `machine: ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}; TOP_N ${top}, MAX_PAGES_IN_FLIGHT ${values["in-flight"]}, gzip ${values.gzip ? "on" : "off"}\n\n`,
  );
  const header = [
    "records",
    "latency",
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
    "latency bound/s",
  ];
  process.stdout.write(`${header.join(" | ")}\n`);
  for (const scenario of values.scenarios.split(",")) {
    const [records, latency] = scenario.split(":").map(Number) as [number, number];
    const nodeFlags = values.profile ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(values.profile)}`] : [];
    const figures = await runScenario(records, latency ?? 0, env, nodeFlags);
    const seconds = figures.wallMs / 1000;
    // With page latency L each page costs at least L: the bound is TOP_N records per L.
    const bound = latency > 0 ? Math.round((top * 1000) / latency) : undefined;
    const row = [
      figures.records,
      `${latency} ms`,
      seconds.toFixed(1),
      Math.round(figures.records / seconds),
      (figures.storedBytes / 2 ** 20 / seconds).toFixed(1),
      figures.peakRssMb.toFixed(0),
      `${(figures.cpuMs / 1000).toFixed(1)} (${Math.round(figures.records / (figures.cpuMs / 1000))})`,
      `${(figures.simulatorCpuMs / 1000).toFixed(1)} + ${(figures.s3CpuMs / 1000).toFixed(1)}`,
      figures.objects,
      figures.invocations,
      (figures.longestInvocationMs / 1000).toFixed(1),
      figures.iterationEvents,
      bound === undefined ? "-" : `${bound} (${Math.round(((figures.records / seconds) * 100) / bound)}%)`,
    ];
    process.stdout.write(`${row.join(" | ")}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
