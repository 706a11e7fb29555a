#!/usr/bin/env node
// The operator CLI's entry point. It runs the TypeScript sources through tsx's loaders (for require and for
// the `run` command's on-demand import), so `npx citrix-collector` works straight after `npm ci`, unbuilt.
// First of all: on a Node.js older than 22 tsx itself fails to load, so say so in one line instead.
require("./require-node22.js");
require("tsx/cjs/api").register();
require("tsx/esm/api").register();

const { main } = require("../cli/main.ts");

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`citrix-collector: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
