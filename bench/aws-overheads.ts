import { setTimeout as sleep } from "node:timers/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import type { EngineLatencies } from "../local/state-machine";

/**
 * `npm run bench -- --aws-overheads default`: latencies a deployed execution waits for and the local run has
 * none of, added to it. docs/performance.md ("AWS overheads") gives each figure's source, or says it is an
 * assumption because AWS publishes none.
 */
export interface AwsOverheads extends EngineLatencies {
  /** Per S3 request a function makes (the benchmark's own reading of the feed is not slowed). */
  s3RequestMs: number;
}

export const AWS_OVERHEADS: AwsOverheads = {
  stateTransitionMs: 50,
  warmInvokeMs: 25,
  coldInvokeMs: 300,
  s3RequestMs: 30,
};

/** The names the command line uses for each figure. */
const FIGURES = {
  transition: "stateTransitionMs",
  invoke: "warmInvokeMs",
  cold: "coldInvokeMs",
  s3: "s3RequestMs",
} as const;

/** "default" (AWS_OVERHEADS), or some of "transition=50,invoke=25,cold=300,s3=30" (the others default). */
export function parseAwsOverheads(text: string): AwsOverheads {
  const overheads = { ...AWS_OVERHEADS };
  if (text === "default") return overheads;
  for (const setting of text.split(",")) {
    const [name = "", value = "", ...rest] = setting.split("=");
    const figure = FIGURES[name.trim() as keyof typeof FIGURES];
    const ms = Number(value);
    if (!figure || rest.length > 0 || value.trim() === "" || !Number.isFinite(ms) || ms < 0) {
      throw new Error(
        `--aws-overheads takes "default" or milliseconds as ${Object.keys(FIGURES)
          .map((key) => `${key}=N`)
          .join(",")}, not "${setting}"`,
      );
    }
    overheads[figure] = ms;
  }
  return overheads;
}

/** How a run's overheads read in a table's title. */
export function describeAwsOverheads(overheads: AwsOverheads): string {
  return Object.entries(FIGURES)
    .map(([name, figure]) => `${name} ${overheads[figure]} ms`)
    .join(", ");
}

/** `client`, each of whose requests first waits `ms` (once per command, as a round trip to S3 would). */
export function withRequestLatency(client: S3Client, ms: number): S3Client {
  if (ms <= 0) return client;
  client.middlewareStack.add(
    (next) => async (args) => {
      await sleep(ms);
      return next(args);
    },
    { step: "initialize", name: "awsLikeRequestLatency" },
  );
  return client;
}
