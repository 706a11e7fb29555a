import { describe, expect, it } from "vitest";
import { AWS_OVERHEADS, describeAwsOverheads, parseAwsOverheads } from "../../../bench/aws-overheads";

describe("parseAwsOverheads (npm run bench -- --aws-overheads)", () => {
  it("takes 'default' as the documented figures", () => {
    expect(parseAwsOverheads("default")).toEqual(AWS_OVERHEADS);
  });

  it("sets the figures named and keeps the others' defaults", () => {
    expect(parseAwsOverheads("transition=10, s3=0")).toEqual({
      ...AWS_OVERHEADS,
      stateTransitionMs: 10,
      s3RequestMs: 0,
    });
    expect(parseAwsOverheads("invoke=5,cold=900")).toEqual({
      ...AWS_OVERHEADS,
      warmInvokeMs: 5,
      coldInvokeMs: 900,
    });
  });

  it.each(["lambda=5", "transition", "transition=", "s3=-1", "cold=fast", "s3=1=2"])(
    "refuses %s, naming what it takes",
    (text) => {
      expect(() => parseAwsOverheads(text)).toThrow(/transition=N,invoke=N,cold=N,s3=N/);
    },
  );

  it("describes a run's figures for a table's title", () => {
    expect(
      describeAwsOverheads({ stateTransitionMs: 1, warmInvokeMs: 2, coldInvokeMs: 3, s3RequestMs: 4 }),
    ).toBe("transition 1 ms, invoke 2 ms, cold 3 ms, s3 4 ms");
  });
});
