import { describe, expect, it } from "vitest";
import { CollectionProgress } from "../../../cli/progress";
import type { CollectOutput, CommitOutput, PlanOutput } from "../../../functions/lib/config/contracts";

const HOURS = ["2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z"];
const PLAN: PlanOutput = {
  runId: "local-1",
  mode: "scheduled",
  hours: HOURS,
  entities: ["sessions", "users"],
  deferred: {},
  items: HOURS.flatMap((hourUtc) => ["sessions", "users"].map((entity) => ({ entity, hourUtc, rest: [] }))),
  watermark: { hourUtc: null, etag: null },
  maxConcurrency: 4,
  lagHours: 0,
};

function output(
  entity: string,
  hourUtc: string,
  done: boolean,
  pages: number,
  records: number,
): CollectOutput {
  const invocations = 1;
  return {
    runId: "local-1",
    entity,
    hourUtc,
    done,
    progress: {
      cursor: { skip: records },
      segments: [],
      parts: 1,
      records,
      pages,
      invocations,
      largestPage: 1000,
    },
    finished: done ? [{ entity, hourUtc, pages, records, parts: 1, invocations }] : [],
    runTotals: {
      entityHours: done ? 1 : 0,
      pages: done ? pages : 0,
      records: done ? records : 0,
      parts: done ? 1 : 0,
    },
  };
}

/** Up one line, then clear it: the only control sequence the display writes. */
const ERASE_LINE_ABOVE = "\x1b[1A\x1b[2K";

/** A terminal that understands the display's control sequence; `screen` is what a user sees. */
function terminal(columns = 200) {
  const lines: string[] = [];
  return {
    isTTY: true,
    columns,
    write(text: string) {
      text.split(ERASE_LINE_ABOVE).forEach((part, index) => {
        if (index > 0) lines.pop();
        lines.push(...part.split("\n").slice(0, -1));
      });
    },
    screen: () => [...lines],
  };
}

describe("the local run's progress display", () => {
  it("on a terminal keeps the entity-hours being collected and a totals line at the bottom, redrawn in place", () => {
    const tty = terminal();
    const progress = new CollectionProgress(tty);
    progress.planned(PLAN);
    progress.invoking("sessions", HOURS[0] as string);
    progress.invoking("users", HOURS[0] as string);
    progress.invoked(output("sessions", HOURS[0] as string, false, 2, 2000));

    expect(tty.screen()).toEqual([
      expect.stringMatching(/^Planned scheduled run: 2 hour\(s\) × 2 entities/),
      "sessions    2026-11-24T08:00:00Z  collecting  pages 2  records 2,000  parts 1  invocations 1",
      "users       2026-11-24T08:00:00Z  collecting  pages 0  records 0  parts 0  invocations 0",
      "0/4 entity-hours collected · 2 pages · 2,000 records",
    ]);

    progress.invoked(output("users", HOURS[0] as string, true, 1, 300));
    progress.failed(
      "sessions",
      HOURS[0] as string,
      Object.assign(new Error("x"), { name: "CitrixAuthError" }),
    );
    progress.finish();

    // Finished entity-hours stay, in the order they finished; the live lines are gone.
    expect(tty.screen()).toEqual([
      expect.stringMatching(/^Planned /),
      "users       2026-11-24T08:00:00Z  collected   pages 1  records 300  parts 1  invocations 1",
      "sessions    2026-11-24T08:00:00Z  failed      CitrixAuthError",
    ]);
  });

  it("on a terminal cuts lines to its width", () => {
    const tty = terminal(40);
    const progress = new CollectionProgress(tty);
    progress.planned(PLAN);
    for (const line of tty.screen()) expect(line.length).toBeLessThan(40);
  });

  it("prints an entity-hour of a run when its log line says it is collected, and once only", () => {
    let text = "";
    const progress = new CollectionProgress({ write: (chunk: string) => (text += chunk) });
    progress.planned(PLAN);
    progress.invoking("sessions", HOURS[0] as string);
    progress.logged("not JSON\n");
    progress.logged(`${JSON.stringify({ message: "fetched page", entity: "sessions", hour: HOURS[0] })}\n`);
    const logLine = { message: "entity-hour collected", entity: "sessions", hour: HOURS[0] };
    progress.logged(`${JSON.stringify({ ...logLine, pages: 3, records: 12500, parts: 1, invocation: 1 })}\n`);
    const printed = text.split("\n").slice(1, -1);
    expect(printed).toEqual([
      "sessions    2026-11-24T08:00:00Z  collected   pages 3  records 12,500  parts 1  invocations 1",
    ]);
    // The invocation's output names it among those it finished: it is not printed again.
    progress.invoked({
      ...output("users", HOURS[0] as string, true, 1, 300),
      finished: [
        {
          entity: "sessions",
          hourUtc: HOURS[0] as string,
          pages: 3,
          records: 12500,
          parts: 1,
          invocations: 1,
        },
        { entity: "users", hourUtc: HOURS[0] as string, pages: 1, records: 300, parts: 1, invocations: 1 },
      ],
    });
    expect(text.split("\n").slice(1, -1)).toEqual([
      ...printed,
      "users       2026-11-24T08:00:00Z  collected   pages 1  records 300  parts 1  invocations 1",
    ]);
  });

  it("elsewhere writes one plain line per entity-hour, when it is collected, and never moves the cursor", () => {
    let text = "";
    const progress = new CollectionProgress({ write: (chunk: string) => (text += chunk) });
    progress.planned(PLAN);
    progress.invoking("sessions", HOURS[0] as string);
    progress.invoked(output("sessions", HOURS[0] as string, false, 2, 2000));
    progress.invoking("sessions", HOURS[0] as string);
    progress.invoked(output("sessions", HOURS[0] as string, true, 3, 12500));
    progress.finish();

    expect(text).not.toContain("\x1b");
    expect(text.split("\n").slice(1, -1)).toEqual([
      "sessions    2026-11-24T08:00:00Z  collected   pages 3  records 12,500  parts 1  invocations 1",
    ]);
  });

  it("says when nothing is due", () => {
    let text = "";
    const progress = new CollectionProgress({ write: (chunk: string) => (text += chunk) });
    progress.planned({
      ...PLAN,
      hours: [],
      items: [],
      watermark: { hourUtc: HOURS[1] as string, etag: "e" },
    });
    expect(text).toBe(`Planned scheduled run: nothing due, watermark ${HOURS[1]}, lag 0 hour(s)\n`);
  });

  it("on a first run names no watermark and no lag: none is stored until its Commit stores the first", () => {
    let text = "";
    const progress = new CollectionProgress({ write: (chunk: string) => (text += chunk) });
    // Plan counts a first run from the hour before its first hour; that watermark is stored nowhere.
    progress.planned({ ...PLAN, watermark: { hourUtc: "2026-11-24T07:00:00Z", etag: null }, lagHours: 2 });
    const commit: Omit<CommitOutput, "watermark"> = {
      runId: "local-1",
      mode: "scheduled",
      status: "committed",
      hours: [],
    };
    progress.committed({
      ...commit,
      watermark: { before: "2026-11-24T07:00:00Z", after: HOURS[1] as string },
    });
    progress.committed({ ...commit, watermark: { before: null, after: null } });
    expect(text.split("\n")).toEqual([
      `Planned scheduled run: 2 hour(s) × 2 entities (${HOURS[0]} … ${HOURS[1]}), no watermark stored yet`,
      `Published 0 of 0 hour(s), watermark stored for the first time: ${HOURS[1]}`,
      "Published 0 of 0 hour(s), no watermark stored yet",
      "",
    ]);
    expect(text).not.toMatch(/lag|07:00/);
  });

  it("once a watermark is stored, says where it moved", () => {
    let text = "";
    const progress = new CollectionProgress({ write: (chunk: string) => (text += chunk) });
    progress.planned({ ...PLAN, watermark: { hourUtc: "2026-11-24T07:00:00Z", etag: "e" }, lagHours: 2 });
    progress.committed({
      runId: "local-1",
      mode: "scheduled",
      status: "committed",
      hours: [],
      watermark: { before: "2026-11-24T07:00:00Z", after: HOURS[1] as string },
    });
    expect(text).toContain("watermark 2026-11-24T07:00:00Z, lag 2 hour(s)");
    expect(text).toContain(`watermark 2026-11-24T07:00:00Z → ${HOURS[1]}`);
  });
});
