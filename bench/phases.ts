/**
 * Where an execution's wall time goes, from what one benchmark process saw: when each handler began and ended,
 * and when each log line was written (DEBUG level: one "Citrix API answered" line per data request, with how
 * long it took). Pure: bench/collect-once.ts records the marks, this names the phases.
 */

/** A handler's invocation beginning or ending, or a log line, at `atMs` since process start. */
export type TimelineMark =
  | { atMs: number; handler: string; edge: "begin" | "end" }
  | { atMs: number; line: string };

/**
 * The phases, in the order they happen (the collect phases summed over the execution's invocations, which ran
 * one at a time), adding up to the wall time:
 * - processStart: loading the bundle (a cold start's init);
 * - localSetUp: the local twin's own set-up before Plan (roles, engine), which has no counterpart in AWS;
 * - plan, commit: the handlers;
 * - betweenStates: no handler running (the engine's transitions and the Map's dispatch);
 * - token: from an invocation's start to its Citrix token (none when the container holds one);
 * - firstPage: from then to the first answer, the page window's hint read and one round trip included;
 * - ramp: from the first answer until the most requests the invocation had in flight were first in flight;
 * - paging: from then to the last answer;
 * - flushAndResult: from the last answer to the invocation's end (last parts, the result, the hint shared);
 * - idle: the part of firstPage, ramp and paging with no data request in flight (the hint read before the
 *   first request, and gaps between an answer and the next request).
 */
export interface Phases {
  processStart: number;
  localSetUp: number;
  plan: number;
  betweenStates: number;
  token: number;
  firstPage: number;
  ramp: number;
  paging: number;
  flushAndResult: number;
  commit: number;
  idle: number;
  /** Invocations of the collect function, and the data requests they sent. */
  invocations: number;
  requests: number;
}

interface Request {
  sentMs: number;
  answeredMs: number;
}

interface Invocation {
  beginMs: number;
  endMs: number;
  tokenMs?: number;
  requests: Request[];
}

function parsed(line: string): { message?: string; ms?: number } {
  try {
    return JSON.parse(line) as { message?: string; ms?: number };
  } catch {
    return {};
  }
}

/** Time with at least one request in flight between the first request's start and the last answer. */
function busyMs(requests: Request[]): number {
  const sorted = [...requests].sort((a, b) => a.sentMs - b.sentMs);
  let busy = 0;
  let coveredTo = Number.NEGATIVE_INFINITY;
  for (const { sentMs, answeredMs } of sorted) {
    const from = Math.max(sentMs, coveredTo);
    if (answeredMs > from) busy += answeredMs - from;
    coveredTo = Math.max(coveredTo, answeredMs);
  }
  return busy;
}

/** When the most requests the invocation had in flight were first in flight at once. */
function peakReachedMs(requests: Request[]): number | undefined {
  const edges = requests
    .flatMap(({ sentMs, answeredMs }) => [
      { atMs: sentMs, change: 1 },
      { atMs: answeredMs, change: -1 },
    ])
    // At one instant, answers before sends: a request answered as another is sent did not overlap it.
    .sort((a, b) => a.atMs - b.atMs || a.change - b.change);
  let inFlight = 0;
  let peak = 0;
  let reachedMs: number | undefined;
  for (const { atMs, change } of edges) {
    inFlight += change;
    if (inFlight > peak) {
      peak = inFlight;
      reachedMs = atMs;
    }
  }
  return reachedMs;
}

/**
 * The invocations of `handler`, with the token and data request lines written while each ran; undefined when
 * two ran at once (a line cannot be told apart then).
 */
function invocationsOf(marks: TimelineMark[], handler: string): Invocation[] | undefined {
  const invocations: Invocation[] = [];
  let open: Invocation | undefined;
  for (const mark of marks) {
    if ("handler" in mark) {
      if (mark.handler !== handler) continue;
      if (mark.edge === "begin") {
        if (open) return undefined;
        open = { beginMs: mark.atMs, endMs: mark.atMs, requests: [] };
      } else if (open) {
        open.endMs = mark.atMs;
        invocations.push(open);
        open = undefined;
      }
      continue;
    }
    if (!open) continue;
    const { message, ms } = parsed(mark.line);
    if (message === "obtained Citrix API token") open.tokenMs ??= mark.atMs;
    if (message === "Citrix API answered" && typeof ms === "number") {
      open.requests.push({ sentMs: mark.atMs - ms, answeredMs: mark.atMs });
    }
  }
  return invocations;
}

/**
 * The phases of one execution that began `loadedMs` after process start and ended at `wallMs`, from its
 * marks in the order they were made; undefined when invocations of a handler overlapped (the Map ran
 * iterations side by side).
 */
export function phasesOf(marks: TimelineMark[], loadedMs: number, wallMs: number): Phases | undefined {
  const collects = invocationsOf(marks, "collect");
  const plans = invocationsOf(marks, "plan");
  const commits = invocationsOf(marks, "commit");
  if (!collects || !plans || !commits) return undefined;
  const spent = (invocations: Invocation[]) =>
    invocations.reduce((total, { beginMs, endMs }) => total + endMs - beginMs, 0);
  const planBeginMs = marks.find((mark) => "handler" in mark)?.atMs ?? wallMs;
  const phases: Phases = {
    processStart: loadedMs,
    localSetUp: planBeginMs - loadedMs,
    plan: spent(plans),
    betweenStates: wallMs - planBeginMs - spent(plans) - spent(collects) - spent(commits),
    token: 0,
    firstPage: 0,
    ramp: 0,
    paging: 0,
    flushAndResult: 0,
    commit: spent(commits),
    idle: 0,
    invocations: 0,
    requests: 0,
  };
  for (const invocation of collects) {
    phases.invocations++;
    const { beginMs, endMs, tokenMs, requests } = invocation;
    const pagingFromMs = tokenMs ?? beginMs;
    phases.token += pagingFromMs - beginMs;
    const firstAnswerMs = Math.min(...requests.map((request) => request.answeredMs));
    const lastAnswerMs = Math.max(...requests.map((request) => request.answeredMs));
    const peakMs = peakReachedMs(requests);
    if (requests.length === 0 || peakMs === undefined) {
      phases.flushAndResult += endMs - pagingFromMs;
      continue;
    }
    phases.requests += requests.length;
    const rampEndMs = Math.max(peakMs, firstAnswerMs);
    phases.firstPage += firstAnswerMs - pagingFromMs;
    phases.ramp += rampEndMs - firstAnswerMs;
    phases.paging += lastAnswerMs - rampEndMs;
    phases.flushAndResult += endMs - lastAnswerMs;
    const firstSentMs = Math.min(...requests.map((request) => request.sentMs));
    phases.idle += firstSentMs - pagingFromMs + (lastAnswerMs - firstSentMs - busyMs(requests));
  }
  return phases;
}
