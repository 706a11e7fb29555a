import { describe, expect, it } from "vitest";
import { hoursToCollect, isBackfill, parseLease } from "../../../functions/lib/feed/plan-run";

const H = (hour: number) => `2026-11-24T${String(hour).padStart(2, "0")}:00:00Z`;
const lease = (runId: string, hours: string[], status: "running" | "ended" | "unknown") => ({
  lease: { runId, hours, plannedAt: "t" },
  status,
});

describe("hoursToCollect", () => {
  it("collects every due hour nobody published or leases, oldest first", () => {
    expect(hoursToCollect([H(8), H(9)], [], [])).toEqual({ hours: [H(8), H(9)], deferred: {} });
  });

  it("leaves out hours published for every entity, whoever leases them", () => {
    const running = [lease("other-1", [H(9)], "running")];
    expect(hoursToCollect([H(8), H(9), H(10)], [H(9), H(10)], running)).toEqual({
      hours: [H(8)],
      deferred: {},
    });
  });

  it("defers the hours a running execution leases to it, each holder with its own, in order", () => {
    const leases = [lease("other-1", [H(8), H(10)], "running"), lease("other-2", [H(9)], "running")];
    expect(hoursToCollect([H(8), H(9), H(10), H(11)], [], leases)).toEqual({
      hours: [H(11)],
      deferred: { "other-1": [H(8), H(10)], "other-2": [H(9)] },
    });
  });

  it("collects the hours of an execution that ended, or whose status is unknown", () => {
    const leases = [lease("ended-1", [H(8)], "ended"), lease("unknown-1", [H(9)], "unknown")];
    expect(hoursToCollect([H(8), H(9)], [], leases)).toEqual({ hours: [H(8), H(9)], deferred: {} });
  });
});

describe("parseLease", () => {
  it("reads a lease with its run id and hours", () => {
    const body = JSON.stringify({ runId: "run-1", hours: [H(8)], plannedAt: "t" });
    expect(parseLease(body)).toEqual({ runId: "run-1", hours: [H(8)], plannedAt: "t" });
  });

  it("is undefined for an object that is gone or is not a lease", () => {
    for (const body of [
      undefined,
      "not json",
      "null",
      "{}",
      '{"runId":1,"hours":[]}',
      '{"runId":"run-1"}',
      '{"runId":"run-1","hours":"08"}',
    ])
      expect(parseLease(body), String(body)).toBeUndefined();
  });
});

describe("isBackfill", () => {
  it("is a request with a backfill key, whatever its value (the request's schema checks it)", () => {
    expect(isBackfill({ backfill: { from: H(8), to: H(9) } })).toBe(true);
    expect(isBackfill({ backfill: null })).toBe(true);
  });

  it("is not the scheduler's {}, the console's default input, nor anything but an object", () => {
    for (const request of [
      {},
      { Comment: "Insert your JSON here" },
      undefined,
      null,
      "backfill",
      ["backfill"],
    ])
      expect(isBackfill(request), JSON.stringify(request)).toBe(false);
  });
});
