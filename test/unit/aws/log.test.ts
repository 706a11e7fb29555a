import { describe, expect, it } from "vitest";
import { createLogger, type Logger } from "../../../functions/lib/aws/log";

function capture(env: Record<string, string> = {}, base = {}): { log: Logger; lines: () => unknown[] } {
  const written: string[] = [];
  const log = createLogger(base, (line) => written.push(line), "collector-test", env);
  return { log, lines: () => written.map((line) => JSON.parse(line)) };
}

describe("createLogger", () => {
  it("writes one JSON object per line: level, message, timestamp, service, then the bound and given fields", () => {
    const written: string[] = [];
    const log = createLogger({ execution: "run-1" }, (line) => written.push(line), "collector-test", {});
    log.info("fetched page", { page: 3, records: 1000, done: false, next: null, absent: undefined });
    expect(written).toHaveLength(1);
    expect(written[0]?.endsWith("}\n")).toBe(true);
    expect(written[0]?.split("\n")).toHaveLength(2);
    const line = JSON.parse(written[0] ?? "") as Record<string, unknown>;
    expect(Object.keys(line)).toEqual([
      "level",
      "message",
      "timestamp",
      "service",
      "execution",
      "page",
      "records",
      "done",
      "next",
    ]);
    expect(line).toMatchObject({
      level: "INFO",
      message: "fetched page",
      service: "collector-test",
      execution: "run-1",
      page: 3,
      next: null,
    });
    expect(line.timestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  it("binds fields in children without changing the parent", () => {
    const { log, lines } = capture({}, { execution: "run-1" });
    const child = log.child({ entity: "sessions", hour: "2026-11-24T08:00:00Z" });
    child.child({ part: 2 }).warn("part written");
    log.error("commit failed");
    expect(lines()).toEqual([
      expect.objectContaining({
        level: "WARN",
        execution: "run-1",
        entity: "sessions",
        hour: "2026-11-24T08:00:00Z",
        part: 2,
      }),
      expect.not.objectContaining({ entity: expect.anything() }),
    ]);
    expect(lines()[1]).toMatchObject({ level: "ERROR", message: "commit failed", execution: "run-1" });
  });

  it.each([
    [undefined, ["INFO", "WARN", "ERROR"]],
    ["TRACE", ["DEBUG", "INFO", "WARN", "ERROR"]],
    ["DEBUG", ["DEBUG", "INFO", "WARN", "ERROR"]],
    ["INFO", ["INFO", "WARN", "ERROR"]],
    ["WARN", ["WARN", "ERROR"]],
    ["ERROR", ["ERROR"]],
    ["CRITICAL", []],
    ["SILENT", []],
  ])("at POWERTOOLS_LOG_LEVEL=%s writes %j", (level, written) => {
    const { log, lines } = capture(level === undefined ? {} : { POWERTOOLS_LOG_LEVEL: level });
    const child = log.child({ entity: "users" });
    for (const logger of [log, child]) {
      logger.debug("d");
      logger.info("i");
      logger.warn("w");
      logger.error("e");
    }
    expect(lines().map((line) => (line as { level: string }).level)).toEqual([...written, ...written]);
  });

  it("carries the invocation's X-Ray trace id when the Lambda runtime sets one", () => {
    const { log, lines } = capture({
      _X_AMZN_TRACE_ID: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    });
    log.info("traced");
    expect(lines()[0]).toMatchObject({ xray_trace_id: "1-5759e988-bd862e3fe1be46a994272793" });
  });
});
