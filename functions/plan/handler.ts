import { SFNClient } from "@aws-sdk/client-sfn";
import { invocationLogFields, type LambdaInvocation } from "../lib/aws/log";
import { createMetricsFactory, type MetricsFactory } from "../lib/aws/metrics";
import { parseStateInput, planInputSchema } from "../lib/config/contracts";
import { stepFunctionsExecutionStatus } from "../lib/execution-status";
import { type ExecutionStatusLookup, planRun } from "../lib/feed/plan-run";
import { type StoreRuntime, storeRuntimeFromEnvironment } from "../lib/runtime";

export interface PlanHandlerDeps {
  runtime: () => StoreRuntime;
  now: () => number;
  metrics: MetricsFactory;
  /** Whether the execution holding a collection lease still runs. */
  executionStatus: ExecutionStatusLookup;
}

/** PlanHours: read the watermark and emit this execution's work items. */
export function createHandler(deps: PlanHandlerDeps) {
  const invocation = invocationLogFields();
  return async (event: unknown, context: LambdaInvocation) => {
    const { store, config, log } = deps.runtime();
    const input = parseStateInput(planInputSchema, event, "PlanHours");
    const output = await planRun(
      {
        store,
        config,
        now: deps.now,
        executionStatus: deps.executionStatus,
        log: log.child({ execution: input.executionName, ...invocation(context) }),
      },
      input,
    );
    const metrics = deps.metrics({ execution: input.executionName });
    metrics.add("LagHours", output.lagHours);
    metrics.add("HoursPlanned", output.hours.length);
    metrics.publish();
    return output;
  };
}

export const handler = createHandler({
  runtime: storeRuntimeFromEnvironment(),
  now: Date.now,
  metrics: createMetricsFactory(),
  executionStatus: stepFunctionsExecutionStatus(new SFNClient({})),
});
