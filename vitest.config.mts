import { defineConfig } from "vitest/config";
import SlowestFirst from "./test/support/slowest-first";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Vitest's default is one worker fewer than the cores: one file at a time on a 2-core machine, while most
    // integration files spend much of their time waiting on local servers and child processes. Two at a time:
    // every file starts its own servers on free ports and keeps its data in folders of its own.
    maxWorkers: 2,
    // Files share their worker's modules instead of importing the SDKs and the engine again each (a sixth of the
    // suite's CPU): no test mocks a module, fakes timers or changes process.env, and every file starts its own
    // servers and keeps its own data.
    isolate: false,
    sequence: { sequencer: SlowestFirst },
  },
});
