import { parseStateInput, planInputSchema } from "../lib/contracts";
import { invocationLogFields, type LambdaInvocation } from "../lib/log";
import { createMetricsFactory, type MetricsFactory } from "../lib/metrics";
import { planRun } from "../lib/plan-run";
import { type StoreRuntime, storeRuntimeFromEnvironment } from "../lib/runtime";

export interface PlanHandlerDeps {
  runtime: () => StoreRuntime;
  now: () => number;
  metrics: MetricsFactory;
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
});
