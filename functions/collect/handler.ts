import { invocationLogFields, type LambdaInvocation } from "../lib/aws/log";
import { createMetricsFactory, type MetricsFactory } from "../lib/aws/metrics";
import { collectInputSchema, parseStateInput } from "../lib/config/contracts";
import { collectEntityHour } from "../lib/feed/collector";
import { type Runtime, runtimeFromEnvironment } from "../lib/runtime";

export interface CollectHandlerDeps {
  runtime: () => Runtime;
  metrics: MetricsFactory;
}

/** The part of the Lambda context this handler uses. */
export interface InvocationContext extends LambdaInvocation {
  getRemainingTimeInMillis(): number;
}

/** CollectPage: page one entity-hour into staging until done or out of time, then hand back a cursor. */
export function createHandler(deps: CollectHandlerDeps) {
  const invocation = invocationLogFields();
  return async (event: unknown, context: InvocationContext) => {
    const { store, citrix, config, log } = deps.runtime();
    const input = parseStateInput(collectInputSchema, event, "CollectPage");
    const metrics = deps.metrics({ execution: input.runId, entity: input.entity, hourUtc: input.hourUtc });
    let retries = 0;
    let throttles = 0;
    const apiRequests = {
      retried(status: number | undefined) {
        retries++;
        if (status === 429) throttles++;
      },
    };
    // Retries and throttles count also when the invocation fails: they are why it failed.
    try {
      const output = await collectEntityHour(
        {
          store,
          citrix,
          config,
          log: log.child({ execution: input.runId, ...invocation(context) }),
          apiRequests,
        },
        input,
        () => context.getRemainingTimeInMillis(),
      );
      const before = input.progress;
      metrics.add("PagesFetched", output.progress.pages - (before?.pages ?? 0));
      metrics.add("RecordsCollected", output.progress.records - (before?.records ?? 0));
      metrics.add("PartsWritten", output.progress.parts - (before?.parts ?? 0));
      return output;
    } finally {
      metrics.add("CollectInvocations", 1);
      metrics.add("ApiRetries", retries);
      metrics.add("ApiThrottles", throttles);
      metrics.publish();
    }
  };
}

export const handler = createHandler({ runtime: runtimeFromEnvironment(), metrics: createMetricsFactory() });
