// Mutation testing: `npm run mutate` (the exactly-once core), or one file with
// `npm run mutate -- --mutate functions/lib/feed/part-writer.ts`; MUTATE_TESTS='test/unit/**' narrows the tests
// (see vitest.mutate.config.mts). Integration tests read the packaged templates: run
// `npm run package:variant && npm run package` first. Not part of `npm test`: a run takes minutes to hours.
/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  plugins: ["@stryker-mutator/vitest-runner"],
  // Its own vitest config, not --testFiles: narrowing with --testFiles reports mutants in module-level
  // constants as survived (stryker-js #6144, #6209).
  vitest: { configFile: "vitest.mutate.config.mts", pool: "forks" },
  coverageAnalysis: "perTest",
  mutate: [
    "functions/lib/feed/publisher.ts",
    "functions/lib/feed/watermark.ts",
    "functions/lib/feed/plan-run.ts",
    "functions/lib/feed/planner.ts",
    "functions/lib/feed/collector.ts",
    "functions/lib/feed/page-source.ts",
    "functions/lib/feed/page-pacer.ts",
    "functions/lib/feed/shared-limit.ts",
    "functions/lib/feed/segment-writer.ts",
    "functions/lib/feed/part-writer.ts",
    "functions/lib/citrix/odata-page.ts",
    "functions/lib/citrix/paging.ts",
    "functions/lib/citrix/page-window.ts",
  ],
  // The machine is shared: two test processes at most (override with --concurrency).
  concurrency: 2,
  // Added to each test's dry-run time before a mutant counts as an endless loop: the shared machine is slow,
  // but every endless-loop mutant costs this much.
  timeoutMS: 10_000,
  reporters: ["clear-text", "progress", "html"],
  htmlReporter: { fileName: "reports/mutation/index.html" },
  tempDirName: ".stryker-tmp",
};
