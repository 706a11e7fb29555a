import { parseStateInput, planInputSchema } from "../lib/contracts";
import { planRun } from "../lib/plan-run";
import { type Runtime, runtimeFromEnvironment } from "../lib/runtime";

export interface PlanHandlerDeps {
  runtime: () => Runtime;
  now: () => number;
}

/** PlanHours: read the watermark and emit this execution's work items. */
export function createHandler(deps: PlanHandlerDeps) {
  return async (event: unknown) => {
    const { store, config, log } = deps.runtime();
    const input = parseStateInput(planInputSchema, event, "PlanHours");
    return planRun(
      { store, config, now: deps.now, log: log.child({ execution: input.executionName }) },
      input,
    );
  };
}

export const handler = createHandler({ runtime: runtimeFromEnvironment(), now: Date.now });
