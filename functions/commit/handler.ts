import { commitInputSchema, parseStateInput } from "../lib/contracts";
import { publishRun } from "../lib/publisher";
import { type Runtime, runtimeFromEnvironment } from "../lib/runtime";

export interface CommitHandlerDeps {
  runtime: () => Runtime;
}

/** PublishAndAdvance: publish staged hours to the feed exactly once, then move the watermark. */
export function createHandler(deps: CommitHandlerDeps) {
  return async (event: unknown) => {
    const { store, config, log } = deps.runtime();
    const input = parseStateInput(commitInputSchema, event, "PublishAndAdvance");
    return publishRun({ store, config, log: log.child({ execution: input.runId }) }, input);
  };
}

export const handler = createHandler({ runtime: runtimeFromEnvironment() });
