import { defineConfig } from "vitest/config";
import base from "./vitest.config.mts";

// The tests Stryker runs: every test by default (Stryker runs only those related to the mutated file),
// or the files in MUTATE_TESTS (comma-separated globs), e.g. MUTATE_TESTS='test/unit/**' for a quick run.
// Not mergeConfig: it would append these globs to the base config's instead of replacing them.
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: process.env.MUTATE_TESTS?.split(",") ?? ["test/**/*.test.ts"],
    // Stryker runs its own test processes (its `concurrency`), each file isolated as it measured them.
    isolate: true,
    maxWorkers: undefined,
    sequence: {},
  },
});
