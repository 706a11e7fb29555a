import type { DescribeExecutionCommandOutput } from "@aws-sdk/client-sfn";
import type { CommitOutput, HourReport } from "../functions/lib/config/contracts";
import { describeFailure } from "../local/failure";
import { type CliContext, formatCount } from "./context";

/**
 * Prints how a waited-for execution ended: per hour, whether it was published now or before, with the
 * records collected now and published then (how a backfill shows late changes in Citrix); or the error and
 * cause of a failure. Resolves to the exit code: 0 only when it succeeded.
 */
export function reportStopped(
  ctx: CliContext,
  name: string,
  described: DescribeExecutionCommandOutput,
): number {
  const out = (line: string) => ctx.stdout.write(`${line}\n`);
  out(`${name}: ${described.status}`);
  if (described.status !== "SUCCEEDED") {
    out(`  ${describeFailure(described.error, described.cause).replace(/\s+/g, " ")}`);
    return 1;
  }
  const output = parseOutput(described.output);
  // An execution that found nothing due ends with Plan's output, whose hours are plain strings.
  for (const hour of output?.hours ?? []) if (typeof hour === "object") out(`  ${hourLine(hour)}`);
  return 0;
}

function parseOutput(text: string | undefined): Partial<CommitOutput> | undefined {
  try {
    const parsed: unknown = JSON.parse(text ?? "null");
    return typeof parsed === "object" && parsed !== null ? (parsed as Partial<CommitOutput>) : undefined;
  } catch {
    return undefined;
  }
}

function hourLine(hour: HourReport): string {
  const records = Object.entries(hour.records)
    .map(([entity, { collected, published }]) =>
      collected === undefined || collected === published
        ? `${entity} ${formatCount(published)}`
        : `${entity} ${formatCount(collected)} now / ${formatCount(published)} published`,
    )
    .join(", ");
  // Hours published before name their publisher; hours finished for another execution name whose claim it was.
  const by = hour.outcome === "published" ? "" : ` by ${hour.publisher}`;
  return `${hour.hourUtc} ${hour.outcome}${by}: ${records}`;
}
