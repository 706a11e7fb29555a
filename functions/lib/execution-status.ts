import { DescribeExecutionCommand, ExecutionDoesNotExist, type SFNClient } from "@aws-sdk/client-sfn";
import type { ExecutionStatusLookup } from "./feed/plan-run";

/**
 * Asks Step Functions whether another execution of this state machine can still finish. Its ARN is this
 * execution's with the other's name: `arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME`. A redriven
 * execution is RUNNING again (PENDING_REDRIVE just before); anything else has ended.
 */
export function stepFunctionsExecutionStatus(client: SFNClient): ExecutionStatusLookup {
  return async (executionName, ownExecutionArn) => {
    if (ownExecutionArn === undefined || !/:execution:[^:]+:[^:]+$/.test(ownExecutionArn)) return "unknown";
    const executionArn = ownExecutionArn.replace(/[^:]+$/, executionName);
    try {
      const { status } = await client.send(new DescribeExecutionCommand({ executionArn }));
      return status === "RUNNING" || status === "PENDING_REDRIVE" ? "running" : "ended";
    } catch (error) {
      return error instanceof ExecutionDoesNotExist ? "ended" : "unknown";
    }
  };
}
