import type {
  CollectOutput,
  CommitOutput,
  EntityHourFigures,
  PlanOutput,
} from "../functions/lib/config/contracts";
import { parseJson } from "../functions/lib/feed/manifest";
import { entityHoursOf } from "../functions/lib/feed/planner";
import { formatCount, type Output } from "./context";

type RowState = "queued" | "collecting" | "retrying" | "collected" | "failed";

interface Row {
  entity: string;
  hourUtc: string;
  state: RowState;
  pages: number;
  records: number;
  parts: number;
  invocations: number;
  error?: string;
}

/**
 * Shows a local run per entity-hour: each prints one line when it is collected (or fails). On a terminal the
 * ones being collected stay at the bottom, redrawn as their invocations report, with a totals line; elsewhere
 * (a pipe, a CI log) nothing relies on cursor movement, so only the finished lines are written.
 */
export class CollectionProgress {
  private readonly rows = new Map<string, Row>();
  private readonly live: boolean;
  /** Lines of the live area currently on screen, erased before anything else is written. */
  private drawn = 0;
  /** Whether Plan read a stored watermark; before it planned, unknown. */
  private watermarkStored: boolean | undefined;

  constructor(private readonly out: Output) {
    this.live = out.isTTY === true;
  }

  planned(plan: PlanOutput): void {
    const entityHours = entityHoursOf(plan.items);
    for (const { entity, hourUtc } of entityHours) {
      this.rows.set(key(entity, hourUtc), {
        entity,
        hourUtc,
        state: "queued",
        pages: 0,
        records: 0,
        parts: 0,
        invocations: 0,
      });
    }
    const range = plan.hours.length === 1 ? plan.hours[0] : `${plan.hours[0]} … ${plan.hours.at(-1)}`;
    const published = plan.hours.length * plan.entities.length - entityHours.length;
    const what =
      plan.hours.length === 0
        ? "nothing due"
        : `${plan.hours.length} hour(s) × ${plan.entities.length} entities (${range})${published > 0 ? `, ${published} entity-hour(s) of them published already` : ""}`;
    // Without a stored watermark (etag null) Plan counts from the hour before its first one: no watermark and
    // no lag an operator could look up.
    this.watermarkStored = plan.watermark.etag !== null;
    const from =
      plan.watermark.etag === null
        ? "no watermark stored yet"
        : `watermark ${plan.watermark.hourUtc}, lag ${plan.lagHours} hour(s)`;
    this.print(`Planned ${plan.mode} run: ${what}, ${from}`);
  }

  invoking(entity: string, hourUtc: string): void {
    const row = this.row(entity, hourUtc);
    row.state = row.state === "failed" ? "retrying" : "collecting";
    this.redraw();
  }

  /** Each entity-hour the invocation finished gets its line (if a log line did not give it one); the one it handed over stays live. */
  invoked(output: CollectOutput): void {
    for (const figures of output.finished) this.collected(figures);
    if (output.done) return;
    const row = this.row(output.entity, output.hourUtc);
    const { pages = 0, records = 0, parts = 0, invocations = 0 } = output.progress ?? {};
    Object.assign(row, { state: "collecting", pages, records, parts, invocations });
    this.redraw();
  }

  /**
   * A log line of the functions: an invocation collects a run of entity-hours, so each one's line is printed
   * when it logs that it is collected, not when the invocation ends.
   */
  logged(line: string): void {
    const fields = parseJson(line) as Record<string, unknown> | null | undefined;
    if (typeof fields !== "object" || fields?.message !== "entity-hour collected") return;
    const { entity, hour, pages, records, parts, invocation } = fields;
    if (typeof entity !== "string" || typeof hour !== "string") return;
    const count = (value: unknown) => (typeof value === "number" ? value : 0);
    this.collected({
      entity,
      hourUtc: hour,
      pages: count(pages),
      records: count(records),
      parts: count(parts),
      invocations: count(invocation),
    });
  }

  failed(entity: string, hourUtc: string, error: unknown): void {
    const row = this.row(entity, hourUtc);
    row.state = "failed";
    row.error = error instanceof Error ? error.name : String(error);
    this.print(rowLine(row));
  }

  committed(commit: CommitOutput): void {
    const published = commit.hours.filter((hour) => hour.outcome !== "already-published").length;
    const { before, after } = commit.watermark;
    const watermark =
      this.watermarkStored !== false
        ? `watermark ${before ?? "none"} → ${after ?? "none"}`
        : after !== null && after !== before
          ? `watermark stored for the first time: ${after}`
          : "no watermark stored yet";
    this.print(`Published ${published} of ${commit.hours.length} hour(s), ${watermark}`);
  }

  /** Leaves the terminal with no live area, before a summary is printed below. */
  finish(): void {
    this.erase();
  }

  private collected({ entity, hourUtc, pages, records, parts, invocations }: EntityHourFigures): void {
    const row = this.row(entity, hourUtc);
    if (row.state === "collected") return;
    Object.assign(row, { state: "collected", pages, records, parts, invocations });
    this.print(rowLine(row));
  }

  private row(entity: string, hourUtc: string): Row {
    const found = this.rows.get(key(entity, hourUtc));
    if (found) return found;
    const added: Row = { entity, hourUtc, state: "queued", pages: 0, records: 0, parts: 0, invocations: 0 };
    this.rows.set(key(entity, hourUtc), added);
    return added;
  }

  /** A permanent line, above the live area on a terminal. */
  private print(line: string): void {
    this.erase();
    this.out.write(`${this.fit(line)}\n`);
    this.redraw();
  }

  private redraw(): void {
    if (!this.live) return;
    this.erase();
    const rows = [...this.rows.values()];
    const active = rows.filter((row) => row.state === "collecting" || row.state === "retrying");
    if (rows.length === 0) return;
    const done = rows.filter((row) => row.state === "collected").length;
    const lines = [
      ...active.map((row) => this.fit(rowLine(row))),
      this.fit(
        `${done}/${rows.length} entity-hours collected · ${formatCount(sum(rows, "pages"))} pages · ${formatCount(sum(rows, "records"))} records`,
      ),
    ];
    this.out.write(`${lines.join("\n")}\n`);
    this.drawn = lines.length;
  }

  private erase(): void {
    if (!this.live || this.drawn === 0) return;
    // Up one line and clear it, once per line drawn.
    this.out.write("\x1b[1A\x1b[2K".repeat(this.drawn));
    this.drawn = 0;
  }

  private fit(line: string): string {
    const width = this.live ? (this.out.columns ?? 0) : 0;
    return width > 1 && line.length >= width ? `${line.slice(0, width - 2)}…` : line;
  }
}

function key(entity: string, hourUtc: string): string {
  return `${hourUtc} ${entity}`;
}

function sum(rows: Row[], field: "pages" | "records"): number {
  return rows.reduce((total, row) => total + row[field], 0);
}

/** One entity-hour: `sessions  2026-11-24T08:00:00Z  collected  pages 3  records 2,500  parts 1  invocations 1`. */
function rowLine(row: Row): string {
  const counts = `pages ${formatCount(row.pages)}  records ${formatCount(row.records)}  parts ${formatCount(row.parts)}  invocations ${formatCount(row.invocations)}`;
  return `${row.entity.padEnd(10)}  ${row.hourUtc}  ${row.state.padEnd(10)}  ${row.state === "failed" ? (row.error ?? "") : counts}`;
}
