import { afterEach, describe, expect, it } from "vitest";
import { ALARM_METRICS, METRIC_UNITS, METRICS_NAMESPACE } from "../../../functions/lib/aws/metrics";
import { type Stand, startStand } from "../../support/stand";

// 11:20 UTC with LOOKBACK_MINUTES 75: the newest eligible hour is 10:00.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOURS = ["2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z"];
const SERVICE = "citrix-analytics-collector-test";

interface Emf {
  _aws?: {
    Timestamp: number;
    CloudWatchMetrics: {
      Namespace: string;
      Dimensions: string[][];
      Metrics: { Name: string; Unit: string }[];
    }[];
  };
  [field: string]: unknown;
}

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

async function observedRun(
  name: string,
  prepare: (s: Stand) => void,
  firstHourUtc = HOURS[0],
  env: Record<string, string> = { DETAILED_METRICS: "true" },
) {
  stand = await startStand({
    now: NOW,
    env: {
      ENTITIES: "sessions,users",
      FIRST_HOUR_UTC: firstHourUtc,
      POWERTOOLS_SERVICE_NAME: SERVICE,
      ...env,
    },
  });
  prepare(stand);
  const emf: Emf[] = [];
  const result = await stand.run(name, { metricsSink: (line) => emf.push(JSON.parse(line) as Emf) });
  const logs = stand.logs.map((line) => JSON.parse(line) as Record<string, unknown>);
  /** The EMF lines a function wrote, told apart by their metrics. */
  const by = (metric: string) => emf.filter((line) => metric in line);
  const total = (lines: Emf[], metric: string) => lines.reduce((sum, line) => sum + Number(line[metric]), 0);
  return { s: stand, result, emf, logs, by, total };
}

/** Each metric stream CloudWatch would create from the lines: name × dimension values, as it bills them. */
function metricStreams(lines: Emf[]): string[] {
  const streams = lines.flatMap((line) =>
    (line._aws?.CloudWatchMetrics ?? []).flatMap((definition) =>
      definition.Metrics.flatMap((metric) =>
        definition.Dimensions.map((names) =>
          [metric.Name, ...names.map((dimension) => `${dimension}=${String(line[dimension])}`)].join(" "),
        ),
      ),
    ),
  );
  return [...new Set(streams)].sort();
}

describe("metrics (CloudWatch embedded metric format)", () => {
  it("by default are only the alarms' metrics, one stream each; the other figures stay fields of the same lines", async () => {
    const { result, emf, by } = await observedRun("observed-0", () => undefined, HOURS[0], {});
    expect(result.status).toBe("SUCCEEDED");
    expect(ALARM_METRICS).toEqual(["LagHours"]);
    expect(metricStreams(emf)).toEqual([`LagHours service=${SERVICE}`]);
    // Plan's line declares LagHours alone; collect's and commit's declare nothing and carry no EMF directive.
    expect(by("LagHours")[0]?._aws?.CloudWatchMetrics[0]?.Metrics).toEqual([
      { Name: "LagHours", Unit: "Count" },
    ]);
    expect(by("HoursPlanned")[0]).toMatchObject({ HoursPlanned: 2, LagHours: result.plan?.lagHours });
    // One line per entity-hour an invocation worked on: here each was collected by one invocation.
    expect(by("CollectInvocations")).toHaveLength(result.collected?.length ?? -1);
    for (const line of [...by("CollectInvocations"), ...by("HoursPublished")]) {
      expect(line._aws).toBeUndefined();
      expect(line).toMatchObject({ service: SERVICE, execution: "observed-0" });
    }
    expect(by("HoursPublished")[0]).toMatchObject({ HoursPublished: 2 });
  });

  it("with DETAILED_METRICS=true are every figure, per entity for collect's: 22 streams for three entities", async () => {
    const { emf } = await observedRun("observed-5", () => undefined, HOURS[1], {
      DETAILED_METRICS: "true",
      ENTITIES: "sessions,machines,users",
    });
    const streams = metricStreams(emf);
    expect(streams).toHaveLength(22);
    for (const metric of ["LagHours", "HoursPlanned", "HoursPublished", "RecordsPublished"]) {
      expect(streams).toContain(`${metric} service=${SERVICE}`);
    }
    expect(streams).toContain(`ApiThrottles service=${SERVICE} entity=machines`);
  });

  it("are not written at all with POWERTOOLS_METRICS_DISABLED=true", async () => {
    const { result, emf } = await observedRun("observed-6", () => undefined, HOURS[1], {
      POWERTOOLS_METRICS_DISABLED: "true",
      DETAILED_METRICS: "true",
    });
    expect(result.status).toBe("SUCCEEDED");
    expect(emf).toEqual([]);
  });

  it("count records, pages, parts, retries and throttles per entity, lag per plan, hours per commit", async () => {
    const { s, result, emf, by, total } = await observedRun("observed-1", (s) => {
      s.simulator.inject({ kind: "status", status: 503, times: 2, entity: "sessions" });
      s.simulator.inject({ kind: "status", status: 429, times: 1, retryAfter: "1", entity: "sessions" });
    });
    expect(result.status).toBe("SUCCEEDED");

    for (const line of emf) {
      expect(line._aws).toBeDefined();
      const [definition] = line._aws?.CloudWatchMetrics ?? [];
      expect(definition?.Namespace).toBe(METRICS_NAMESPACE);
      expect(line.service).toBe(SERVICE);
      expect(line.execution).toBe("observed-1");
      // Every metric is one docs/operations.md documents, with its unit.
      for (const metric of definition?.Metrics ?? []) {
        expect(metric.Unit).toBe(METRIC_UNITS[metric.Name as keyof typeof METRIC_UNITS]);
      }
    }

    const [plan] = by("LagHours");
    expect(plan?._aws?.CloudWatchMetrics[0]?.Dimensions).toEqual([["service"]]);
    expect(plan).toMatchObject({ LagHours: result.plan?.lagHours, HoursPlanned: 2 });

    const collect = by("CollectInvocations");
    // One line per entity-hour an invocation worked on (an invocation collects a run of them).
    expect(collect.length).toBeGreaterThanOrEqual(result.invocations.collect ?? Number.POSITIVE_INFINITY);
    expect(new Set(collect.map((line) => `${line.entity} ${line.hour}`)).size).toBe(
      result.collected?.length ?? -1,
    );
    for (const line of collect) {
      expect(line._aws?.CloudWatchMetrics[0]?.Dimensions).toEqual([["service", "entity"]]);
      expect(HOURS).toContain(line.hour);
    }
    for (const entity of ["sessions", "users"]) {
      const lines = collect.filter((line) => line.entity === entity);
      const items = result.collected?.filter((item) => item.entity === entity) ?? [];
      expect(total(lines, "RecordsCollected")).toBe(
        HOURS.reduce((sum, hourUtc) => sum + s.simulator.recordCount(entity, hourUtc), 0),
      );
      expect(total(lines, "PagesFetched")).toBe(items.reduce((sum, item) => sum + item.pages, 0));
      expect(total(lines, "PartsWritten")).toBe(items.reduce((sum, item) => sum + item.parts, 0));
    }
    expect(total(collect, "ApiRetries")).toBe(3);
    expect(total(collect, "ApiThrottles")).toBe(1);
    expect(
      total(
        collect.filter((line) => line.entity === "users"),
        "ApiRetries",
      ),
    ).toBe(0);

    const [commit] = by("HoursPublished");
    expect(commit).toMatchObject({
      HoursPublished: 2,
      RecordsPublished: HOURS.reduce(
        (sum, hourUtc) =>
          sum + s.simulator.recordCount("sessions", hourUtc) + s.simulator.recordCount("users", hourUtc),
        0,
      ),
    });
  });

  it("are published by an invocation that fails too, with the retries that made it fail", async () => {
    const { result, by } = await observedRun(
      "observed-2",
      (s) => {
        // Eight 503s in a row exhaust one invocation's attempts; the state machine's Retry runs it again.
        s.simulator.inject({ kind: "status", status: 503, times: 8, entity: "users" });
      },
      HOURS[1],
      // One entity: the invocation fails on its first entity-hour (after another it would hand over instead).
      { DETAILED_METRICS: "true", ENTITIES: "users" },
    );
    expect(result.status).toBe("SUCCEEDED");
    const failed = by("CollectInvocations").filter((line) => !("RecordsCollected" in line));
    expect(failed).toEqual([
      expect.objectContaining({ entity: "users", CollectInvocations: 1, ApiRetries: 7, ApiThrottles: 0 }),
    ]);
  });
});

describe("log lines", () => {
  it("are JSON with level, time, service and execution; paging lines carry entity, hour, page and counts", async () => {
    const { s, result, logs } = await observedRun("observed-3", (s) => {
      s.simulator.inject({ kind: "status", status: 429, times: 1, retryAfter: "1", entity: "users" });
    });
    expect(logs.length).toBeGreaterThan(0);
    for (const line of logs) {
      expect(line).toMatchObject({
        level: expect.stringMatching(/^(INFO|WARN|ERROR)$/),
        message: expect.any(String),
        timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
        service: SERVICE,
        execution: "observed-3",
      });
    }
    const pages = logs.filter((line) => line.message === "fetched page");
    expect(pages.length).toBe(result.collected?.reduce((sum, item) => sum + item.pages, 0));
    for (const line of pages) {
      expect(line).toMatchObject({
        entity: expect.stringMatching(/^(sessions|users)$/),
        hour: expect.stringMatching(/^2026-11-24T(09|10):00:00Z$/),
        page: expect.any(Number),
        records: expect.any(Number),
        total: expect.any(Number),
      });
    }
    expect(logs.find((line) => line.message === "transient Citrix API failure, retrying")).toMatchObject({
      level: "WARN",
      entity: "users",
      reason: "HTTP 429",
    });
    const text = s.logs.join("");
    for (const secret of [s.simulator.clientSecret, ...s.simulator.issuedTokens]) {
      expect(text).not.toContain(secret);
    }
  });

  it("carry the Lambda request id of their invocation, and cold_start on each function's first one only", async () => {
    const { result, logs } = await observedRun("observed-4", () => undefined);
    expect(result.status).toBe("SUCCEEDED");
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    for (const line of logs) {
      expect(line).toMatchObject({
        function_request_id: expect.stringMatching(uuid),
        cold_start: expect.any(Boolean),
      });
    }
    const invocations = Object.values(result.invocations).reduce((sum, count) => sum + count, 0);
    // Every invocation logs, and no two share a request id.
    expect(new Set(logs.map((line) => line.function_request_id)).size).toBe(invocations);
    // Plan, collect and commit each started cold once (one container each in this local run).
    const cold = new Set(logs.filter((line) => line.cold_start).map((line) => line.function_request_id));
    expect(cold.size).toBe(3);
  });
});
