import type { Env } from "../config/config";
import { serviceName } from "./log";

/**
 * CloudWatch metrics in the embedded metric format (EMF): each invocation writes one JSON line to its log
 * stream, which CloudWatch Logs turns into metrics, so the functions need no cloudwatch:PutMetricData
 * permission. serverless.yml's LagHours alarm reads this namespace; the README's metrics table documents
 * every name.
 */
export const METRICS_NAMESPACE = "CitrixAnalyticsCollector";

/**
 * Every figure the functions report, with its unit. Collect's carry an `entity` dimension besides `service`.
 * Each distinct name × dimension values is a metric CloudWatch bills by the month (22 with three entities),
 * so only ALARM_METRICS are metrics by default; DETAILED_METRICS=true declares them all. The others are still
 * written on the same line, as fields Logs Insights can query.
 */
export const METRIC_UNITS = {
  /** Plan: hours the watermark trails the newest eligible hour (1 in steady state, before this run). */
  LagHours: "Count",
  /** Plan: hours this execution collects. */
  HoursPlanned: "Count",
  /** Collect, per entity: OData records read into staging by one invocation. */
  RecordsCollected: "Count",
  PagesFetched: "Count",
  /** Collect, per entity: staging NDJSON parts written. */
  PartsWritten: "Count",
  /** Collect, per entity: Citrix requests retried after 408/429/5xx, a timeout or a dropped connection. */
  ApiRetries: "Count",
  /** Collect, per entity: the retries that answered a throttle (HTTP 429). */
  ApiThrottles: "Count",
  CollectInvocations: "Count",
  /** Commit: hours this execution published to the feed, and their records. */
  HoursPublished: "Count",
  RecordsPublished: "Count",
} as const;
export type MetricName = keyof typeof METRIC_UNITS;

/** The metrics serverless.yml's alarms read: always published, whatever DETAILED_METRICS says. */
export const ALARM_METRICS: readonly MetricName[] = ["LagHours"];

/** Where finished EMF lines go: stdout in Lambda (the function's log stream), elsewhere in tests. */
export type MetricsSink = (line: string) => void;

/** The metrics of one invocation, written as one EMF line by `publish` (once, also when the invocation fails). */
export interface InvocationMetrics {
  add(name: MetricName, value: number): void;
  publish(): void;
}

/** What an invocation's metrics are about: `entity` becomes a dimension, the rest searchable fields. */
export interface MetricsScope {
  execution: string;
  entity?: string;
  hourUtc?: string;
}

export type MetricsFactory = (scope: MetricsScope) => InvocationMetrics;

/**
 * One metrics batch per invocation, rather than one shared instance per container: local runs execute Map
 * iterations of different entities concurrently in one process, and dimensions must not leak between them.
 * Reads POWERTOOLS_METRICS_DISABLED (true: no lines at all; the name Powertools gives it, kept so existing
 * settings still work), DETAILED_METRICS and the service name from the environment; loadConfig validates them.
 */
export function createMetricsFactory(
  env: Env = process.env,
  sink: MetricsSink = (line) => process.stdout.write(line),
): MetricsFactory {
  const service = serviceName(env);
  const disabled = env.POWERTOOLS_METRICS_DISABLED === "true";
  const declared = (name: MetricName) => env.DETAILED_METRICS === "true" || ALARM_METRICS.includes(name);
  return (scope) => {
    const values = new Map<MetricName, number>();
    return {
      add: (name, value) => {
        values.set(name, (values.get(name) ?? 0) + value);
      },
      publish: () => {
        if (disabled || values.size === 0) return;
        const dimensions = { service, ...(scope.entity === undefined ? {} : { entity: scope.entity }) };
        const metrics = [...values.keys()]
          .filter(declared)
          .map((name) => ({ Name: name, Unit: METRIC_UNITS[name] }));
        const directive =
          metrics.length === 0
            ? {}
            : {
                _aws: {
                  Timestamp: Date.now(),
                  CloudWatchMetrics: [
                    { Namespace: METRICS_NAMESPACE, Dimensions: [Object.keys(dimensions)], Metrics: metrics },
                  ],
                },
              };
        const line = {
          ...directive,
          execution: scope.execution,
          ...(scope.hourUtc === undefined ? {} : { hour: scope.hourUtc }),
          ...dimensions,
          ...Object.fromEntries(values),
        };
        values.clear();
        sink(`${JSON.stringify(line)}\n`);
      },
    };
  };
}
