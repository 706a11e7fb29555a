// Stops with one line and exit code 2 when this Node.js is older than 22. The CLI loads it before anything else,
// and every npm script runs it first (`node bin/require-node22.js && …`), so a wrong Node says what to do instead
// of crashing with a module-not-found trace. It has to run on old Node.js itself: CommonJS, no dependencies, and
// no syntax or API newer than Node.js 6 (no `node:` imports, no `?.` or `??`).

// biome-ignore lint/style/useNodejsImportProtocol: Node.js before 14.18 has no node: scheme for require
const fs = require("fs");
// biome-ignore lint/style/useNodejsImportProtocol: as above
const path = require("path");

const REQUIRED_MAJOR = 22;

/** The one line to print when `version` (like "22.1.0") is too old; undefined when it will do. */
function nodeVersionProblem(version, execPath, projectDirectory) {
  if (Number(version.split(".")[0]) >= REQUIRED_MAJOR) return undefined;
  const found = `Node.js ${REQUIRED_MAJOR} or newer is needed, and this is v${version} (${execPath})`;
  // `npm ci` puts Node.js 22 (the `node` package) in node_modules/.bin, where npm scripts and npx find it
  // first; its install script sets it up, so an install that skipped scripts has none.
  const bundled = fs.existsSync(path.join(projectDirectory, "node_modules", ".bin", "node"));
  return bundled
    ? `${found}: run it as npm start, npm test or npx citrix-collector, which use the Node.js ${REQUIRED_MAJOR} that npm ci put in node_modules/.bin`
    : `${found}: the Node.js ${REQUIRED_MAJOR} that npm ci installs was not set up (installed with --ignore-scripts?): run "npm rebuild node" once, or install Node.js ${REQUIRED_MAJOR}`;
}

const problem = nodeVersionProblem(process.versions.node, process.execPath, path.join(__dirname, ".."));
if (problem !== undefined) {
  process.stderr.write(`citrix-collector: ${problem}\n`);
  process.exit(2);
}
