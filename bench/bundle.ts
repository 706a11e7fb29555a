/**
 * `npm run bench:bundle`: what each Lambda ships and what loading it costs. Runs `serverless package` (the
 * same command as `npm run package`, into .bench-build/bundle), then per function prints the zip's size,
 * the unzipped JavaScript and source map, the median time a fresh Node process takes to `require` the
 * bundled handler (with the NODE_OPTIONS serverless.yml gives the functions, --enable-source-maps), and the
 * packages that make up most of the bundle (from an esbuild metafile built with serverless.yml's options).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { inflateRawSync } from "node:zlib";
import { type BuildOptions, build } from "esbuild";
import { parse } from "yaml";

const USAGE = `npm run bench:bundle -- [options]
  --runs N        counted loads of each handler, after one warm-up (default 9)
  --no-package    measure the zips already in .bench-build/bundle instead of packaging again
`;
const ROOT = path.join(__dirname, "..");
const OUT = path.join(ROOT, ".bench-build", "bundle");

interface ServerlessYml {
  provider: { environment?: Record<string, string> };
  custom: { esbuild: BuildOptions };
  functions: Record<string, { handler: string }>;
}

interface ZipEntry {
  name: string;
  compressedBytes: number;
  bytes: number;
  data(): Buffer;
}

/** The entries of a zip file, from its central directory (the format serverless package writes). */
function zipEntries(zip: Buffer): ZipEntry[] {
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (end < 0) throw new Error("not a zip file: no end of central directory");
  const count = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    const method = zip.readUInt16LE(at + 10);
    const compressedBytes = zip.readUInt32LE(at + 20);
    const bytes = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const headerLength = 46 + nameLength + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString("utf8", at + 46, at + 46 + nameLength);
    entries.push({
      name,
      compressedBytes,
      bytes,
      data() {
        const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
        const raw = zip.subarray(start, start + compressedBytes);
        return method === 8 ? inflateRawSync(raw) : Buffer.from(raw);
      },
    });
    at += headerLength;
  }
  return entries;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/**
 * Milliseconds one fresh process spends in `require(handlerFile)`, as the Lambda runtime's init does, with
 * the functions' NODE_OPTIONS. Timed inside the child, so Node's own start-up (the same for any bundle) is
 * reported apart, as the whole process's wall time.
 */
function loadOnce(handlerFile: string, nodeOptions: string): { requireMs: number; processMs: number } {
  const script = `const t = process.hrtime.bigint(); require(${JSON.stringify(handlerFile)});
process.stdout.write(String(Number(process.hrtime.bigint() - t) / 1e6));`;
  const started = performance.now();
  const child = spawnSync(process.execPath, ["-e", script], {
    env: { ...process.env, NODE_OPTIONS: nodeOptions, AWS_REGION: "us-east-1" },
    encoding: "utf8",
  });
  const processMs = performance.now() - started;
  if (child.status !== 0) throw new Error(`loading ${handlerFile} failed:\n${child.stderr}`);
  return { requireMs: Number(child.stdout), processMs };
}

/** Bytes each package (or the project's own folder) contributes to a bundle built as serverless.yml builds it. */
async function bundleComposition(entry: string, options: BuildOptions): Promise<Map<string, number>> {
  const result = await build({ ...options, entryPoints: [entry], outdir: OUT, write: false, metafile: true });
  const output = Object.entries(result.metafile.outputs).find(([file]) => file.endsWith(".js"))?.[1];
  const byPackage = new Map<string, number>();
  for (const [file, input] of Object.entries(output?.inputs ?? {})) {
    const owner = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1] ?? path.dirname(file);
    byPackage.set(owner, (byPackage.get(owner) ?? 0) + input.bytesInOutput);
  }
  return byPackage;
}

const kb = (bytes: number) => `${Math.round(bytes / 1024).toLocaleString("en-US")} KB`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "9" },
      "no-package": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer\n${USAGE}`);
  const service = parse(readFileSync(path.join(ROOT, "serverless.yml"), "utf8")) as ServerlessYml;
  const nodeOptions = service.provider.environment?.NODE_OPTIONS ?? "";

  if (!values["no-package"]) {
    rmSync(OUT, { recursive: true, force: true });
    const packaged = spawnSync("npm", ["run", "--silent", "package", "--", "--package", OUT], {
      cwd: ROOT,
      encoding: "utf8",
    });
    if (packaged.status !== 0)
      throw new Error(`serverless package failed:\n${packaged.stdout}${packaged.stderr}`);
  }

  const rows: string[] = [];
  const compositions: string[] = [];
  for (const [name, fn] of Object.entries(service.functions)) {
    const zipFile = path.join(OUT, `${name}.zip`);
    const zip = readFileSync(zipFile);
    const entries = zipEntries(zip);
    const unzipped = path.join(OUT, name);
    for (const entry of entries) {
      const file = path.join(unzipped, entry.name);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, entry.data());
    }
    const js = entries.filter((entry) => entry.name.endsWith(".js"));
    const maps = entries.filter((entry) => entry.name.endsWith(".js.map"));
    const sum = (list: ZipEntry[]) => list.reduce((total, entry) => total + entry.bytes, 0);
    const handlerFile = path.join(unzipped, `${fn.handler.slice(0, fn.handler.lastIndexOf("."))}.js`);
    loadOnce(handlerFile, nodeOptions);
    const loads = Array.from({ length: runs }, () => loadOnce(handlerFile, nodeOptions));
    const requireMs = loads.map((load) => load.requireMs);
    rows.push(
      `| ${name} | ${kb(zip.length)} | ${kb(sum(js))} | ${kb(sum(maps))} | ${median(requireMs).toFixed(0)} (${Math.min(...requireMs).toFixed(0)}–${Math.max(...requireMs).toFixed(0)}) | ${median(loads.map((load) => load.processMs)).toFixed(0)} |`,
    );
    const composition = await bundleComposition(
      path.join(ROOT, `${fn.handler.slice(0, fn.handler.lastIndexOf("."))}.ts`),
      service.custom.esbuild,
    );
    const largest = [...composition.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
    compositions.push(`${name}: ${largest.map(([owner, bytes]) => `${owner} ${kb(bytes)}`).join(", ")}`);
  }
  process.stdout.write(
    [
      `Node ${process.version}, NODE_OPTIONS=${nodeOptions || "(none)"}, ${runs} loads per handler after one warm-up`,
      "",
      "| function | zip | JS unzipped | source map | require ms, median (min–max) | whole process ms, median |",
      "| --- | --: | --: | --: | --: | --: |",
      ...rows,
      "",
      "Largest parts of each bundle (bytes of JavaScript in the bundle):",
      ...compositions,
      "",
    ].join("\n"),
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
