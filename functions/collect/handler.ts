import { invocationLogFields, type LambdaInvocation } from "../lib/aws/log";
import { createMetricsFactory, type InvocationMetrics, type MetricsFactory } from "../lib/aws/metrics";
import type { CitrixRequestObserver } from "../lib/citrix/citrix-client";
import {
  type CollectInput,
  type CollectOutput,
  collectInputSchema,
  type EntityHourFigures,
  parseStateInput,
  type WorkItem,
} from "../lib/config/contracts";
import { collectRun } from "../lib/feed/collector";
import { type Runtime, runtimeFromEnvironment } from "../lib/runtime";

export interface CollectHandlerDeps {
  runtime: () => Runtime;
  metrics: MetricsFactory;
}

/** The part of the Lambda context this handler uses. */
export interface InvocationContext extends LambdaInvocation {
  getRemainingTimeInMillis(): number;
}

/** CollectPage: page a run of entity-hours into staging until done or out of time, then hand back where it stands. */
export function createHandler(deps: CollectHandlerDeps) {
  const invocation = invocationLogFields();
  return async (event: unknown, context: InvocationContext) => {
    const { store, citrix, config, log } = deps.runtime();
    const input = parseStateInput(collectInputSchema, event, "CollectPage");
    const metrics = new EntityHourMetrics(deps.metrics, input);
    // Retries and throttles count also when the invocation fails: they are why it failed.
    try {
      const output = await collectRun(
        {
          store,
          citrix,
          config,
          log: log.child({ execution: input.runId, ...invocation(context) }),
          apiRequestsOf: (entityHour) => metrics.apiRequests(entityHour),
        },
        input,
        () => context.getRemainingTimeInMillis(),
      );
      metrics.collected(output);
      return output;
    } finally {
      metrics.publish();
    }
  };
}

/**
 * The invocation's metrics, one EMF line per entity-hour it worked on, so that each carries its entity as a
 * dimension. Every line has the same figures (an entity's metrics do not come and go with its retries), and
 * counts the invocation once for each entity-hour it worked on.
 */
class EntityHourMetrics {
  private readonly lines = new Map<string, InvocationMetrics>();

  constructor(
    private readonly factory: MetricsFactory,
    private readonly input: CollectInput,
  ) {
    this.of(input);
  }

  /** Counts the Citrix requests the entity-hour retries. */
  apiRequests(entityHour: WorkItem): CitrixRequestObserver {
    const metrics = this.of(entityHour);
    return {
      retried(status: number | undefined) {
        metrics.add("ApiRetries", 1);
        if (status === 429) metrics.add("ApiThrottles", 1);
      },
    };
  }

  /**
   * What the invocation collected: the entity-hours it finished and the one it hands over, less what the
   * entity-hour it started with had before.
   */
  collected(output: CollectOutput): void {
    const handedOver =
      output.done || output.progress === undefined ? [] : [{ ...output, ...output.progress }];
    const worked: Pick<EntityHourFigures, "entity" | "hourUtc" | "pages" | "records" | "parts">[] = [
      ...output.finished,
      ...handedOver,
    ];
    const before = this.input.progress;
    for (const { entity, hourUtc, pages, records, parts } of worked) {
      const first = entity === this.input.entity && hourUtc === this.input.hourUtc;
      const metrics = this.of({ entity, hourUtc });
      metrics.add("PagesFetched", pages - (first ? (before?.pages ?? 0) : 0));
      metrics.add("RecordsCollected", records - (first ? (before?.records ?? 0) : 0));
      metrics.add("PartsWritten", parts - (first ? (before?.parts ?? 0) : 0));
    }
  }

  publish(): void {
    for (const metrics of this.lines.values()) metrics.publish();
  }

  private of({ entity, hourUtc }: WorkItem): InvocationMetrics {
    const key = `${entity} ${hourUtc}`;
    let metrics = this.lines.get(key);
    if (!metrics) {
      metrics = this.factory({ execution: this.input.runId, entity, hourUtc });
      metrics.add("CollectInvocations", 1);
      metrics.add("ApiRetries", 0);
      metrics.add("ApiThrottles", 0);
      this.lines.set(key, metrics);
    }
    return metrics;
  }
}

export const handler = createHandler({ runtime: runtimeFromEnvironment(), metrics: createMetricsFactory() });
