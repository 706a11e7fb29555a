import { describe, expect, it } from "vitest";
import {
  collectInputSchema,
  parseStateInput,
  planInputSchema,
} from "../../../functions/lib/config/contracts";
import { InvalidInputError } from "../../../functions/lib/config/errors";

const valid = {
  runId: "3f2a9c1e-0b7d-4e8a-9f10-2c3d4e5f6a7b",
  entity: "sessions",
  hourUtc: "2026-11-24T08:00:00Z",
};

function rejection(input: unknown, state = "Collect"): Error {
  try {
    parseStateInput(collectInputSchema, input, state);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as Error;
  }
  throw new Error("parseStateInput accepted the input");
}

describe("parseStateInput(collectInputSchema)", () => {
  it("passes a first-invocation input through", () => {
    expect(parseStateInput(collectInputSchema, valid, "Collect")).toEqual(valid);
  });

  it("passes a continuation with a $skip cursor", () => {
    const input = {
      ...valid,
      progress: {
        cursor: { skip: 2000 },
        segments: [{ attempt: "0a1b2c3d", firstPart: 0, parts: 1, compressed: false }],
        parts: 1,
        records: 2000,
        pages: 2,
        invocations: 1,
        largestPage: 1000,
      },
    };
    expect(parseStateInput(collectInputSchema, input, "Collect")).toEqual(input);
  });

  it("passes a continuation with a nextLink cursor", () => {
    const input = {
      ...valid,
      progress: {
        cursor: { nextLink: "https://api.cloud.com/casodata/sessions?$skiptoken=x" },
        segments: [],
        parts: 0,
        records: 0,
        pages: 0,
        invocations: 3,
        largestPage: 1000,
      },
    };
    expect(parseStateInput(collectInputSchema, input, "Collect")).toEqual(input);
  });

  it("throws an InvalidInputError named for Step Functions", () => {
    const error = rejection({ ...valid, hourUtc: "2026-11-24T08:30:00Z" });
    expect(error.name).toBe("InvalidInputError");
    expect(error.message).toContain("Collect");
    expect(error.message).toContain("hourUtc");
  });

  it.each([
    ["hourUtc", { ...valid, hourUtc: "2026-11-24T08:00:00" }],
    ["entity", { ...valid, entity: "bad name" }],
    ["entity", { ...valid, entity: "1sessions" }],
    ["runId", { entity: "sessions", hourUtc: "2026-11-24T08:00:00Z" }],
    [
      "progress.records",
      {
        ...valid,
        progress: {
          cursor: { skip: 0 },
          segments: [],
          parts: 0,
          records: -1,
          pages: 0,
          invocations: 0,
          largestPage: 0,
        },
      },
    ],
    [
      "progress.parts",
      {
        ...valid,
        progress: {
          cursor: { skip: 0 },
          segments: [],
          parts: 1.5,
          records: 0,
          pages: 0,
          invocations: 0,
          largestPage: 0,
        },
      },
    ],
    [
      "progress.cursor",
      {
        ...valid,
        progress: {
          cursor: {},
          segments: [],
          parts: 0,
          records: 0,
          pages: 0,
          invocations: 0,
          largestPage: 0,
        },
      },
    ],
    [
      "progress.invocations",
      { ...valid, progress: { cursor: { skip: 0 }, segments: [], parts: 0, records: 0, pages: 0 } },
    ],
  ])("names the bad field %s", (path, input) => {
    expect(rejection(input).message).toMatch(new RegExp(`(^|[ ;:])${path.replace(".", "\\.")}\\b`));
  });

  it("names every bad field at once", () => {
    const error = rejection({ runId: "bad id", entity: "bad name", hourUtc: "nope" });
    expect(error.message).toContain("runId");
    expect(error.message).toContain("entity");
    expect(error.message).toContain("hourUtc");
  });

  it("says (input) when the input is not an object", () => {
    expect(rejection(null).message).toContain("(input)");
    expect(rejection("hello").message).toContain("(input)");
  });
});

describe("runId rules", () => {
  const parseRunId = (runId: unknown) => parseStateInput(collectInputSchema, { ...valid, runId }, "Collect");

  it.each(["a", "x".repeat(80), "3f2a9c1e-0b7d-4e8a-9f10-2c3d4e5f6a7b", "manual_backfill-2026"])(
    "accepts %j",
    (runId) => {
      expect(parseRunId(runId).runId).toBe(runId);
    },
  );

  it.each([
    ["empty", ""],
    ["81 characters", "x".repeat(81)],
    ["a slash (would escape the staging prefix)", "run/../other"],
    ["a space", "run 1"],
    ["a dot, which Step Functions allows", "nightly.1"],
    ["a number", 42],
  ])("rejects %s", (_why, runId) => {
    expect(() => parseRunId(runId)).toThrow(InvalidInputError);
    expect(() => parseRunId(runId)).toThrow(/runId/);
  });

  it("says which rule it applies and why, not that the name is no execution name", () => {
    expect(() => parseRunId("nightly.1")).toThrow(
      "Collect received invalid input: runId must be 1–80 letters, digits, - or _ (stricter than Step Functions: " +
        "the name goes into S3 keys and CloudWatch Logs); start it again with such a name",
    );
  });

  it("applies to the Plan state's executionName too", () => {
    expect(parseStateInput(planInputSchema, { executionName: "abc-1" }, "Plan")).toEqual({
      executionName: "abc-1",
    });
    expect(() => parseStateInput(planInputSchema, { executionName: "a/b" }, "Plan")).toThrow(/executionName/);
  });
});
