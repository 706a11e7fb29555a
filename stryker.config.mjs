// Mutation testing: `npm run mutate` (the exactly-once core), or one file with
// `npm run mutate -- --mutate functions/lib/part-writer.ts`. Integration tests read the packaged template:
// run `npm run package` first. Not part of `npm test`: a run takes minutes to hours.
/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  plugins: ["@stryker-mutator/vitest-runner"],
  // Its own vitest config, not --testFiles: narrowing with --testFiles reports mutants in module-level
  // constants as survived (stryker-js #6144, #6209).
  vitest: { configFile: "vitest.mutate.config.mts", pool: "forks" },
  coverageAnalysis: "perTest",
  mutate: [
    "functions/lib/publisher.ts",
    "functions/lib/watermark.ts",
    "functions/lib/collector.ts",
    "functions/lib/part-writer.ts",
    "functions/lib/odata-page.ts",
  ],
  // The machine is shared: two test processes at most (override with --concurrency).
  concurrency: 2,
  // Integration tests start servers and a local Step Functions engine; a slow machine must not time them out.
  timeoutMS: 60_000,
  reporters: ["clear-text", "progress", "html"],
  htmlReporter: { fileName: "reports/mutation/index.html" },
  tempDirName: ".stryker-tmp",
};
