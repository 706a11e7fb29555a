import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * The slowest test files, slowest first (each 15–65 s of a 2-core machine's `npm test`). Vitest starts files by
 * the durations its cache kept from an earlier run, which a fresh clone (CI) lacks; it then starts the largest
 * files first, and a short file that runs long (execution-size) would start last and run on alone while the
 * other worker idles. Started first, the two workers finish together. A file missing from this list only starts
 * later.
 */
const SLOWEST = [
  "test/integration/end-to-end/execution-size.test.ts",
  "test/integration/end-to-end/fault-schedules.test.ts",
  "test/integration/cli/cli.test.ts",
  "test/integration/deployment/deploy-check.test.ts",
  "test/integration/end-to-end/exactly-once.test.ts",
  "test/integration/citrix/citrix-faults.test.ts",
  "test/integration/aws/least-privilege.test.ts",
  "test/integration/end-to-end/operator-actions.test.ts",
  "test/integration/cli/local-operations.test.ts",
];

export default class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (spec: TestSpecification) => {
      const index = SLOWEST.findIndex((file) => spec.moduleId.endsWith(file));
      return index < 0 ? SLOWEST.length : index;
    };
    return sorted
      .map((spec, order) => ({ spec, order }))
      .sort((a, b) => rank(a.spec) - rank(b.spec) || a.order - b.order)
      .map(({ spec }) => spec);
  }
}
