// Bundles the operator CLI (cli/main.ts and everything of the project it imports) into one CommonJS file,
// .cli-build/main.js, with the project's own esbuild: loading that takes a tenth of compiling the TypeScript
// sources on every call. `npm ci` builds it (the `prepare` script); bin/citrix-collector.js rebuilds it first
// whenever a file it was built from changed, or after an install that skipped scripts. Packages stay in
// node_modules (required from there), and the folder is git-ignored.
const fs = require("node:fs");
const path = require("node:path");

const ROOT = path.join(__dirname, "..");
const BUILD_DIRECTORY = path.join(ROOT, ".cli-build");
const BUNDLE = path.join(BUILD_DIRECTORY, "main.js");
/** The files the bundle was built from (relative to ROOT), as esbuild's metafile lists them. */
const INPUTS = path.join(BUILD_DIRECTORY, "inputs.json");

/** Whether the bundle is missing, or older than one of the files it was built from (this one included). */
function bundleIsStale() {
  let builtMs;
  let inputs;
  try {
    builtMs = fs.statSync(BUNDLE).mtimeMs;
    inputs = JSON.parse(fs.readFileSync(INPUTS, "utf8"));
  } catch {
    return true;
  }
  // A new source file matters only once an existing one imports it, and that one is then newer.
  return inputs.some((input) => {
    try {
      return fs.statSync(path.join(ROOT, input)).mtimeMs > builtMs;
    } catch {
      return true;
    }
  });
}

/**
 * The sources use `__dirname` to find files of the repository (the definition, serverless.yml, a container
 * script), so in the bundle each one becomes its own file's folder, relative to the bundle's.
 */
const sourceDirname = {
  name: "source-dirname",
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      const source = fs.readFileSync(args.path, "utf8");
      if (!source.includes("__dirname")) return undefined;
      const fromBundle = path.relative(BUILD_DIRECTORY, path.dirname(args.path)).split(path.sep);
      const folder = `require("node:path").join(__dirname, ${fromBundle.map((part) => JSON.stringify(part)).join(", ")})`;
      return { contents: source.replace(/\b__dirname\b/g, folder), loader: "ts" };
    });
  },
};

/** Builds the bundle; several processes may build at once, each renaming its own complete file into place. */
async function buildCli() {
  const esbuild = require("esbuild");
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: ["cli/main.ts"],
    outfile: BUNDLE,
    bundle: true,
    platform: "node",
    target: "node22",
    format: "cjs",
    packages: "external",
    write: false,
    metafile: true,
    logLevel: "error",
    plugins: [sourceDirname],
  });
  fs.mkdirSync(BUILD_DIRECTORY, { recursive: true });
  const inputs = [...Object.keys(result.metafile.inputs), path.relative(ROOT, __filename)];
  const unique = `${process.pid}-${Date.now()}`;
  fs.writeFileSync(`${INPUTS}.${unique}`, JSON.stringify(inputs));
  fs.renameSync(`${INPUTS}.${unique}`, INPUTS);
  // The bundle last: a process that finds it newer than its inputs finds their list complete.
  fs.writeFileSync(`${BUNDLE}.${unique}`, result.outputFiles[0].contents);
  fs.renameSync(`${BUNDLE}.${unique}`, BUNDLE);
}

/** The bundle's path, built first when it is missing or stale. */
async function cliBundle() {
  if (bundleIsStale()) await buildCli();
  return BUNDLE;
}

module.exports = { cliBundle };

if (require.main === module) {
  cliBundle().catch((error) => {
    process.stderr.write(`build-cli: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
