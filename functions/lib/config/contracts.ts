import * as z from "zod/mini";
import { InvalidInputError } from "./errors";
import { parseHour } from "./hours";
import "./zod-english";

/**
 * One schema per state boundary. Payloads carry keys and counts, never records: Step Functions caps a
 * state's input/output at 256 KiB.
 */
const hourUtc = z.string().check(
  z.refine((text) => parseHour(text) !== undefined, {
    message: 'must be a UTC hour like "2026-11-24T08:00:00Z"',
  }),
);
// The execution name becomes the run id in staging, lease and marker keys. The collector takes only the names
// AWS says CloudWatch Logs logging works with (this state machine logs errors there): letters, digits, - and _.
// That is stricter than Step Functions, which also allows "." and more; scheduler-started names always qualify.
const runId = z
  .string()
  .check(
    z.regex(
      /^[A-Za-z0-9_-]{1,80}$/,
      "must be 1–80 letters, digits, - or _ (stricter than Step Functions: the name goes into S3 keys and " +
        "CloudWatch Logs); start it again with such a name",
    ),
  );
const entity = z.string().check(z.regex(/^[A-Za-z][A-Za-z0-9_]*$/, "must be an OData entity set name"));
const count = z.int().check(z.nonnegative());
const positive = z.int().check(z.positive());

/** An operator's explicit hour range (execution input `{"backfill": {"from": …, "to": …}}`), inclusive. */
export const backfillRequestSchema = z.object({
  backfill: z.object({ from: hourUtc, to: hourUtc }),
});

export const planInputSchema = z.object({
  executionName: runId,
  /** This execution's ARN ($$.Execution.Id): other executions' ARNs are built from it to ask their status. */
  executionArn: z.optional(z.string()),
  /** The execution input: scheduled runs pass {}; a backfill passes backfillRequestSchema. */
  request: z.optional(z.unknown()),
});
export type PlanInput = z.infer<typeof planInputSchema>;

export const watermarkSnapshotSchema = z.object({
  hourUtc: z.nullable(hourUtc),
  /** ETag of the state object as Plan read it (null when absent): Commit writes it with If-Match. */
  etag: z.nullable(z.string()),
});
export type WatermarkSnapshot = z.infer<typeof watermarkSnapshotSchema>;

export const workItemSchema = z.object({ entity, hourUtc });
export type WorkItem = z.infer<typeof workItemSchema>;

/**
 * One Map item: a run of entity-hours that one iteration collects in order, the first here and the rest in
 * `rest` (see planRuns). Its collect invocations go from one entity-hour to the next themselves, so the
 * states and invocations a Map iteration costs are paid once per run, not once per entity-hour.
 */
export const runItemSchema = z.object({ entity, hourUtc, rest: z.array(workItemSchema) });
export type RunItem = z.infer<typeof runItemSchema>;

export const runModeSchema = z.enum(["scheduled", "backfill"]);
export type RunMode = z.infer<typeof runModeSchema>;

export const planOutputSchema = z.object({
  runId,
  mode: runModeSchema,
  hours: z.array(hourUtc),
  entities: z.array(entity).check(z.minLength(1)),
  /** The Map's items: every entity-hour to collect, in runs (see planRuns). */
  items: z.array(runItemSchema),
  watermark: watermarkSnapshotSchema,
  /** Due hours left to running executions that are collecting them, by execution name. */
  deferred: z.record(z.string(), z.array(hourUtc)),
  maxConcurrency: z.int().check(z.positive()),
  lagHours: count,
});
export type PlanOutput = z.infer<typeof planOutputSchema>;

/** How many nextLink hops PageWalker remembers across invocations; longer cycles hit the page bound. */
export const MAX_RECENT_LINKED_URLS = 32;

/** Where the next invocation resumes paging: a $skip offset, or the nextLink the API handed out. */
export const pageCursorSchema = z.union([z.object({ skip: count }), z.object({ nextLink: z.url() })]);
export type PageCursor = z.infer<typeof pageCursorSchema>;

/** The staging parts one invocation attempt wrote, numbered from `firstPart` (see stagingPartKey). */
export const stagingSegmentSchema = z.object({
  attempt: z.string().check(z.regex(/^[0-9a-f]{8}$/)),
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
  lastPageDigest: z.optional(z.string().check(z.maxLength(64))),
  /** Digests of the latest URLs that answered with a nextLink, oldest first: a link back to one is a cycle. */
  recentLinkedUrls: z.optional(
    z.array(z.string().check(z.maxLength(64))).check(z.maxLength(MAX_RECENT_LINKED_URLS)),
  ),
  /** The API asked (Retry-After, or a backoff not yet waited) not to be called before this time. */
  notBefore: z.optional(z.iso.datetime()),
  /** The page window the previous invocation ended with, so the next one neither restarts nor overshoots. */
  window: z.optional(
    z.object({
      size: positive,
      limit: z.optional(positive),
      probeRounds: z.optional(positive),
      growing: z.optional(z.literal(true)),
    }),
  ),
});
export type CollectProgress = z.infer<typeof collectProgressSchema>;

/**
 * What pageWindowHintKey holds, for the whole customer (every iteration together): the requests in flight
 * the Citrix API allows at once once it refused some (throttled), else the most one entity-hour had served at
 * once; when it was learned.
 */
export const pageWindowHintSchema = z.object({
  limit: positive,
  throttled: z.boolean(),
  /** Full windows an iteration waits at its share of the limit before probing above it. */
  probeRounds: positive,
  at: z.iso.datetime(),
  /** The $top the API was seen to serve in full: a shorter page is then the end of an entity-hour (PageWalker). */
  servedTop: z.optional(positive),
});
export type PageWindowHint = z.infer<typeof pageWindowHintSchema>;

/**
 * The state file's `records_per_hour`: each entity's records an hour, on average over the hours the last Commit
 * that moved the watermark published. Plan balances the Map's runs by it (see planRuns); it is advice only.
 */
export const recordsPerHourSchema = z.record(entity, count);
export type RecordsPerHour = z.infer<typeof recordsPerHourSchema>;

/** How many Map iterations share the Citrix API's limit at once (see planIterations); 1 when absent. */
const iterationsAtOnce = z.optional(positive);
/** How many iterations the Map has in all: its last ones run beside fewer others (see runningIterations). */
const iterationsInAll = z.optional(positive);
/** The item's index in the Map ($$.Map.Item.Index): who gets the remainder of the limit (see shareOf). */
const itemIndex = z.optional(count);

/** What one entity-hour's collection amounted to: for the console, the metrics and the local runner. */
export const entityHourFiguresSchema = z.object({
  entity,
  hourUtc,
  pages: count,
  records: count,
  parts: count,
  invocations: count,
});
export type EntityHourFigures = z.infer<typeof entityHourFiguresSchema>;

/** What a run (a Map item) has collected so far: the finished entity-hours and their sums. */
export const runTotalsSchema = z.object({ entityHours: count, pages: count, records: count, parts: count });
export type RunTotals = z.infer<typeof runTotalsSchema>;

/**
 * The entity-hour an invocation starts with (`progress` when an earlier invocation began it), and the rest of
 * its run in `rest`. An input without `rest` is an execution planned before runs existed: a run of one.
 */
export const collectInputSchema = z.object({
  runId,
  entity,
  hourUtc,
  rest: z.optional(z.array(workItemSchema)),
  iterationsAtOnce,
  iterationsInAll,
  itemIndex,
  progress: z.optional(collectProgressSchema),
  runTotals: z.optional(runTotalsSchema),
});
export type CollectInput = z.infer<typeof collectInputSchema>;

/**
 * Where a run stands after an invocation: `done` once its last entity-hour is collected (`entity`, `hourUtc`
 * and `progress` are then that one's); else the entity-hour the next invocation starts with, `progress`
 * absent when it starts afresh. `finished` lists the entity-hours this invocation finished.
 */
export const collectOutputSchema = z.object({
  runId,
  entity,
  hourUtc,
  rest: z.optional(z.array(workItemSchema)),
  iterationsAtOnce,
  iterationsInAll,
  itemIndex,
  done: z.boolean(),
  progress: z.optional(collectProgressSchema),
  finished: z.array(entityHourFiguresSchema),
  runTotals: runTotalsSchema,
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
  entities: z.array(entity).check(z.minLength(1)),
  watermark: watermarkSnapshotSchema,
});
export type CommitInput = z.infer<typeof commitInputSchema>;

export type HourOutcome =
  /** This execution published the entity-hour (or finished publishing it on a redrive). */
  | "published"
  /** Another execution had claimed it and not finished; this one finished it from that one's staging. */
  | "completed-for-another"
  /** It had been published completely before; nothing was written. */
  | "already-published";

/** One entity-hour of a Commit: records collected now and published (by whichever execution), and by whom. */
export interface EntityHourReport {
  /**
   * Absent when this execution did not collect the entity-hour: it was published before the execution planned,
   * or the execution is redriven after its staging was cleared.
   */
  collected?: number;
  published: number;
  outcome: HourOutcome;
  /** The execution whose manifest the entity-hour's feed objects came from. */
  publisher: string;
}

export interface HourReport {
  hourUtc: string;
  /**
   * "already-published" when every entity-hour was; "published" when this execution published one from its
   * own manifest; else "completed-for-another". Each entity's own outcome is in `records`.
   */
  outcome: HourOutcome;
  /** This execution when it published; else the publisher of the first entity-hour written or found. */
  publisher: string;
  /** Per entity: records this execution collected, what was published, and the entity-hour's outcome. */
  records: Record<string, EntityHourReport>;
}

export interface CommitOutput {
  runId: string;
  mode: RunMode;
  status: "committed";
  hours: HourReport[];
  watermark: { before: string | null; after: string | null };
}

/** Parses a state's input; a mismatch is an InvalidInputError naming every bad field. */
export function parseStateInput<T>(schema: z.ZodMiniType<T>, input: unknown, state: string): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map(
    (issue) => `${issue.path.join(".") || "(input)"} ${issue.message}`,
  );
  throw new InvalidInputError(`${state} received invalid input: ${problems.join("; ")}`);
}
