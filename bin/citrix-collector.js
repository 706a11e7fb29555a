#!/usr/bin/env node
// The operator CLI's entry point: `npm exec citrix-collector` (or `npx citrix-collector`) inside the project.
// It loads the bundle bin/build-cli.js makes of cli/main.ts, rebuilt first when a source changed, so
// `--help` answers at once instead of after compiling the TypeScript sources.
// First of all: on a Node.js older than 22 nothing else would load, so say so in one line instead.
require("./require-node22.js");
const { cliBundle } = require("./build-cli.js");

cliBundle()
  .then((bundle) => require(bundle).main(process.argv.slice(2)))
  .then(
    (code) => process.exit(code),
    (error) => {
      process.stderr.write(`citrix-collector: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
