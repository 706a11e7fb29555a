/**
 * `npm run soak -- --schedules N`: runs N seeded fault schedules (test/integration/end-to-end/fault-schedules.test.ts)
 * instead of the few the test suite runs, starting at --first-seed. A failing seed prints its schedule, what
 * each execution did and the one-line command that replays it.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { parseArgs } from "node:util";

const USAGE = `npm run soak -- [options]
  --schedules N     how many schedules (default 1000)
  --first-seed S    the first seed; the others follow it (default 1)
  --verbose         print every schedule's trace, not only the failing ones'
`;

const { values } = parseArgs({
  options: {
    schedules: { type: "string", default: "1000" },
    "first-seed": { type: "string", default: "1" },
    verbose: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
for (const name of ["schedules", "first-seed"] as const) {
  if (!/^\d+$/.test(values[name])) {
    process.stderr.write(`--${name} must be a whole number\n${USAGE}`);
    process.exit(2);
  }
}

const vitest = path.join(__dirname, "..", "node_modules", ".bin", "vitest");
const result = spawnSync(
  vitest,
  ["run", "test/integration/end-to-end/fault-schedules.test.ts", "--reporter=dot"],
  {
    cwd: path.join(__dirname, ".."),
    stdio: "inherit",
    env: {
      ...process.env,
      SOAK_SCHEDULES: values.schedules,
      SOAK_FIRST_SEED: values["first-seed"],
      ...(values.verbose ? { SOAK_VERBOSE: "1" } : {}),
    },
  },
);
process.exit(result.status ?? 1);
