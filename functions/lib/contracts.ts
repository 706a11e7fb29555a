import { z } from "zod";
import { InvalidInputError } from "./errors";
import { parseHour } from "./hours";

/**
 * One schema per state boundary. Payloads carry keys and counts, never records: Step Functions caps a
 * state's input/output at 256 KiB.
 */
const hourUtc = z.string().refine((text) => parseHour(text) !== undefined, {
  message: 'must be a UTC hour like "2026-11-24T08:00:00Z"',
});
// Execution names become the run id in staging keys, so only characters safe in any S3 key are accepted
// (a subset of what Step Functions allows; scheduler-started names always qualify).
const runId = z.string().regex(/^[A-Za-z0-9_-]{1,80}$/, "must be a Step Functions execution name");
const entity = z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/, "must be an OData entity set name");
const count = z.number().int().nonnegative();

/** An operator's explicit hour range (execution input `{"backfill": {"from": …, "to": …}}`), inclusive. */
export const backfillRequestSchema = z.object({
  backfill: z.object({ from: hourUtc, to: hourUtc }),
});

export const planInputSchema = z.object({
  executionName: runId,
  /** This execution's ARN ($$.Execution.Id): other executions' ARNs are built from it to ask their status. */
  executionArn: z.string().optional(),
  /** The execution input: scheduled runs pass {}; a backfill passes backfillRequestSchema. */
  request: z.unknown().optional(),
});
export type PlanInput = z.infer<typeof planInputSchema>;

export const watermarkSnapshotSchema = z.object({
  hourUtc: hourUtc.nullable(),
  /** ETag of the state object as Plan read it (null when absent): Commit writes it with If-Match. */
  etag: z.string().nullable(),
});
export type WatermarkSnapshot = z.infer<typeof watermarkSnapshotSchema>;

export const workItemSchema = z.object({ entity, hourUtc });

export const runModeSchema = z.enum(["scheduled", "backfill"]);
export type RunMode = z.infer<typeof runModeSchema>;

export const planOutputSchema = z.object({
  runId,
  mode: runModeSchema,
  hours: z.array(hourUtc),
  entities: z.array(entity).min(1),
  items: z.array(workItemSchema),
  watermark: watermarkSnapshotSchema,
  /** Due hours left to running executions that are collecting them, by execution name. */
  deferred: z.record(z.string(), z.array(hourUtc)),
  maxConcurrency: z.number().int().positive(),
  lagHours: count,
});
export type PlanOutput = z.infer<typeof planOutputSchema>;

/** How many nextLink hops PageWalker remembers across invocations; longer cycles hit the page bound. */
export const MAX_RECENT_LINKED_URLS = 32;

/** Where the next invocation resumes paging: a $skip offset, or the nextLink the API handed out. */
export const pageCursorSchema = z.union([
  z.object({ skip: count }),
  z.object({ nextLink: z.string().url() }),
]);
export type PageCursor = z.infer<typeof pageCursorSchema>;

/** The staging parts one invocation attempt wrote, numbered from `firstPart` (see stagingPartKey). */
export const stagingSegmentSchema = z.object({
  attempt: z.string().regex(/^[0-9a-f]{8}$/),
  firstPart: count,
  parts: count,
  /** Gzip was on when this attempt wrote: its staging and feed keys end in .ndjson.gz. */
  compressed: z.boolean(),
});
export type StagingSegment = z.infer<typeof stagingSegmentSchema>;

export const collectProgressSchema = z.object({
  cursor: pageCursorSchema,
  /** Only invocations that wrote parts appear here, oldest first. */
  segments: z.array(stagingSegmentSchema),
  parts: count,
  records: count,
  pages: count,
  invocations: count,
  /** Longest page seen so far: a later shorter page ends $skip paging (see PageWalker). */
  largestPage: count,
  /** Digest of the records of the last page received: the API serving it again is no progress. */
  lastPageDigest: z.string().max(64).optional(),
  /** Digests of the latest URLs that answered with a nextLink, oldest first: a link back to one is a cycle. */
  recentLinkedUrls: z.array(z.string().max(64)).max(MAX_RECENT_LINKED_URLS).optional(),
  /** The API asked (Retry-After, or a backoff not yet waited) not to be called before this time. */
  notBefore: z.iso.datetime().optional(),
  /** The page window the previous invocation ended with, so the next one neither restarts nor overshoots. */
  window: z
    .object({
      size: z.number().int().min(1),
      limit: z.number().int().min(1).optional(),
      probeRounds: z.number().int().min(1).optional(),
      gapMs: z.number().int().min(1).optional(),
    })
    .optional(),
});
export type CollectProgress = z.infer<typeof collectProgressSchema>;

/** What pageWindowHintKey holds: the window a throttled entity-hour last settled at, and when. */
export const pageWindowHintSchema = z.object({
  limit: z.number().int().min(1),
  probeRounds: z.number().int().min(1),
  gapMs: z.number().int().min(1).optional(),
  at: z.iso.datetime(),
});
export type PageWindowHint = z.infer<typeof pageWindowHintSchema>;

export const collectInputSchema = z.object({
  runId,
  entity,
  hourUtc,
  progress: collectProgressSchema.optional(),
});
export type CollectInput = z.infer<typeof collectInputSchema>;

export const collectOutputSchema = z.object({
  runId,
  entity,
  hourUtc,
  done: z.boolean(),
  progress: collectProgressSchema,
});
export type CollectOutput = z.infer<typeof collectOutputSchema>;

/** What one entity-hour's collection left in staging (an S3 object, see collectedResultKey). */
export const collectedResultSchema = z.object({
  entity,
  hourUtc,
  records: count,
  parts: count,
  segments: z.array(stagingSegmentSchema),
});
export type CollectedResult = z.infer<typeof collectedResultSchema>;

/** Commit reads each entity-hour's CollectedResult from S3: the state carries no per-item data. */
export const commitInputSchema = z.object({
  runId,
  mode: runModeSchema,
  hours: z.array(hourUtc),
  entities: z.array(entity).min(1),
  watermark: watermarkSnapshotSchema,
});
export type CommitInput = z.infer<typeof commitInputSchema>;

export type HourOutcome =
  /** This execution published the hour (or finished publishing it on a redrive). */
  | "published"
  /** Another execution had claimed the hour and not finished; this one finished it from that one's staging. */
  | "completed-for-another"
  /** Another execution had published it completely; nothing was written. */
  | "already-published";

export interface HourReport {
  hourUtc: string;
  outcome: HourOutcome;
  /** The execution that published (or is publishing) the hour. */
  publisher: string;
  /** Records this execution collected per entity, and for hours published elsewhere what was published. */
  records: Record<string, { collected: number; published: number }>;
}

export interface CommitOutput {
  runId: string;
  mode: RunMode;
  status: "committed";
  hours: HourReport[];
  watermark: { before: string | null; after: string | null };
}

/** Parses a state's input; a mismatch is an InvalidInputError naming every bad field. */
export function parseStateInput<T>(schema: z.ZodType<T>, input: unknown, state: string): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map(
    (issue) => `${issue.path.join(".") || "(input)"} ${issue.message}`,
  );
  throw new InvalidInputError(`${state} received invalid input: ${problems.join("; ")}`);
}
