import { collectEntityHour } from "../lib/collector";
import { collectInputSchema, parseStateInput } from "../lib/contracts";
import { type Runtime, runtimeFromEnvironment } from "../lib/runtime";

export interface CollectHandlerDeps {
  runtime: () => Runtime;
}

/** The part of the Lambda context this handler uses. */
export interface InvocationContext {
  getRemainingTimeInMillis(): number;
}

/** CollectPage: page one entity-hour into staging until done or out of time, then hand back a cursor. */
export function createHandler(deps: CollectHandlerDeps) {
  return async (event: unknown, context: InvocationContext) => {
    const { store, citrix, config, log } = deps.runtime();
    const input = parseStateInput(collectInputSchema, event, "CollectPage");
    return collectEntityHour(
      { store, citrix, config, log: log.child({ execution: input.runId }) },
      input,
      () => context.getRemainingTimeInMillis(),
    );
  };
}

export const handler = createHandler({ runtime: runtimeFromEnvironment() });
