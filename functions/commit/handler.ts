import { invocationLogFields, type LambdaInvocation } from "../lib/aws/log";
import { createMetricsFactory, type MetricsFactory } from "../lib/aws/metrics";
import { commitInputSchema, parseStateInput } from "../lib/config/contracts";
import { publishRun } from "../lib/feed/publisher";
import { type StoreRuntime, storeRuntimeFromEnvironment } from "../lib/runtime";

export interface CommitHandlerDeps {
  runtime: () => StoreRuntime;
  metrics: MetricsFactory;
}

/** PublishAndAdvance: publish staged hours to the feed exactly once, then move the watermark. */
export function createHandler(deps: CommitHandlerDeps) {
  const invocation = invocationLogFields();
  return async (event: unknown, context: LambdaInvocation) => {
    const { store, config, log } = deps.runtime();
    const input = parseStateInput(commitInputSchema, event, "PublishAndAdvance");
    const output = await publishRun(
      { store, config, log: log.child({ execution: input.runId, ...invocation(context) }) },
      input,
    );
    const published = output.hours.filter((hour) => hour.outcome === "published");
    const metrics = deps.metrics({ execution: input.runId });
    metrics.add("HoursPublished", published.length);
    // An hour this execution published may hold entity-hours published before (a backfill of a new entity).
    metrics.add(
      "RecordsPublished",
      published
        .flatMap((hour) => Object.values(hour.records))
        .filter((entity) => entity.outcome === "published")
        .reduce((sum, records) => sum + records.published, 0),
    );
    metrics.publish();
    return output;
  };
}

export const handler = createHandler({
  runtime: storeRuntimeFromEnvironment(),
  metrics: createMetricsFactory(),
});
