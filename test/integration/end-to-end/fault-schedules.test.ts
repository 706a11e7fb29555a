import { afterAll, describe, expect, it } from "vitest";
import {
  generateSchedule,
  replayCommand,
  runSchedule,
  type ScheduleReport,
  type TickSpec,
} from "../../support/fault-schedule";

// Proof by fault schedules (docs/design.md, "Why nothing is lost or written twice, and why it always finishes"):
// seeded random schedules of hourly executions with kills, S3 errors, Citrix API errors, overlaps, redrives and
// what people and clocks do (backfills, first runs, the state file deleted, ENTITIES changed, staging expired,
// abandoned invocations, lost responses, skewed clocks), then fault-free runs; each schedule must keep every
// record once and catch up on its own, or with the fix a named error gave.
// SOAK_SEED=<n> replays one seed; `npm run soak -- --schedules N` runs N schedules from SOAK_FIRST_SEED.
const CI_SCHEDULES = 20;

/** How many of something the schedule's fault ticks hold. */
function count(report: ScheduleReport, perTick: (tick: TickSpec) => number): number {
  return report.schedule.faultTicks.reduce((total, tick) => total + perTick(tick), 0);
}

function seeds(): number[] {
  const one = process.env.SOAK_SEED;
  if (one) return [Number(one)];
  const first = Number(process.env.SOAK_FIRST_SEED ?? 1);
  const count = Number(process.env.SOAK_SCHEDULES ?? CI_SCHEDULES);
  return Array.from({ length: count }, (_, i) => first + i);
}

describe("fault schedules", () => {
  const reports: ScheduleReport[] = [];
  afterAll(() => {
    const sum = (figure: (report: ScheduleReport) => number) =>
      reports.reduce((total, report) => total + figure(report), 0);
    console.log(
      `fault schedules: ${reports.length} run, ${reports.filter((report) => report.violations.length > 0).length} with violations; ` +
        `${sum((report) => report.executions)} executions, ${sum((report) => report.kills)} killed, ` +
        `${sum((report) => report.abandoned)} invocations abandoned, ${sum((report) => report.lostResponses)} responses lost, ` +
        `${sum((report) => report.operatorFixes)} named fixes performed, ` +
        `${sum((report) => count(report, (tick) => tick.executions.filter((run) => run.kind === "backfill").length))} backfills, ` +
        `${sum((report) => count(report, (tick) => tick.operator.filter((action) => action.kind === "delete-state").length))} state files deleted, ` +
        `${sum((report) => count(report, (tick) => (tick.entities ? 1 : 0)))} ENTITIES changes, ` +
        `${sum((report) => report.stagingExpired)} stagings expired, ` +
        `${sum((report) => report.failedExecutions)} failed by their faults or kills; ` +
        `${sum((report) => report.recovery.ticks)} fault-free runs to catch up (at most ${Math.max(0, ...reports.map((report) => report.recovery.ticks))} in one schedule)`,
    );
  });

  it.each(seeds())(
    "seed %i keeps every record once and catches up after the faults stop",
    async (seed) => {
      const report = await runSchedule(generateSchedule(seed));
      reports.push(report);
      if (process.env.SOAK_VERBOSE) console.log(report.trace.join("\n"));
      if (report.violations.length > 0) {
        const text = [
          `schedule seed ${seed} failed; replay with: ${replayCommand(seed)}`,
          ...report.violations.map((violation) => `VIOLATION ${violation}`),
          ...report.trace,
        ].join("\n");
        console.error(text);
        expect.fail(text);
      }
    },
    300_000,
  );
});
