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
    return Array.isArray(trace) ? { errorType, errorMessage, trace: trace.map(String) } : { errorType, errorMessage };
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
