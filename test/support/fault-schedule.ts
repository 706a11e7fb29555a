import type { CopyResult, S3Store, WriteResult } from "../../functions/lib/aws/s3-store";
import { formatHour, HOUR_MS, hourRange, parseHour } from "../../functions/lib/config/hours";
import { feedPartKey, publishedMarkerOfKey, publishedPrefix } from "../../functions/lib/feed/keys";
import type { LocalCollectionResult, RedrivePoint } from "../../local/collection";
import type { LocalHandler } from "../../local/state-machine";
import type { Fault as CitrixFault } from "../../stand-ins/citrix-simulator";
import type { S3Fault } from "../../stand-ins/s3-server";
import { InstrumentedStore, lambdaDied } from "./instrumented-store";
import { expectFeedMatchesSimulator, FEED_PREFIX, STATE_KEY, type Stand, startStand } from "./stand";

// A fault schedule: hourly ticks, each starting one scheduled execution (sometimes two at once, one that
// overruns its hour, none, or a redrive of an earlier failed one beside them), with faults drawn from a seeded PRNG while the fault
// phase lasts, then fault-free ticks until the feed has caught up. Everything random is drawn up front from
// the seed, so a schedule prints whole and replays with its seed. Interleavings of concurrent executions
// and Map iterations still depend on timing: a replay meets the same faults, not always at the same instant.

const CONTROL_PREFIX = `_citrix_collector/${FEED_PREFIX}`;
const ENTITIES = ["sessions", "machines"] as const;
/** Hours per execution: small, so an outage of a few ticks takes more than one run to catch up. */
const MAX_HOURS_PER_RUN = 3;
// 10:20 UTC with LOOKBACK_MINUTES 75: the newest eligible hour is 09:00; the feed starts at 08:00, so the
// first run leaves room under MAX_HOURS_PER_RUN for the next hour (which an overlapping run then publishes first).
const START_MS = Date.parse("2026-11-24T10:20:00Z");
const FIRST_HOUR_UTC = "2026-11-24T08:00:00Z";
const LOOKBACK_MINUTES = 75;
/** Generous: an execution here takes well under a second; one that takes this long is stuck. */
const EXECUTION_TIMEOUT_MS = 60_000;
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

export interface ExecutionSpec {
  kind: "scheduled" | "redrive";
  /** For a redrive: which of the executions failed so far (modulo their number); none failed, none runs. */
  pick?: number;
  /** Milliseconds after the tick's first execution this one starts (overlaps start at different points). */
  delayMs: number;
  /** It runs past the hour: the next tick starts while it still runs, and waits for it at its end. */
  overrun?: boolean;
  kill?: Kill;
}

export interface TickSpec {
  executions: ExecutionSpec[];
  s3Faults: S3Fault[];
  citrixFaults: CitrixFault[];
}

export interface Schedule {
  seed: number;
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
  for (const hourUtc of hourRange(Date.parse(FIRST_HOUR_UTC), START_MS + 24 * HOUR_MS))
    for (const entity of ENTITIES)
      volumes[`${entity} ${hourUtc}`] = rng.chance(0.15) ? 0 : rng.int(1, entity === "sessions" ? 14 : 6);
  const faultTicks: TickSpec[] = [];
  for (let tick = rng.int(2, 6); tick > 0; tick--) {
    const executions: ExecutionSpec[] = [];
    // Now and then the schedule does not fire (or the account is down): a backlog to catch up.
    if (!rng.chance(0.1)) {
      executions.push({ kind: "scheduled", delayMs: 0, overrun: rng.chance(0.15), kill: drawKill(rng) });
      if (rng.chance(0.25))
        executions.push({ kind: "scheduled", delayMs: rng.int(0, 40), kill: drawKill(rng) });
    }
    if (faultTicks.length > 0 && rng.chance(0.3))
      executions.push({
        kind: "redrive",
        pick: rng.int(0, 99),
        delayMs: rng.int(0, 40),
        kill: drawKill(rng),
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
    faultTicks.push({ executions, s3Faults, citrixFaults });
  }
  return { seed, faultTicks, volumes };
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
  const lines = [`seed ${schedule.seed}: ${schedule.faultTicks.length} fault ticks, then fault-free ticks`];
  schedule.faultTicks.forEach((tick, index) => {
    lines.push(`tick ${index}:`);
    for (const execution of tick.executions) lines.push(`  execution ${JSON.stringify(execution)}`);
    for (const fault of tick.s3Faults) lines.push(`  s3 fault ${JSON.stringify(fault)}`);
    for (const fault of tick.citrixFaults) lines.push(`  citrix fault ${JSON.stringify(fault)}`);
  });
  return lines;
}

/** A watermark or published-marker write that landed, in the order they landed. */
interface ControlWrite {
  kind: "watermark" | "published";
  hourUtc: string;
  /** The entity of an entity-hour marker. */
  entity?: string | undefined;
}

/**
 * The real S3Store (through InstrumentedStore, which records feed writes) with a hook before every S3 call,
 * where a schedule kills the invocation or the whole local run. It also logs every watermark and published
 * marker write that landed, so a watermark that moved back, or moved over an hour before that hour was
 * published, is seen even when later writes made it right again.
 */
class KillableStore extends InstrumentedStore {
  calls = 0;
  readonly callsOf: Record<string, number> = {};
  dead = false;

  constructor(
    base: S3Store,
    private readonly beforeCall: (store: KillableStore, operation: string, key: string) => void,
    private readonly controlWrites: ControlWrite[],
    /** The execution's store, whose counts and death every function's store of that execution shares. */
    private readonly execution?: KillableStore,
  ) {
    super(base, FEED_PREFIX, async () => undefined, execution);
  }

  /** This execution's store over a function's own client, signed with its role. */
  override over(base: S3Store): KillableStore {
    return new KillableStore(base, this.beforeCall, this.controlWrites, this.execution ?? this);
  }

  private call(operation: string, key: string): void {
    const execution = this.execution ?? this;
    execution.calls++;
    execution.callsOf[operation] = (execution.callsOf[operation] ?? 0) + 1;
    this.beforeCall(execution, operation, key);
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
    const marker = publishedMarkerOfKey(CONTROL_PREFIX, key);
    if (result.written && marker)
      this.controlWrites.push({ kind: "published", hourUtc: marker.hourUtc, entity: marker.entity });
    if (result.written && key === STATE_KEY) {
      const { last_hour_utc } = JSON.parse(String(body)) as { last_hour_utc: string };
      this.controlWrites.push({ kind: "watermark", hourUtc: last_hour_utc });
    }
    return result;
  }

  override async copyIfAbsent(sourceKey: string, destinationKey: string): Promise<CopyResult> {
    this.call("CopyObject", destinationKey);
    return super.copyIfAbsent(sourceKey, destinationKey);
  }

  override async listKeys(prefix: string, startAfter?: string) {
    this.call("ListObjectsV2", prefix);
    return super.listKeys(prefix, startAfter);
  }

  override async deleteKeys(keys: readonly string[]) {
    this.call("DeleteObjects", keys[0] ?? "");
    return super.deleteKeys(keys);
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

interface Failed {
  name: string;
  redrive: RedrivePoint;
}

/** Runs one schedule against fresh stand-ins and checks safety and liveness; never throws for a finding. */
export async function runSchedule(schedule: Schedule): Promise<ScheduleReport> {
  const trace: string[] = [];
  const violations: string[] = [];
  const stand = await startStand({
    now: START_MS,
    simulator: {
      volume: (entity, hourUtc) => schedule.volumes[`${entity} ${hourUtc}`] ?? 0,
      pageLatencyMs: 1,
      seed: `schedule-${schedule.seed}`,
    },
    env: {
      ENTITIES: ENTITIES.join(","),
      TOP_N: "4",
      PART_MAX_RECORDS: "3",
      MAX_HOURS_PER_RUN: String(MAX_HOURS_PER_RUN),
      FIRST_HOUR_UTC,
      LOOKBACK_MINUTES: String(LOOKBACK_MINUTES),
      MAP_MAX_CONCURRENCY: "3",
    },
  });
  // Every store an execution used: feed writes are counted from all of them, late ones of zombies included.
  const stores: KillableStore[] = [];
  const feedWrites = () => stores.flatMap((store) => store.feedWrites);
  const controlWrites: ControlWrite[] = [];
  const failed: Failed[] = [];
  const running = new Set<string>();
  let executions = 0;
  let failedExecutions = 0;
  let kills = 0;
  let highestWatermark: string | null = null;
  let stuck = false;

  async function execute(
    name: string,
    nowMs: number,
    spec: ExecutionSpec | undefined,
    redrive: RedrivePoint | undefined,
    explained: Set<string>,
    /** What its first Commit invocation waits for (an execution overrunning its hour). */
    commitGate?: Promise<void>,
  ): Promise<LocalCollectionResult | undefined> {
    const kill = spec?.kill;
    let killedAt: string | undefined;
    const killNow = (store: KillableStore, where: string): Error => {
      killedAt = where;
      kills++;
      if (kill?.mode === "process") {
        store.dead = true;
        return processKilled();
      }
      return lambdaDied("Lambda.Unknown");
    };
    const store = new KillableStore(
      stand.store,
      (self, operation, key) => {
        if (self.dead) throw processKilled();
        if (kill?.at !== "s3-call" || (kill.operation !== undefined && kill.operation !== operation)) return;
        if ((kill.operation ? self.callsOf[operation] : self.calls) === kill.call)
          throw killNow(self, `S3 call ${self.calls} (${operation} ${key})`);
      },
      controlWrites,
    );
    stores.push(store);
    const invocations: Record<string, number> = {};
    const wrap = (key: string, handler: LocalHandler): LocalHandler => {
      return async (event, context) => {
        if (key === "commit" && commitGate) await commitGate;
        if (store.dead) throw processKilled();
        const invocation = (invocations[key] ?? 0) + 1;
        invocations[key] = invocation;
        const here = kill?.at === "lambda" && kill.fn === key && kill.invocation === invocation;
        if (here && kill.when === "before")
          throw killNow(store, `${key} invocation ${invocation}, before it ran`);
        const result = await handler(event, context);
        if (here && kill.when === "after")
          throw killNow(store, `${key} invocation ${invocation}, after it ran (its result lost)`);
        return result;
      };
    };
    if (spec?.delayMs) await new Promise((resolve) => setTimeout(resolve, spec.delayMs));
    executions++;
    running.add(name);
    const startedAt = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), EXECUTION_TIMEOUT_MS);
    });
    const result = await Promise.race([
      stand.run(name, {
        now: () => nowMs,
        redrive,
        wrap,
        adaptRuntime: (runtime) => ({ ...runtime, store: store.over(runtime.store) }),
      }),
      timedOut,
    ]);
    clearTimeout(timer);
    running.delete(name);
    if (result === "timeout") {
      stuck = true;
      violations.push(`${name} did not end within ${EXECUTION_TIMEOUT_MS} ms`);
      return undefined;
    }
    const summary = [
      `${name}${redrive ? ` (redrive at ${redrive.state})` : ""}: ${result.status} in ${Date.now() - startedAt} ms`,
      result.error ? `${result.error.name}: ${result.error.cause.slice(0, 300)}` : "",
      result.plan ? `planned ${result.plan.hours.join(",") || "nothing"}` : "",
      Object.keys(result.plan?.deferred ?? {}).length > 0
        ? `deferred ${JSON.stringify(result.plan?.deferred)}`
        : "",
      result.commit
        ? `commit ${result.commit.hours.map((hour) => `${hour.hourUtc.slice(11, 13)}h ${hour.outcome}`).join(", ")}`
        : "",
      kill ? `kill ${JSON.stringify(kill)} ${killedAt ? `at ${killedAt}` : "(not reached)"}` : "",
      store.feedWrites.length > 0 ? `${store.feedWrites.length} feed writes` : "",
    ];
    trace.push(summary.filter(Boolean).join("; "));
    const index = failed.findIndex((entry) => entry.name === name);
    if (index >= 0) failed.splice(index, 1);
    if (result.status === "FAILED") {
      failedExecutions++;
      const errorName = result.error?.name ?? "unknown";
      if (result.redrive) failed.push({ name, redrive: result.redrive });
      // A killed local run fails where it was; a killed invocation is retried and must not fail it.
      const killedRun = errorName === PROCESS_KILLED && kill?.mode === "process" && killedAt !== undefined;
      if (!killedRun && !explained.has(errorName))
        violations.push(
          `${name} failed with ${errorName}, which no fault of its tick explains: ${result.error?.cause}`,
        );
    }
    return result;
  }

  /** Reads the watermark between ticks (no fault armed then) and checks it against every hour published. */
  async function checkWatermark(when: string): Promise<string | null> {
    const watermark = await stand.watermark();
    if (highestWatermark !== null && (watermark === null || watermark < highestWatermark))
      violations.push(`${when}: the watermark moved back from ${highestWatermark} to ${watermark}`);
    if (watermark !== null && (highestWatermark === null || watermark > highestWatermark))
      highestWatermark = watermark;
    if (watermark !== null) {
      const published = new Set(await publishedHours(stand));
      const unpublished = hourRange(Date.parse(FIRST_HOUR_UTC), Date.parse(watermark)).filter(
        (hourUtc) => !published.has(hourUtc),
      );
      if (unpublished.length > 0)
        violations.push(
          `${when}: the watermark ${watermark} passed unpublished hours ${unpublished.join(", ")}`,
        );
    }
    return watermark;
  }

  /**
   * Executions that run past their hour: each starts its Commit only once the next tick's own executions
   * have ended, so a later execution publishes later hours first, as when a throttled run overruns.
   */
  let overrunning: Promise<unknown>[] = [];
  let releaseOverrunning: () => void = () => undefined;

  /** `faultsMet`: the ticks whose faults an execution of this tick can meet (the next one too if it overruns). */
  async function runTick(index: number, tick: TickSpec, nowMs: number, faultsMet: TickSpec[]): Promise<void> {
    for (const fault of tick.s3Faults) stand.s3.inject(fault);
    for (const fault of tick.citrixFaults) stand.simulator.inject(fault);
    const previous = { runs: overrunning, release: releaseOverrunning };
    overrunning = [];
    const commitGate = new Promise<void>((resolve) => {
      releaseOverrunning = resolve;
    });
    const own: Promise<unknown>[] = [];
    tick.executions.forEach((spec, n) => {
      const name = `t${index}-${"abc"[n]}`;
      const explained = explainedFailures(spec.overrun ? faultsMet : faultsMet.slice(0, 1));
      const gate = spec.overrun ? commitGate : undefined;
      let run: Promise<unknown>;
      if (spec.kind === "scheduled") {
        run = execute(name, nowMs, spec, undefined, explained, gate);
      } else {
        const candidates = failed.filter((entry) => !running.has(entry.name));
        const chosen = candidates[(spec.pick ?? 0) % Math.max(1, candidates.length)];
        run = chosen ? execute(chosen.name, nowMs, spec, chosen.redrive, explained, gate) : Promise.resolve();
      }
      (spec.overrun ? overrunning : own).push(run);
    });
    await Promise.all(own);
    previous.release();
    await Promise.all(previous.runs);
    // Faults last one tick: the checks between ticks read S3 without meeting them.
    stand.s3.clearFaults();
    stand.simulator.clearFaults();
    await checkWatermark(`after tick ${index}`);
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
    if (stuck) return report();
    // Liveness: hours due now, MAX_HOURS_PER_RUN per run while one more becomes due each tick.
    const watermark = await stand.watermark();
    const due = hoursBetween(
      watermark ?? formatHour(Date.parse(FIRST_HOUR_UTC) - HOUR_MS),
      eligibleHour(START_MS + tick * HOUR_MS),
    );
    recovery.bound = Math.max(1, Math.ceil((due - 1) / (MAX_HOURS_PER_RUN - 1)));
    trace.push(
      `fault phase over with the watermark at ${watermark}, ${due} hours due: at most ${recovery.bound} fault-free runs`,
    );
    let caughtUp = false;
    while (!caughtUp && recovery.ticks < recovery.bound) {
      const nowMs = START_MS + tick * HOUR_MS;
      await runTick(
        tick,
        { executions: [{ kind: "scheduled", delayMs: 0 }], s3Faults: [], citrixFaults: [] },
        nowMs,
        [],
      );
      recovery.ticks++;
      if (stuck) return report();
      caughtUp = (await stand.watermark()) === eligibleHour(nowMs);
      tick++;
    }
    if (!caughtUp)
      violations.push(
        `liveness: after ${recovery.ticks} fault-free runs the watermark is ${await stand.watermark()}, not the newest eligible hour ${eligibleHour(START_MS + (tick - 1) * HOUR_MS)}`,
      );
    checkControlWrites(controlWrites, violations);
    await checkFeed(stand, violations);
    const written = feedWrites();
    const writtenTwice = written.filter((key, i) => written.indexOf(key) !== i);
    if (writtenTwice.length > 0)
      violations.push(`feed keys written twice: ${[...new Set(writtenTwice)].join(", ")}`);

    // Redriving every execution still failed (they stay redrivable for 14 days) writes nothing to the feed.
    const before = feedWrites().length;
    const watermarkBefore = await stand.watermark();
    for (const { name, redrive } of [...failed]) {
      // At the time of the last tick: a redrive that plans afresh finds nothing new due.
      const nowMs = START_MS + (tick - 1) * HOUR_MS;
      const result = await execute(name, nowMs, undefined, redrive, new Set());
      if (stuck) return report();
      if (result?.status !== "SUCCEEDED") violations.push(`the late redrive of ${name} did not succeed`);
    }
    if (feedWrites().length !== before)
      violations.push(`late redrives wrote to the feed: ${feedWrites().slice(before).join(", ")}`);
    await checkWatermark("after the late redrives");
    if ((await stand.watermark()) !== watermarkBefore)
      violations.push(
        `late redrives moved the watermark from ${watermarkBefore} to ${await stand.watermark()}`,
      );
    const leftovers = [
      ...(await stand.keys(`${CONTROL_PREFIX}/staging/`)),
      ...(await stand.keys(`${CONTROL_PREFIX}/leases/`)),
    ];
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
    };
  }
}

/** Each watermark write is ≥ the one before, and every entity-hour up to it had its marker when it was written. */
function checkControlWrites(writes: ControlWrite[], violations: string[]): void {
  const markers: PublishedEntityHour[] = [];
  let published = new Set<string>();
  let previous: string | undefined;
  for (const write of writes) {
    if (write.kind === "published") {
      markers.push({ hourUtc: write.hourUtc, entity: write.entity });
      published = hoursOfEveryEntity(markers);
      continue;
    }
    if (previous !== undefined && write.hourUtc < previous)
      violations.push(`the watermark was written back from ${previous} to ${write.hourUtc}`);
    previous = write.hourUtc;
    const unpublished = hourRange(Date.parse(FIRST_HOUR_UTC), Date.parse(write.hourUtc)).filter(
      (hourUtc) => !published.has(hourUtc),
    );
    if (unpublished.length > 0)
      violations.push(
        `the watermark was written as ${write.hourUtc} before ${unpublished.join(", ")} had been published`,
      );
  }
}

interface PublishedEntityHour {
  hourUtc: string;
  entity: string | undefined;
}

/** The hours every entity of the schedule has a marker for. */
function hoursOfEveryEntity(markers: readonly PublishedEntityHour[]): Set<string> {
  const entities = new Map<string, Set<string | undefined>>();
  for (const { hourUtc, entity } of markers)
    entities.set(hourUtc, (entities.get(hourUtc) ?? new Set()).add(entity));
  return new Set(
    [...entities].filter(([, done]) => ENTITIES.every((entity) => done.has(entity))).map(([hour]) => hour),
  );
}

async function publishedEntityHours(stand: Stand): Promise<PublishedEntityHour[]> {
  const keys = await stand.keys(publishedPrefix(CONTROL_PREFIX));
  return keys.flatMap((key) => publishedMarkerOfKey(CONTROL_PREFIX, key) ?? []);
}

async function publishedHours(stand: Stand): Promise<string[]> {
  return [...hoursOfEveryEntity(await publishedEntityHours(stand))];
}

/**
 * Every entity-hour published holds exactly the records the simulator serves for it, once each, in order; no
 * feed object exists for an entity-hour that is not published (the feed shows committed hours only).
 */
async function checkFeed(stand: Stand, violations: string[]): Promise<void> {
  const published = (await publishedEntityHours(stand)).flatMap(({ hourUtc, entity }) =>
    entity === undefined ? [] : [{ hourUtc, entity }],
  );
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
