import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { serviceName } from "./log";

/**
 * CloudWatch metrics in the embedded metric format (EMF) through Powertools for AWS Lambda's Metrics: each
 * invocation writes one JSON line to its log stream, which CloudWatch Logs turns into metrics, so the
 * functions need no cloudwatch:PutMetricData permission. serverless.yml's LagHours alarm reads this
 * namespace; the README's metrics table documents every name.
 */
export const METRICS_NAMESPACE = "CitrixAnalyticsCollector";

/** Every metric the functions publish, with its unit. Collect's carry an `entity` dimension besides `service`. */
export const METRIC_UNITS = {
  /** Plan: hours the watermark trails the newest eligible hour (1 in steady state, before this run). */
  LagHours: MetricUnit.Count,
  /** Plan: hours this execution collects. */
  HoursPlanned: MetricUnit.Count,
  /** Collect, per entity: OData records read into staging by one invocation. */
  RecordsCollected: MetricUnit.Count,
  PagesFetched: MetricUnit.Count,
  /** Collect, per entity: staging NDJSON parts written. */
  PartsWritten: MetricUnit.Count,
  /** Collect, per entity: Citrix requests retried after 408/429/5xx, a timeout or a dropped connection. */
  ApiRetries: MetricUnit.Count,
  /** Collect, per entity: the retries that answered a throttle (HTTP 429). */
  ApiThrottles: MetricUnit.Count,
  CollectInvocations: MetricUnit.Count,
  /** Commit: hours this execution published to the feed, and their records. */
  HoursPublished: MetricUnit.Count,
  RecordsPublished: MetricUnit.Count,
} as const;
export type MetricName = keyof typeof METRIC_UNITS;

/** Where finished EMF lines go: stdout in Lambda (the function's log stream), elsewhere in tests. */
export type MetricsSink = (line: string) => void;

/** The metrics of one invocation, written as one EMF line by `publish` (once, also when the invocation fails). */
export interface InvocationMetrics {
  add(name: MetricName, value: number): void;
  publish(): void;
}

/** What an invocation's metrics are about: `entity` becomes a dimension, the rest searchable metadata. */
export interface MetricsScope {
  execution: string;
  entity?: string;
  hourUtc?: string;
}

export type MetricsFactory = (scope: MetricsScope) => InvocationMetrics;

/**
 * Powertools publishes through a Console of its own; this subclass hands the serialised EMF to a sink,
 * honouring POWERTOOLS_METRICS_DISABLED (and POWERTOOLS_DEV) as Powertools does.
 */
class SinkMetrics extends Metrics {
  constructor(
    options: ConstructorParameters<typeof Metrics>[0],
    private readonly sink: MetricsSink,
  ) {
    super(options);
  }

  override publishStoredMetrics(): this {
    if (!this.isDisabled() && this.hasStoredMetrics()) {
      this.sink(`${JSON.stringify(this.serializeMetrics())}\n`);
    }
    this.clearMetrics();
    this.clearDimensions();
    this.clearMetadata();
    return this;
  }
}

/**
 * One metrics batch per invocation, rather than one shared instance per container: local runs execute Map
 * iterations of different entities concurrently in one process, and dimensions must not leak between them.
 */
export function createMetricsFactory(
  service = serviceName(),
  sink: MetricsSink = (line) => process.stdout.write(line),
): MetricsFactory {
  return (scope) => {
    const metrics = new SinkMetrics({ namespace: METRICS_NAMESPACE, serviceName: service }, sink);
    if (scope.entity !== undefined) metrics.addDimension("entity", scope.entity);
    metrics.addMetadata("execution", scope.execution);
    if (scope.hourUtc !== undefined) metrics.addMetadata("hour", scope.hourUtc);
    return {
      add: (name, value) => {
        metrics.addMetric(name, METRIC_UNITS[name], value);
      },
      publish: () => {
        metrics.publishStoredMetrics();
      },
    };
  };
}
