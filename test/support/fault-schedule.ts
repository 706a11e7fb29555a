import type { CopyResult, S3Store, WriteResult } from "../../functions/lib/aws/s3-store";
import type { Env } from "../../functions/lib/config/config";
import { StorageUnavailableError } from "../../functions/lib/config/errors";
import { formatHour, HOUR_MS, hourRange, parseHour } from "../../functions/lib/config/hours";
import {
  feedPartKey,
  firstHourKey,
  publishedMarkerOfKey,
  publishedPrefix,
  stagingRunPrefix,
} from "../../functions/lib/feed/keys";
import type { ExecutionStatusLookup } from "../../functions/lib/feed/plan-run";
import type { LocalCollectionResult, RedrivePoint } from "../../local/collection";
import type { JsonValue, LocalHandler } from "../../local/state-machine";
import type { Fault as CitrixFault } from "../../stand-ins/citrix-simulator";
import type { S3Fault } from "../../stand-ins/s3-server";
import { InstrumentedStore, lambdaDied } from "./instrumented-store";
import { BUCKET, expectFeedMatchesSimulator, FEED_PREFIX, STATE_KEY, type Stand, startStand } from "./stand";

// A fault schedule: hourly ticks, each starting one scheduled execution (sometimes two at once, one that
// overruns its hour, none, or a redrive of an earlier failed one beside them), with faults drawn from a seeded
// PRNG while the fault phase lasts, then fault-free ticks until the feed has caught up. The faults include
// what people and clocks do: backfills (the first tick included, and of hours before FIRST_HOUR_UTC), first
// runs without FIRST_HOUR_UTC (two racing across the minute an hour falls due), lease holders whose status is
// unknown or stale, the state file deleted, ENTITIES changed between ticks, staging expired, invocations that
// keep running after Step Functions retried them, writes whose response is lost, Plan's clock skewed by up to
// ±2 minutes. Everything random is drawn up front from the seed, so a schedule prints whole and replays with
// its seed. Interleavings of concurrent executions and Map iterations still depend on timing: a replay meets
// the same faults, not always at the same instant.

const CONTROL_PREFIX = `_citrix_collector/${FEED_PREFIX}`;
/** `sessions` is always configured; the others come and go when a tick changes ENTITIES. */
const ENTITIES = ["sessions", "machines", "users"] as const;
const INITIAL_ENTITIES = ["sessions", "machines"];
/** Hours per execution: small, so an outage of a few ticks takes more than one run to catch up. */
const MAX_HOURS_PER_RUN = 3;
// 10:16 UTC, the minute the schedule fires with LOOKBACK_MINUTES 75 (scheduleMinute): 09:00 fell due at 10:15,
// so a Plan whose clock is more than a minute slow still sees 08:00 as the newest eligible hour, and two first
// runs without FIRST_HOUR_UTC can straddle that minute. With FIRST_HOUR_UTC 08:00 the first run leaves room
// under MAX_HOURS_PER_RUN for the next hour (which an overlapping run then publishes first).
const START_MS = Date.parse("2026-11-24T10:16:00Z");
const FIRST_HOUR_UTC = "2026-11-24T08:00:00Z";
/** The earliest hour a backfill asks for: well before FIRST_HOUR_UTC, and before a first run without it. */
const EARLIEST_BACKFILL_MS = Date.parse("2026-11-24T02:00:00Z");
const LOOKBACK_MINUTES = 75;
/** Lambda clocks disagree with the scheduler's by up to this much either way. */
const MAX_CLOCK_SKEW_MS = 120_000;
/** Generous: an execution here takes well under a second; one that takes this long is stuck. */
const EXECUTION_TIMEOUT_MS = 60_000;
/**
 * Whether this process ran an execution already, which checked the definition file: AWS checks it once, when it
 * is deployed, and checking it again per execution would take a tenth of a schedule's time.
 */
let definitionChecked = false;
/** The error a killed local run leaves: no Retry names it, so the execution fails where it was. */
const PROCESS_KILLED = "LocalRunKilled";

/** mulberry32: a small seeded PRNG, enough to draw schedules reproducibly. */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("pick from an empty list");
    return items[Math.floor(this.next() * items.length)] as T;
  }
}

/**
 * How an execution is killed: an invocation (Step Functions sees Lambda.Unknown and retries it) or the whole
 * local run (every later S3 call and invocation of the execution fails; the execution fails in place).
 */
export type KillMode = "invocation" | "process";
export type Kill =
  /** At the `call`-th S3 call the execution makes (of `operation` only, when given). */
  | { at: "s3-call"; call: number; operation?: string; mode: KillMode }
  | {
      at: "lambda";
      fn: "plan" | "collect" | "commit";
      invocation: number;
      when: "before" | "after";
      mode: KillMode;
    };

/**
 * An invocation Step Functions gave up on (its Task timed out: States.Timeout, retried) that keeps running
 * in its Lambda and does all its writes `delayMs` later, beside or after the retry that replaced it.
 */
export interface Abandoned {
  fn: "collect" | "commit";
  invocation: number;
  delayMs: number;
}

/** The `call`-th write of `operation` the execution makes lands in S3, and then its response is lost. */
export interface LostResponse {
  operation: "PutObject" | "CopyObject" | "DeleteObjects";
  call: number;
}

export interface ExecutionSpec {
  /** A backfill is an operator's execution started by hand with `{"backfill": {from, to}}`. */
  kind: "scheduled" | "redrive" | "backfill";
  backfill?: { from: string; to: string };
  /** For a redrive: which of the executions failed so far (modulo their number); none failed, none runs. */
  pick?: number;
  /** Milliseconds after the tick's first execution this one starts (overlaps start at different points). */
  delayMs: number;
  /** It runs past the hour: the next tick starts while it still runs, and waits for it at its end. */
  overrun?: boolean;
  kill?: Kill;
  /** How far Plan's clock is off the scheduler's (the `now` it sees). */
  clockSkewMs?: number;
  /** What DescribeExecution tells its Plan about lease holders: unknown, or "running" even for ended ones. */
  leaseStatus?: "unknown" | "stale";
  abandoned?: Abandoned;
  lostResponse?: LostResponse;
}

/** What happens to the deployment at the start of a tick, before its executions start. */
export type OperatorAction =
  /** Someone deletes the state file. */
  | { kind: "delete-state" }
  /** The lifecycle rule expires the staging of an execution that died in Commit (modulo their number). */
  | { kind: "expire-staging"; pick: number };

export interface TickSpec {
  /** ENTITIES from this tick on (a deploy between ticks), when it changes. */
  entities?: string[];
  operator: OperatorAction[];
  executions: ExecutionSpec[];
  s3Faults: S3Fault[];
  citrixFaults: CitrixFault[];
}

export interface Schedule {
  seed: number;
  /** FIRST_HOUR_UTC, or none: the first run then starts at the newest eligible hour on its clock. */
  firstHourUtc: string | undefined;
  /** Ticks with faults; fault-free ticks follow until the watermark reaches the newest eligible hour. */
  faultTicks: TickSpec[];
  /** Records per entity-hour: drawn per schedule, 0 included, several parts per hour. */
  volumes: Record<string, number>;
}

export interface ScheduleReport {
  seed: number;
  schedule: Schedule;
  /** What happened, one line per execution and check, for a failing seed's report. */
  trace: string[];
  violations: string[];
  /** Fault-free ticks the feed needed to catch up, and the bound it had. */
  recovery: { ticks: number; bound: number };
  executions: number;
  /** Executions a kill reached (an invocation or the whole run). */
  kills: number;
  failedExecutions: number;
  /** Invocations abandoned by Step Functions that went on to run; responses lost after their write landed. */
  abandoned: number;
  lostResponses: number;
  /** Fixes an error named (StagingLostError's `aws s3 rm …`) that the schedule performed to catch up. */
  operatorFixes: number;
  /** Executions whose staging the schedule expired (only one that died in Commit can be picked). */
  stagingExpired: number;
}

const S3_ERRORS: readonly [number, string][] = [
  [500, "InternalError"],
  [503, "SlowDown"],
  [503, "ServiceUnavailable"],
  [409, "OperationAborted"],
  [409, "ConditionalRequestConflict"],
  [400, "RequestTimeout"],
];
const S3_OPERATIONS: readonly (S3Fault["operation"] | undefined)[] = [
  undefined,
  "PutObject",
  "CopyObject",
  "GetObject",
  "HeadObject",
  "ListObjectsV2",
  "DeleteObjects",
];
const S3_KEY_PREFIXES: readonly (string | undefined)[] = [
  undefined,
  `${CONTROL_PREFIX}/staging/`,
  `${FEED_PREFIX}/`,
  `${CONTROL_PREFIX}/manifests/`,
  `${CONTROL_PREFIX}/published/`,
  `${CONTROL_PREFIX}/leases/`,
  STATE_KEY,
];

export function generateSchedule(seed: number): Schedule {
  const rng = new Prng(seed);
  const volumes: Record<string, number> = {};
  for (const hourUtc of hourRange(EARLIEST_BACKFILL_MS, START_MS + 24 * HOUR_MS))
    for (const entity of ENTITIES)
      volumes[`${entity} ${hourUtc}`] = rng.chance(0.15) ? 0 : rng.int(1, entity === "sessions" ? 14 : 6);
  const firstHourUtc = rng.chance(0.6) ? FIRST_HOUR_UTC : undefined;
  const faultTicks: TickSpec[] = [];
  let entities = INITIAL_ENTITIES;
  for (let tick = 0, ticks = rng.int(2, 6); tick < ticks; tick++) {
    const nowMs = START_MS + tick * HOUR_MS;
    const executions: ExecutionSpec[] = [];
    // A deploy that changes ENTITIES between ticks; not while an execution overruns into this tick, whose
    // later invocations a deploy would change under it (a local run keeps the settings it started with).
    const overran = faultTicks[tick - 1]?.executions.some((execution) => execution.overrun) ?? false;
    let changed: string[] | undefined;
    if (tick > 0 && !overran && rng.chance(0.2)) {
      const toggled = rng.pick(ENTITIES.slice(1));
      changed = ENTITIES.filter((entity) =>
        entity === toggled ? !entities.includes(entity) : entities.includes(entity),
      );
      entities = changed;
    }
    const operator: OperatorAction[] = [];
    if (tick > 0 && rng.chance(0.12)) operator.push({ kind: "delete-state" });
    if (tick > 0 && rng.chance(0.15)) operator.push({ kind: "expire-staging", pick: rng.int(0, 99) });
    // Now and then the schedule does not fire (or the account is down): a backlog to catch up.
    if (!rng.chance(0.1)) {
      executions.push({
        ...drawExecutionFaults(rng),
        kind: "scheduled",
        delayMs: 0,
        overrun: rng.chance(0.15),
      });
      // Two at once; at the very first tick without FIRST_HOUR_UTC, often: racing first runs.
      if (rng.chance(tick === 0 && firstHourUtc === undefined ? 0.6 : 0.25))
        executions.push({ ...drawExecutionFaults(rng), kind: "scheduled", delayMs: rng.int(0, 40) });
    }
    if (tick > 0 && rng.chance(0.3))
      executions.push({
        ...drawExecutionFaults(rng),
        kind: "redrive",
        pick: rng.int(0, 99),
        delayMs: rng.int(0, 40),
      });
    if (rng.chance(0.3))
      executions.push({
        ...drawExecutionFaults(rng),
        kind: "backfill",
        backfill: drawBackfill(rng, nowMs),
        delayMs: rng.int(0, 40),
      });
    const s3Faults: S3Fault[] = [];
    for (let n = rng.int(0, 2); n > 0; n--) {
      const [status, code] = rng.pick(S3_ERRORS);
      // S3 answers RequestTimeout only to a request whose body it waited for in vain; a HEAD error has no body
      // to carry its code, so the SDK would read it as an unknown 400 (docs/testing.md, Fault schedules).
      const operation =
        code === "RequestTimeout"
          ? rng.pick(["PutObject", "DeleteObjects"] as const)
          : rng.pick(S3_OPERATIONS);
      const keyPrefix = rng.pick(S3_KEY_PREFIXES);
      s3Faults.push({
        status,
        code,
        // Now and then an outage that outlasts every Retry of the state it meets.
        times: rng.chance(0.1) ? 400 : rng.int(1, 6),
        after: rng.int(0, 40),
        ...(operation ? { operation } : {}),
        ...(keyPrefix ? { keyPrefix } : {}),
      });
    }
    const citrixFaults: CitrixFault[] = [];
    for (let n = rng.int(0, 2); n > 0; n--) citrixFaults.push(drawCitrixFault(rng));
    faultTicks.push({
      ...(changed ? { entities: changed } : {}),
      operator,
      executions,
      s3Faults,
      citrixFaults,
    });
  }
  return { seed, firstHourUtc, faultTicks, volumes };
}

/**
 * An operator's backfill of 1 to MAX_HOURS_PER_RUN settled hours ending anywhere from EARLIEST_BACKFILL_MS to
 * the newest hour settled even on a clock that is slow by the most skew: before FIRST_HOUR_UTC, published
 * already, not yet published, or ahead of the watermark.
 */
function drawBackfill(rng: Prng, nowMs: number): { from: string; to: string } {
  const newest = parseHour(eligibleHour(nowMs - MAX_CLOCK_SKEW_MS)) as number;
  const to = rng.int(0, (newest - EARLIEST_BACKFILL_MS) / HOUR_MS) * HOUR_MS + EARLIEST_BACKFILL_MS;
  const hours = rng.int(1, MAX_HOURS_PER_RUN);
  return { from: formatHour(Math.max(EARLIEST_BACKFILL_MS, to - (hours - 1) * HOUR_MS)), to: formatHour(to) };
}

/** The faults one execution meets on its own: a kill, a skewed clock, odd lease answers, zombies, lost responses. */
function drawExecutionFaults(rng: Prng): Omit<ExecutionSpec, "kind" | "delayMs"> {
  const kill = drawKill(rng);
  const faults: Omit<ExecutionSpec, "kind" | "delayMs"> = kill ? { kill } : {};
  if (rng.chance(0.4)) faults.clockSkewMs = rng.int(-MAX_CLOCK_SKEW_MS, MAX_CLOCK_SKEW_MS);
  if (rng.chance(0.15)) faults.leaseStatus = rng.pick(["unknown", "stale"] as const);
  if (rng.chance(0.15)) {
    const fn = rng.pick(["collect", "commit"] as const);
    faults.abandoned = { fn, invocation: fn === "collect" ? rng.int(1, 6) : 1, delayMs: rng.int(0, 60) };
  }
  if (rng.chance(0.2))
    faults.lostResponse = {
      operation: rng.pick(["PutObject", "PutObject", "CopyObject", "DeleteObjects"] as const),
      call: rng.int(1, 8),
    };
  return faults;
}

/** Writes are where a kill hurts most (a Commit half-way through its copies above all), so most land there. */
const KILL_OPERATIONS = [
  ...Array<string>(4).fill("CopyObject"),
  ...Array<string>(3).fill("PutObject"),
  "GetObject",
  "HeadObject",
  "ListObjectsV2",
  "DeleteObjects",
];

function drawKill(rng: Prng): Kill | undefined {
  if (!rng.chance(0.5)) return undefined;
  const mode: KillMode = rng.chance(0.5) ? "invocation" : "process";
  const roll = rng.next();
  if (roll < 0.2) return { at: "s3-call", call: rng.int(1, 45), mode };
  if (roll < 0.7) return { at: "s3-call", operation: rng.pick(KILL_OPERATIONS), call: rng.int(1, 8), mode };
  const fn = rng.pick(["plan", "collect", "commit"] as const);
  return {
    at: "lambda",
    fn,
    invocation: fn === "collect" ? rng.int(1, 8) : 1,
    when: rng.pick(["before", "after"] as const),
    mode,
  };
}

function drawCitrixFault(rng: Prng): CitrixFault {
  const after = rng.int(0, 12);
  const entity = rng.chance(0.5) ? { entity: rng.pick(ENTITIES) } : {};
  const roll = rng.next();
  if (roll < 0.25)
    return {
      kind: "status",
      status: 429,
      retryAfter: String(rng.int(1, 120)),
      times: rng.int(1, 4),
      after,
      ...entity,
    };
  if (roll < 0.45) {
    // Now and then an outage that outlasts the client's attempts and the Task's Retry.
    const times = rng.chance(0.2) ? 400 : rng.int(1, 4);
    return { kind: "status", status: rng.pick([500, 502, 503, 504]), times, after, ...entity };
  }
  if (roll < 0.6) return { kind: "dropConnection", times: rng.int(1, 3), after, ...entity };
  if (roll < 0.7) return { kind: "slow", delayMs: rng.int(5, 40), times: rng.int(1, 4), after, ...entity };
  if (roll < 0.78) return { kind: "expireTokens", after };
  if (roll < 0.86) return { kind: "tokenStatus", status: 503, times: rng.int(1, 2), after };
  if (roll < 0.93) return { kind: "malformedJson", times: 1, after, ...entity };
  return { kind: "wrongEnvelope", times: 1, after, ...entity };
}

/**
 * The named errors a tick's faults can legitimately end an execution with: the fault needs an operator
 * (a page that is not OData), or it outlasted every Retry. Any other failure is a finding.
 */
function explainedFailures(ticks: TickSpec[]): Set<string> {
  const names = new Set<string>();
  if (ticks.some((tick) => tick.s3Faults.length > 0)) names.add("StorageUnavailableError");
  for (const fault of ticks.flatMap((tick) => tick.citrixFaults)) {
    if (fault.kind === "malformedJson" || fault.kind === "wrongEnvelope") names.add("CitrixResponseError");
    // Tokens revoked twice in a row read as a 401 to a fresh token: the credentials' access is in doubt.
    if (fault.kind === "expireTokens") names.add("CitrixAuthError");
    if (fault.kind === "status" || fault.kind === "dropConnection" || fault.kind === "tokenStatus")
      names.add("CitrixUnavailableError");
  }
  return names;
}

export function describeSchedule(schedule: Schedule): string[] {
  const lines = [
    `seed ${schedule.seed}: FIRST_HOUR_UTC ${schedule.firstHourUtc ?? "unset"}, ENTITIES ${INITIAL_ENTITIES.join(",")}, ` +
      `${schedule.faultTicks.length} fault ticks, then fault-free ticks`,
  ];
  schedule.faultTicks.forEach((tick, index) => {
    lines.push(`tick ${index}:`);
    if (tick.entities) lines.push(`  ENTITIES ${tick.entities.join(",")}`);
    for (const action of tick.operator) lines.push(`  operator ${JSON.stringify(action)}`);
    for (const execution of tick.executions) lines.push(`  execution ${JSON.stringify(execution)}`);
    for (const fault of tick.s3Faults) lines.push(`  s3 fault ${JSON.stringify(fault)}`);
    for (const fault of tick.citrixFaults) lines.push(`  citrix fault ${JSON.stringify(fault)}`);
  });
  return lines;
}

/** A watermark or published-marker write that landed, or the state file's deletion, in the order they happened. */
type ControlWrite =
  /** `tick`: whose ENTITIES (and the hours each is due from) the watermark's writer had configured. */
  | { kind: "watermark"; hourUtc: string; tick: number }
  /** The entity of an entity-hour marker (undefined for a legacy whole-hour one). */
  | { kind: "published"; hourUtc: string; entity: string | undefined }
  | { kind: "deleted" };

/** What the schedule hooks into an execution's S3 calls: kills before a call, lost responses after a write. */
interface StoreHooks {
  beforeCall(store: KillableStore, operation: string, key: string): void;
  afterWrite(store: KillableStore, operation: string, key: string): void;
  controlWrites: ControlWrite[];
  /** The tick whose settings the execution runs with. */
  tick: number;
}

/**
 * The real S3Store (through InstrumentedStore, which records feed writes) with a hook before every S3 call,
 * where a schedule kills the invocation or the whole local run, and one after every write that landed, where
 * it loses the response. It also logs every watermark and published marker write that landed, so a watermark
 * that moved back, or moved over an entity-hour before it was published, is seen even when later writes made
 * it right again.
 */
class KillableStore extends InstrumentedStore {
  calls = 0;
  readonly callsOf: Record<string, number> = {};
  readonly writesOf: Record<string, number> = {};
  dead = false;

  constructor(
    base: S3Store,
    private readonly hooks: StoreHooks,
    /** The execution's store, whose counts and death every function's store of that execution shares. */
    private readonly execution?: KillableStore,
  ) {
    super(base, FEED_PREFIX, async () => undefined, execution);
  }

  /** This execution's store over a function's own client, signed with its role. */
  override over(base: S3Store): KillableStore {
    return new KillableStore(base, this.hooks, this.execution ?? this);
  }

  private call(operation: string, key: string): void {
    const execution = this.execution ?? this;
    execution.calls++;
    execution.callsOf[operation] = (execution.callsOf[operation] ?? 0) + 1;
    this.hooks.beforeCall(execution, operation, key);
  }

  private landed(operation: string, key: string): void {
    const execution = this.execution ?? this;
    execution.writesOf[operation] = (execution.writesOf[operation] ?? 0) + 1;
    this.hooks.afterWrite(execution, operation, key);
  }

  override async getText(key: string) {
    this.call("GetObject", key);
    return super.getText(key);
  }

  override async exists(key: string) {
    this.call("HeadObject", key);
    return super.exists(key);
  }

  override async put(
    key: string,
    body: string | Uint8Array,
    contentType: string,
    condition?: Parameters<InstrumentedStore["put"]>[3],
  ): Promise<WriteResult> {
    this.call("PutObject", key);
    const result = await super.put(key, body, contentType, condition);
    if (!result.written) return result;
    const marker = publishedMarkerOfKey(CONTROL_PREFIX, key);
    if (marker) this.hooks.controlWrites.push({ kind: "published", ...marker });
    if (key === STATE_KEY) {
      const { last_hour_utc } = JSON.parse(String(body)) as { last_hour_utc: string };
      this.hooks.controlWrites.push({ kind: "watermark", hourUtc: last_hour_utc, tick: this.hooks.tick });
    }
    this.landed("PutObject", key);
    return result;
  }

  override async copyIfAbsent(sourceKey: string, destinationKey: string): Promise<CopyResult> {
    this.call("CopyObject", destinationKey);
    const result = await super.copyIfAbsent(sourceKey, destinationKey);
    if (result === "copied") this.landed("CopyObject", destinationKey);
    return result;
  }

  override async listKeys(prefix: string, startAfter?: string) {
    this.call("ListObjectsV2", prefix);
    return super.listKeys(prefix, startAfter);
  }

  override async deleteKeys(keys: readonly string[]) {
    this.call("DeleteObjects", keys[0] ?? "");
    await super.deleteKeys(keys);
    if (keys.length > 0) this.landed("DeleteObjects", keys[0] ?? "");
  }
}

function processKilled(): Error {
  const error = new Error("the local run was killed by the test");
  error.name = PROCESS_KILLED;
  return error;
}

function eligibleHour(nowMs: number): string {
  return formatHour(nowMs - LOOKBACK_MINUTES * 60_000);
}

function hoursBetween(after: string, through: string): number {
  return ((parseHour(through) ?? 0) - (parseHour(after) ?? 0)) / HOUR_MS;
}

function hourAfter(hourUtc: string): string {
  return formatHour((parseHour(hourUtc) as number) + HOUR_MS);
}

/** "entity hourUtc" of a feed key, published marker or requirement. */
function entityHour(entity: string, hourUtc: string): string {
  return `${entity} ${hourUtc}`;
}

function entityHourOfFeedKey(key: string): string | undefined {
  const match = /^[^/]+\/([^/]+)\/year=(\d{4})\/month=(\d{2})\/day=(\d{2})\/hour=(\d{2})\//.exec(key);
  return match
    ? entityHour(match[1] as string, `${match[2]}-${match[3]}-${match[4]}T${match[5]}:00:00Z`)
    : undefined;
}

/** The entity-hours whose markers are among `writes`. */
function markersIn(writes: readonly ControlWrite[]): Set<string> {
  return new Set(
    writes.flatMap((write) =>
      write.kind === "published" && write.entity !== undefined
        ? [entityHour(write.entity, write.hourUtc)]
        : [],
    ),
  );
}

/**
 * The hours each configured entity must be published from: null for the feed's first hour (FIRST_HOUR_UTC or
 * first-hour.json), an hour for an entity added later (the hour after the watermark when it was added).
 */
type Requirements = ReadonlyMap<string, string | null>;

/** The entity-hours from each entity's first due hour up to `watermark` that `published` lacks. */
function unpublishedUpTo(
  watermark: string,
  requirements: Requirements,
  feedStart: string | undefined,
  published: ReadonlySet<string>,
): string[] {
  const missing: string[] = [];
  for (const [entity, start] of requirements) {
    const from = start ?? feedStart;
    if (from === undefined) continue;
    for (const hourUtc of hourRange(parseHour(from) as number, parseHour(watermark) as number))
      if (!published.has(entityHour(entity, hourUtc))) missing.push(entityHour(entity, hourUtc));
  }
  return missing;
}

/** The objects a StagingLostError tells the operator to delete (`aws s3 rm s3://bucket/key`). */
export function objectsToDelete(message: string): string[] {
  const prefix = `aws s3 rm s3://${BUCKET}/`;
  return message
    .split(prefix)
    .slice(1)
    .map((rest) => (rest.split(/\s/)[0] as string).replace(/\.$/, ""));
}

interface Failed {
  name: string;
  redrive: RedrivePoint;
  kind: ExecutionSpec["kind"];
}

/** An execution's store and what the checks need to know of it. */
interface ExecutionRecord {
  name: string;
  kind: ExecutionSpec["kind"];
  store: KillableStore;
  /** For a backfill: the entity-hours published before it started, whose feed objects it must not write. */
  publishedBefore: Set<string> | undefined;
}

/** Runs one schedule against fresh stand-ins and checks safety and liveness; never throws for a finding. */
export async function runSchedule(schedule: Schedule): Promise<ScheduleReport> {
  const trace: string[] = [];
  const violations: string[] = [];
  const stand = await startStand({
    now: START_MS,
    simulator: {
      volume: (entity, hourUtc) => schedule.volumes[entityHour(entity, hourUtc)] ?? 0,
      pageLatencyMs: 1,
      seed: `schedule-${schedule.seed}`,
    },
    env: {
      TOP_N: "4",
      PART_MAX_RECORDS: "3",
      MAX_HOURS_PER_RUN: String(MAX_HOURS_PER_RUN),
      LOOKBACK_MINUTES: String(LOOKBACK_MINUTES),
      MAP_MAX_CONCURRENCY: "3",
    },
  });
  /** The deployment's settings with these ENTITIES: every execution, redrives included, runs what is deployed. */
  const envOf = (entities: readonly string[]): Env => ({
    ...stand.env,
    ENTITIES: entities.join(","),
    ...(schedule.firstHourUtc ? { FIRST_HOUR_UTC: schedule.firstHourUtc } : {}),
  });
  let entities: readonly string[] = INITIAL_ENTITIES;
  const starts = new Map<string, string | null>(INITIAL_ENTITIES.map((entity) => [entity, null]));
  /** Per tick: the entities configured then and the hour each is due from. */
  const requirementsOf: Requirements[] = [];
  // Every store an execution used: feed writes are counted from all of them, late ones of zombies included.
  const records: ExecutionRecord[] = [];
  const controlWrites: ControlWrite[] = [];
  const failed: Failed[] = [];
  const running = new Set<string>();
  /** Executions whose staging the lifecycle rule expired. */
  const expired = new Set<string>();
  /** Feed objects the schedule deleted as an error told it to: each may be written once more. */
  const deletedFeedObjects = new Map<string, number>();
  /** The plan of every execution, and the backfills that succeeded (their hours must end up published). */
  const plans = new Map<string, LocalCollectionResult["plan"]>();
  const backfillsDone = new Set<string>();
  /** Invocations Step Functions abandoned that still run; each tick waits for them before its checks. */
  let zombies: Promise<void>[] = [];
  let executions = 0;
  let failedExecutions = 0;
  let kills = 0;
  let abandoned = 0;
  let lostResponses = 0;
  let operatorFixes = 0;
  /** The highest watermark read since the state file was last deleted; the newest read at all. */
  let highestWatermark: string | null = null;
  let lastWatermark: string | null = null;
  let stuck = false;

  /** The feed's first hour: the one first-hour.json records, else FIRST_HOUR_UTC (until a first run records it). */
  async function feedStart(): Promise<string | undefined> {
    const recorded = await stand.store.getText(firstHourKey(CONTROL_PREFIX));
    if (recorded) return (JSON.parse(recorded.body) as { hourUtc: string }).hourUtc;
    return schedule.firstHourUtc;
  }

  interface Run {
    nowMs: number;
    tick: number;
    spec?: ExecutionSpec;
    redrive?: RedrivePoint;
    explained: Set<string>;
    /** What its first Commit invocation waits for (an execution overrunning its hour). */
    commitGate?: Promise<void>;
  }

  async function execute(name: string, run: Run): Promise<LocalCollectionResult | undefined> {
    const { spec, redrive } = run;
    const kill = spec?.kill;
    let killedAt: string | undefined;
    let lostAt: string | undefined;
    const killNow = (store: KillableStore, where: string): Error => {
      killedAt = where;
      kills++;
      if (kill?.mode === "process") {
        store.dead = true;
        return processKilled();
      }
      return lambdaDied("Lambda.Unknown");
    };
    const store = new KillableStore(stand.store, {
      beforeCall: (self, operation, key) => {
        if (self.dead) throw processKilled();
        if (kill?.at !== "s3-call" || (kill.operation !== undefined && kill.operation !== operation)) return;
        if ((kill.operation ? self.callsOf[operation] : self.calls) === kill.call)
          throw killNow(self, `S3 call ${self.calls} (${operation} ${key})`);
      },
      afterWrite: (self, operation, key) => {
        const lost = spec?.lostResponse;
        if (lost?.operation !== operation || self.writesOf[operation] !== lost.call) return;
        lostResponses++;
        lostAt = `${operation} ${key}`;
        throw new StorageUnavailableError(`injected: ${operation} ${key} landed, and its response was lost`);
      },
      controlWrites,
      tick: run.tick,
    });
    const kind = spec?.kind ?? "redrive";
    records.push({
      name,
      kind,
      store,
      publishedBefore: kind === "backfill" ? markersIn(controlWrites) : undefined,
    });
    const invocations: Record<string, number> = {};
    const wrap = (key: string, handler: LocalHandler): LocalHandler => {
      return async (event, context) => {
        if (key === "commit" && run.commitGate) await run.commitGate;
        if (store.dead) throw processKilled();
        const invocation = (invocations[key] ?? 0) + 1;
        invocations[key] = invocation;
        const zombie = spec?.abandoned;
        if (zombie?.fn === key && zombie.invocation === invocation) {
          abandoned++;
          zombies.push(
            sleep(zombie.delayMs)
              .then(() => handler(event, context))
              .then(
                () => trace.push(`${name}: its abandoned ${key} invocation ${invocation} ran to the end`),
                (error: unknown) =>
                  trace.push(`${name}: its abandoned ${key} invocation ${invocation} failed: ${error}`),
              )
              .then(() => undefined),
          );
          throw lambdaDied("States.Timeout");
        }
        const here = kill?.at === "lambda" && kill.fn === key && kill.invocation === invocation;
        if (here && kill.when === "before")
          throw killNow(store, `${key} invocation ${invocation}, before it ran`);
        const result = await handler(event, context);
        if (here && kill.when === "after")
          throw killNow(store, `${key} invocation ${invocation}, after it ran (its result lost)`);
        return result;
      };
    };
    const leaseStatus: ExecutionStatusLookup | undefined =
      spec?.leaseStatus === "unknown"
        ? async () => "unknown"
        : spec?.leaseStatus === "stale"
          ? async () => "running"
          : undefined;
    if (spec?.delayMs) await sleep(spec.delayMs);
    executions++;
    running.add(name);
    const startedAt = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), EXECUTION_TIMEOUT_MS);
    });
    const input: JsonValue | undefined = spec?.backfill ? { backfill: spec.backfill } : undefined;
    const started = stand
      .run(name, {
        env: envOf(entities),
        now: () => run.nowMs + (spec?.clockSkewMs ?? 0),
        redrive,
        wrap,
        adaptRuntime: (runtime) => ({ ...runtime, store: store.over(runtime.store) }),
        ...(input ? { input } : {}),
        ...(leaseStatus ? { executionStatus: leaseStatus } : {}),
        definitionChecked,
      })
      .catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
    const result = await Promise.race([started, timedOut]);
    clearTimeout(timer);
    running.delete(name);
    definitionChecked = true;
    if (result === "timeout") {
      stuck = true;
      violations.push(`${name} did not end within ${EXECUTION_TIMEOUT_MS} ms`);
      return undefined;
    }
    if (result instanceof Error) {
      // The local run sets the bucket's default encryption first, as the deployment does: an S3 fault armed
      // for every request can meet that request, which no execution makes in AWS. The execution never started.
      if (!result.message.startsWith("injected ")) violations.push(`${name} could not start: ${result}`);
      trace.push(`${name}: not started, ${result.message}`);
      return undefined;
    }
    if (result.plan) plans.set(name, result.plan);
    const plan = plans.get(name);
    const summary = [
      `${name}${redrive ? ` (redrive at ${redrive.state})` : ""}: ${result.status} in ${Date.now() - startedAt} ms`,
      result.error ? `${result.error.name}: ${result.error.cause.slice(0, 300)}` : "",
      result.plan
        ? `planned ${result.plan.mode} ${result.plan.hours.join(",") || "nothing"} of ${result.plan.entities.join(",")} from ${result.plan.watermark.hourUtc}`
        : "",
      Object.keys(result.plan?.deferred ?? {}).length > 0
        ? `deferred ${JSON.stringify(result.plan?.deferred)}`
        : "",
      result.commit
        ? `commit ${result.commit.hours.map((hour) => `${hour.hourUtc.slice(11, 13)}h ${hour.outcome}`).join(", ")}; watermark ${result.commit.watermark.before} to ${result.commit.watermark.after}`
        : "",
      kill ? `kill ${JSON.stringify(kill)} ${killedAt ? `at ${killedAt}` : "(not reached)"}` : "",
      lostAt ? `response lost after ${lostAt}` : "",
      store.feedWrites.length > 0 ? `${store.feedWrites.length} feed writes` : "",
    ];
    trace.push(summary.filter(Boolean).join("; "));
    const index = failed.findIndex((entry) => entry.name === name);
    if (index >= 0) failed.splice(index, 1);
    if (result.status === "SUCCEEDED" && plan?.mode === "backfill") backfillsDone.add(name);
    if (result.status === "FAILED") {
      failedExecutions++;
      const errorName = result.error?.name ?? "unknown";
      if (result.redrive) failed.push({ name, redrive: result.redrive, kind });
      // A killed local run fails where it was; a killed invocation is retried and must not fail it.
      const killedRun = errorName === PROCESS_KILLED && kill?.mode === "process" && killedAt !== undefined;
      if (!killedRun && !run.explained.has(errorName))
        violations.push(
          `${name} failed with ${errorName}, which no fault of its tick explains: ${result.error?.cause}`,
        );
    }
    return result;
  }

  /** Failures that staging expired so far explains: a Commit that meets its claim, a redrive of its execution. */
  function expiryExplains(name: string | undefined): string[] {
    if (expired.size === 0) return [];
    return name !== undefined && expired.has(name)
      ? ["StagingLostError", "InvalidInputError"]
      : ["StagingLostError"];
  }

  /**
   * Reads the watermark between ticks (no fault armed then): it never moves back (but from a deleted state
   * file) nor passes an entity-hour its tick's ENTITIES need that has no marker.
   */
  async function checkWatermark(when: string, tick: number): Promise<string | null> {
    const watermark = await stand.watermark();
    if (highestWatermark !== null && (watermark === null || watermark < highestWatermark))
      violations.push(`${when}: the watermark moved back from ${highestWatermark} to ${watermark}`);
    if (watermark !== null && (highestWatermark === null || watermark > highestWatermark))
      highestWatermark = watermark;
    if (watermark !== null) {
      lastWatermark = watermark;
      const unpublished = unpublishedUpTo(
        watermark,
        requirementsOf[tick] ?? starts,
        await feedStart(),
        await publishedEntityHours(stand),
      );
      if (unpublished.length > 0)
        violations.push(`${when}: the watermark ${watermark} passed unpublished ${unpublished.join(", ")}`);
    }
    return watermark;
  }

  async function operate(action: OperatorAction): Promise<void> {
    if (action.kind === "delete-state") {
      await stand.store.deleteKeys([STATE_KEY]);
      controlWrites.push({ kind: "deleted" });
      highestWatermark = null;
      trace.push("operator: deleted the state file");
      return;
    }
    // Staging outlives the 14-day redrive window, so only executions that died in Commit and were left so.
    const candidates = failed.filter(
      (entry) =>
        entry.redrive.state === "PublishAndAdvance" && entry.kind === "scheduled" && !running.has(entry.name),
    );
    const chosen = candidates[action.pick % Math.max(1, candidates.length)];
    if (!chosen) return;
    const staging = await stand.keys(stagingRunPrefix(CONTROL_PREFIX, chosen.name));
    await stand.store.deleteKeys(staging);
    expired.add(chosen.name);
    trace.push(`staging of ${chosen.name} expired: ${staging.length} objects`);
  }

  /** Performs the fix a StagingLostError names: deletes the objects it lists. */
  async function performNamedFix(message: string): Promise<void> {
    const keys = objectsToDelete(message);
    await stand.store.deleteKeys(keys);
    for (const key of keys.filter((key) => key.startsWith(`${FEED_PREFIX}/`)))
      deletedFeedObjects.set(key, (deletedFeedObjects.get(key) ?? 0) + 1);
    operatorFixes++;
    trace.push(`operator: deleted the ${keys.length} objects StagingLostError named`);
  }

  /**
   * Executions that run past their hour: each starts its Commit only once the next tick's own executions
   * have ended, so a later execution publishes later hours first, as when a throttled run overruns.
   */
  let overrunning: Promise<unknown>[] = [];
  let releaseOverrunning: () => void = () => undefined;

  async function settleZombies(): Promise<void> {
    while (zombies.length > 0) {
      const waiting = zombies;
      zombies = [];
      await Promise.all(waiting);
    }
  }

  /**
   * `faultsMet`: the ticks whose faults an execution of this tick can meet (the next one too if it overruns).
   * Returns what its own executions ended with.
   */
  async function runTick(
    index: number,
    tick: TickSpec,
    nowMs: number,
    faultsMet: TickSpec[],
  ): Promise<(LocalCollectionResult | undefined)[]> {
    if (tick.entities) {
      for (const entity of tick.entities)
        if (!starts.has(entity)) starts.set(entity, lastWatermark === null ? null : hourAfter(lastWatermark));
      for (const entity of starts.keys()) if (!tick.entities.includes(entity)) starts.delete(entity);
      entities = tick.entities;
      trace.push(`ENTITIES ${entities.join(",")}: ${JSON.stringify([...starts])}`);
    }
    requirementsOf[index] = new Map(starts);
    for (const action of tick.operator) await operate(action);
    for (const fault of tick.s3Faults) stand.s3.inject(fault);
    for (const fault of tick.citrixFaults) stand.simulator.inject(fault);
    const previous = { runs: overrunning, release: releaseOverrunning };
    overrunning = [];
    const commitGate = new Promise<void>((resolve) => {
      releaseOverrunning = resolve;
    });
    const own: Promise<LocalCollectionResult | undefined>[] = [];
    tick.executions.forEach((spec, n) => {
      const name = `t${index}-${"abcd"[n]}`;
      const explained = explainedFailures(spec.overrun ? faultsMet : faultsMet.slice(0, 1));
      const run: Run = { nowMs, tick: index, spec, explained, ...(spec.overrun ? { commitGate } : {}) };
      let started: Promise<LocalCollectionResult | undefined>;
      if (spec.kind === "redrive") {
        const candidates = failed.filter((entry) => !running.has(entry.name));
        const chosen = candidates[(spec.pick ?? 0) % Math.max(1, candidates.length)];
        for (const name of expiryExplains(chosen?.name)) explained.add(name);
        started = chosen
          ? execute(chosen.name, { ...run, redrive: chosen.redrive })
          : Promise.resolve(undefined);
      } else {
        for (const name of expiryExplains(undefined)) explained.add(name);
        started = execute(name, run);
      }
      (spec.overrun ? overrunning : own).push(started);
    });
    const results = await Promise.all(own);
    previous.release();
    await Promise.all(previous.runs);
    await settleZombies();
    // Faults last one tick: the checks between ticks read S3 without meeting them.
    stand.s3.clearFaults();
    stand.simulator.clearFaults();
    await checkWatermark(`after tick ${index}`, index);
    return results;
  }

  const recovery = { ticks: 0, bound: 0 };
  try {
    trace.push(...describeSchedule(schedule));
    let tick = 0;
    for (const spec of schedule.faultTicks) {
      const next = schedule.faultTicks[tick + 1];
      await runTick(tick, spec, START_MS + tick * HOUR_MS, next ? [spec, next] : [spec]);
      tick++;
      if (stuck) return report();
    }
    releaseOverrunning();
    await Promise.all(overrunning);
    overrunning = [];
    await settleZombies();
    if (stuck) return report();
    // Liveness: hours due now, MAX_HOURS_PER_RUN per run while one more becomes due each tick. With no state
    // file, from the feed's first hour (a recovered watermark is no lower); with no first run yet, one hour.
    const watermark = await stand.watermark();
    const start = await feedStart();
    const base =
      watermark ?? (start === undefined ? undefined : formatHour((parseHour(start) as number) - HOUR_MS));
    const due = base === undefined ? 1 : hoursBetween(base, eligibleHour(START_MS + tick * HOUR_MS));
    recovery.bound = Math.max(1, Math.ceil((due - 1) / (MAX_HOURS_PER_RUN - 1)));
    trace.push(
      `fault phase over with the watermark at ${watermark}, ${due} hours due: at most ${recovery.bound} fault-free runs`,
    );
    let caughtUp = false;
    let fixes = 0;
    while (!caughtUp && recovery.ticks < recovery.bound + fixes) {
      const nowMs = START_MS + tick * HOUR_MS;
      const calm: TickSpec = {
        operator: [],
        executions: [{ kind: "scheduled", delayMs: 0 }],
        s3Faults: [],
        citrixFaults: [],
      };
      const [result] = await runTick(tick, calm, nowMs, [calm]);
      recovery.ticks++;
      if (stuck) return report();
      // An error that names its fix: the operator performs it, and the schedule gets one more run for it.
      if (result?.error?.name === "StagingLostError" && expired.size > 0) {
        await performNamedFix(result.error.message);
        fixes++;
      }
      caughtUp = (await stand.watermark()) === eligibleHour(nowMs);
      tick++;
    }
    if (!caughtUp)
      violations.push(
        `liveness: after ${recovery.ticks} fault-free runs the watermark is ${await stand.watermark()}, not the newest eligible hour ${eligibleHour(START_MS + (tick - 1) * HOUR_MS)}`,
      );
    const lastTick = tick - 1;

    // Redriving every execution still failed (they stay redrivable for 14 days) publishes nothing published
    // already and moves nothing; one whose staging expired may fail by name (its collection is gone).
    const publishedBefore = markersIn(controlWrites);
    const watermarkBefore = await stand.watermark();
    const redriven = records.length;
    for (const { name, redrive } of [...failed]) {
      // At the time of the last tick: a redrive that plans afresh finds nothing new due.
      const result = await execute(name, {
        nowMs: START_MS + lastTick * HOUR_MS,
        tick: lastTick,
        redrive,
        explained: new Set(expiryExplains(name)),
      });
      if (stuck) return report();
      if (result?.status !== "SUCCEEDED" && !expired.has(name))
        violations.push(`the late redrive of ${name} did not succeed`);
    }
    await settleZombies();
    const rewritten = records
      .slice(redriven)
      .flatMap((record) => record.store.feedWrites)
      .filter((key) => publishedBefore.has(entityHourOfFeedKey(key) ?? ""));
    if (rewritten.length > 0)
      violations.push(`late redrives wrote to published entity-hours: ${rewritten.join(", ")}`);
    await checkWatermark("after the late redrives", lastTick);
    if ((await stand.watermark()) !== watermarkBefore)
      violations.push(
        `late redrives moved the watermark from ${watermarkBefore} to ${await stand.watermark()}`,
      );

    checkControlWrites(controlWrites, requirementsOf, await feedStart(), violations);
    await checkFeed(stand, violations);
    checkFeedWrites(records, deletedFeedObjects, violations);
    const published = await publishedEntityHours(stand);
    for (const name of backfillsDone) {
      const plan = plans.get(name);
      const missing = (plan?.hours ?? []).flatMap((hourUtc) =>
        (plan?.entities ?? [])
          .map((entity) => entityHour(entity, hourUtc))
          .filter((key) => !published.has(key)),
      );
      if (missing.length > 0)
        violations.push(`backfill ${name} succeeded, but ${missing.join(", ")} is not published`);
    }
    const leftovers = [
      ...(await stand.keys(`${CONTROL_PREFIX}/staging/`)),
      ...(await stand.keys(`${CONTROL_PREFIX}/leases/`)),
    ].filter(
      (key) => ![...expired].some((name) => key.includes(`/${name}/`) || key.endsWith(`/${name}.json`)),
    );
    if (leftovers.length > 0)
      violations.push(
        `staging or leases left after every execution succeeded: ${leftovers.slice(0, 5).join(", ")}`,
      );
    return report();
  } finally {
    await stand.close();
  }

  function report(): ScheduleReport {
    return {
      seed: schedule.seed,
      schedule,
      trace,
      violations,
      recovery,
      executions,
      kills,
      failedExecutions,
      abandoned,
      lostResponses,
      operatorFixes,
      stagingExpired: expired.size,
    };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Each watermark write is ≥ the one before (but after the state file was deleted), and every entity-hour up to
 * it that its writer's ENTITIES need had its marker when it was written.
 */
function checkControlWrites(
  writes: readonly ControlWrite[],
  requirementsOf: readonly Requirements[],
  feedStart: string | undefined,
  violations: string[],
): void {
  const published = new Set<string>();
  let previous: string | undefined;
  for (const write of writes) {
    if (write.kind === "deleted") {
      previous = undefined;
      continue;
    }
    if (write.kind === "published") {
      if (write.entity !== undefined) published.add(entityHour(write.entity, write.hourUtc));
      continue;
    }
    if (previous !== undefined && write.hourUtc < previous)
      violations.push(`the watermark was written back from ${previous} to ${write.hourUtc}`);
    previous = write.hourUtc;
    const unpublished = unpublishedUpTo(
      write.hourUtc,
      requirementsOf[write.tick] ?? new Map(),
      feedStart,
      published,
    );
    if (unpublished.length > 0)
      violations.push(
        `the watermark was written as ${write.hourUtc} before ${unpublished.join(", ")} had been published`,
      );
  }
}

/**
 * Each feed key is written once (SecOps would ingest a second write as duplicates), once more only after an
 * error named it for deletion and the schedule deleted it; a backfill writes no entity-hour published before it.
 */
function checkFeedWrites(
  records: readonly ExecutionRecord[],
  deletedFeedObjects: ReadonlyMap<string, number>,
  violations: string[],
): void {
  const writes = new Map<string, number>();
  for (const key of records.flatMap((record) => record.store.feedWrites))
    writes.set(key, (writes.get(key) ?? 0) + 1);
  const twice = [...writes].filter(([key, count]) => count > 1 + (deletedFeedObjects.get(key) ?? 0));
  if (twice.length > 0) violations.push(`feed keys written twice: ${twice.map(([key]) => key).join(", ")}`);
  for (const { name, publishedBefore, store } of records) {
    const rewritten = store.feedWrites.filter((key) => publishedBefore?.has(entityHourOfFeedKey(key) ?? ""));
    if (rewritten.length > 0)
      violations.push(
        `backfill ${name} wrote feed objects of entity-hours published before it: ${rewritten.join(", ")}`,
      );
  }
}

async function publishedEntityHours(stand: Stand): Promise<Set<string>> {
  const keys = await stand.keys(publishedPrefix(CONTROL_PREFIX));
  return new Set(
    keys.flatMap((key) => {
      const marker = publishedMarkerOfKey(CONTROL_PREFIX, key);
      return marker?.entity === undefined ? [] : [entityHour(marker.entity, marker.hourUtc)];
    }),
  );
}

/**
 * Every entity-hour published holds exactly the records the simulator serves for it, once each, in order; no
 * feed object exists for an entity-hour that is not published (the feed shows committed hours only).
 */
async function checkFeed(stand: Stand, violations: string[]): Promise<void> {
  const published = [...(await publishedEntityHours(stand))].map((key) => {
    const [entity, hourUtc] = key.split(" ") as [string, string];
    return { entity, hourUtc };
  });
  for (const { hourUtc, entity } of published) {
    try {
      await expectFeedMatchesSimulator(stand, entity, hourUtc);
    } catch (error) {
      violations.push(
        `${entity} ${hourUtc} in the feed differs from what the API served: ${String(error).slice(0, 500)}`,
      );
    }
  }
  const hourDirectories = new Set(
    published.map(({ hourUtc, entity }) =>
      feedPartKey(FEED_PREFIX, entity, hourUtc, 0).replace(/part-\d+\.ndjson$/, ""),
    ),
  );
  const stray = (await stand.keys(`${FEED_PREFIX}/`)).filter(
    (key) => !hourDirectories.has(key.replace(/part-\d+\.ndjson(\.gz)?$/, "")),
  );
  if (stray.length > 0) violations.push(`feed objects of entity-hours not published: ${stray.join(", ")}`);
}

/** The one-line command that replays a seed, and what to read when it fails. */
export function replayCommand(seed: number): string {
  return `SOAK_SEED=${seed} npx vitest run test/integration/end-to-end/fault-schedules.test.ts`;
}
