import { S3Client } from "@aws-sdk/client-s3";
import { SFNClient } from "@aws-sdk/client-sfn";
import type { CliContext } from "./context";

/**
 * The process's own context for the CLI. A module of its own because the AWS SDK takes longer to load than
 * `--help` may take to print: main loads it when a command runs.
 */
export function processContext(): CliContext {
  return {
    env: process.env,
    cwd: process.cwd(),
    stdout: process.stdout,
    stderr: process.stderr,
    now: Date.now,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    // The SDK reads credentials, AWS_ENDPOINT_URL_SFN and AWS_ENDPOINT_URL_S3 from the environment itself.
    sfn: (region) => new SFNClient({ region }),
    s3: (region) =>
      new S3Client({
        region,
        followRegionRedirects: true,
        // S3-compatible servers at AWS_ENDPOINT_URL_S3 need path-style addressing.
        forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL_S3),
      }),
  };
}
