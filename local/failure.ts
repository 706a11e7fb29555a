/**
 * Reads a failed execution's Error and Cause as Step Functions reports them. A failed lambda:invoke Task's
 * Cause is the Lambda runtime's JSON error object as a string (`{"errorType", "errorMessage", "trace"}`);
 * errors Step Functions raises itself (States.*) carry plain text.
 */
export interface LambdaError {
  errorType: string;
  errorMessage: string;
  trace?: string[];
}

export function lambdaError(cause: string | undefined): LambdaError | undefined {
  if (!cause?.startsWith("{")) return undefined;
  try {
    const parsed: unknown = JSON.parse(cause);
    if (typeof parsed !== "object" || parsed === null) return undefined;
    const { errorType, errorMessage, trace } = parsed as Record<string, unknown>;
    if (typeof errorType !== "string" || typeof errorMessage !== "string") return undefined;
    return Array.isArray(trace)
      ? { errorType, errorMessage, trace: trace.map(String) }
      : { errorType, errorMessage };
  } catch {
    return undefined;
  }
}

/** What a person reads: `errorType: errorMessage`, or `error: cause` when the cause is not a Lambda error. */
export function describeFailure(error: string | undefined, cause: string | undefined): string {
  const lambda = lambdaError(cause);
  if (lambda) return `${lambda.errorType}: ${lambda.errorMessage}`;
  return `${error ?? "failed"}${cause ? `: ${cause}` : ""}`;
}

/** The message alone: the Lambda error's errorMessage, or the cause as it is. */
export function failureMessage(cause: string | undefined): string {
  return lambdaError(cause)?.errorMessage ?? cause ?? "";
}

/** The state a failed execution stopped in, and the Map iteration it ran in, if any. */
export interface FailedState {
  name: string;
  iteration?: { map: string; index: number };
}

/** The fields of a GetExecutionHistory event that lead from the failure to the state that failed. */
export interface HistoryLink {
  id?: number;
  previousEventId?: number;
  type?: string;
  stateEnteredEventDetails?: { name?: string };
  mapIterationFailedEventDetails?: { name?: string; index?: number };
}

/**
 * The state a failed execution stopped in: from the ExecutionFailed event back along previousEventId
 * (through MapStateFailed and MapIterationFailed) to the state entered last on that path. Undefined when the
 * events given do not reach it.
 */
export function failedStateIn(events: Iterable<HistoryLink>): FailedState | undefined {
  const byId = new Map<number, HistoryLink>();
  let failed: HistoryLink | undefined;
  for (const event of events) {
    if (event.id !== undefined) byId.set(event.id, event);
    if (event.type === "ExecutionFailed") failed = event;
  }
  let iteration: FailedState["iteration"];
  for (let event = failed; event; event = byId.get(event.previousEventId ?? 0)) {
    const { name: map, index } = event.mapIterationFailedEventDetails ?? {};
    if (map !== undefined && index !== undefined) iteration ??= { map, index };
    const name = event.stateEnteredEventDetails?.name;
    if (name !== undefined) return iteration ? { name, iteration } : { name };
  }
  return undefined;
}

/** "CollectPage (CollectEntityHours item 4)". */
export function formatFailedState(state: FailedState): string {
  return `${state.name}${state.iteration ? ` (${state.iteration.map} item ${state.iteration.index})` : ""}`;
}
