import { describe, expect, it } from "vitest";
import { phasesOf, type TimelineMark } from "../../../bench/phases";

const begin = (handler: string, atMs: number): TimelineMark => ({ atMs, handler, edge: "begin" });
const end = (handler: string, atMs: number): TimelineMark => ({ atMs, handler, edge: "end" });
const line = (atMs: number, message: string, fields: Record<string, unknown> = {}): TimelineMark => ({
  atMs,
  line: JSON.stringify({ level: "INFO", message, ...fields }),
});
/** A data request answered at `answeredMs` after `ms` in flight, as the Citrix client logs it. */
const answer = (answeredMs: number, ms: number) =>
  line(answeredMs, "Citrix API answered", { level: "DEBUG", status: 200, ms });

describe("phasesOf", () => {
  it("splits one execution of one entity-hour into phases that add up to its wall time", () => {
    const marks = [
      begin("plan", 300),
      end("plan", 450),
      begin("collect", 460),
      line(500, "obtained Citrix API token"),
      // The first request goes out at 510, answered at 710; then two at once, then one.
      answer(710, 200),
      answer(915, 200),
      answer(920, 200),
      line(925, "fetched page"),
      answer(1130, 200),
      end("collect", 1200),
      begin("commit", 1210),
      end("commit", 1300),
    ];
    const phases = phasesOf(marks, 250, 1310);
    if (!phases) throw new Error("no phases");
    expect(phases).toEqual({
      processStart: 250,
      localSetUp: 50,
      plan: 150,
      betweenStates: 10 + 10 + 10,
      token: 40,
      firstPage: 210,
      // Two requests were first in flight at once when the second of them was sent, at 720.
      ramp: 10,
      paging: 410,
      flushAndResult: 70,
      commit: 90,
      // 10 ms before the first request, 5 between the first answer and the next two, 10 before the last.
      idle: 10 + 5 + 10,
      invocations: 1,
      requests: 4,
    });
    const { idle, invocations, requests, ...timed } = phases;
    expect(Object.values(timed).reduce((sum, ms) => sum + ms, 0)).toBe(1310);
  });

  it("sums the collect phases over invocations, with no token where the container held one", () => {
    const marks = [
      begin("plan", 0),
      end("plan", 10),
      begin("collect", 20),
      line(25, "obtained Citrix API token"),
      answer(230, 200),
      end("collect", 240),
      begin("collect", 250),
      answer(460, 200),
      end("collect", 470),
      begin("commit", 480),
      end("commit", 490),
    ];
    const phases = phasesOf(marks, 0, 490);
    if (!phases) throw new Error("no phases");
    expect(phases.token).toBe(5);
    expect(phases.firstPage).toBe(205 + 210);
    expect(phases.ramp).toBe(0);
    expect(phases.paging).toBe(0);
    expect(phases.flushAndResult).toBe(10 + 10);
    expect(phases.idle).toBe(5 + 10);
    expect(phases.betweenStates).toBe(10 + 10 + 10);
    expect(phases.invocations).toBe(2);
    expect(phases.requests).toBe(2);
  });

  it("has no phases when invocations overlapped, and skips lines that are not JSON", () => {
    const overlapping = [begin("plan", 0), end("plan", 10), begin("collect", 20), begin("collect", 30)];
    expect(phasesOf(overlapping, 0, 100)).toBeUndefined();
    const marks = [
      begin("plan", 0),
      end("plan", 10),
      begin("collect", 20),
      line(30, "not JSON {"),
      end("collect", 120),
      begin("commit", 150),
      end("commit", 160),
    ];
    const phases = phasesOf(marks, 0, 170);
    expect(phases?.betweenStates).toBe(10 + 30 + 10);
    // An invocation without requests is all flush and result.
    expect(phases?.flushAndResult).toBe(100);
    expect(phases?.requests).toBe(0);
  });
});
