import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withRequestLatency } from "../../../bench/aws-overheads";
import { type LocalS3, startLocalS3 } from "../../../stand-ins/s3-server";

const BUCKET = "overheads";

describe("withRequestLatency (the benchmark's AWS-like S3 latency)", () => {
  let s3: LocalS3;
  beforeAll(async () => {
    s3 = await startLocalS3({ buckets: [BUCKET] });
  });
  afterAll(() => s3.close());

  // A lower bound only: a slow machine makes requests longer, never shorter.
  it("makes each request of the client wait the latency before it is sent", async () => {
    const client = withRequestLatency(s3.client(), 80);
    const begin = performance.now();
    for (let n = 0; n < 3; n++) await client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    expect(performance.now() - begin).toBeGreaterThanOrEqual(3 * 80);
    client.destroy();
  });

  it("leaves a client as it is at 0 ms", () => {
    const client = s3.client();
    const before = client.middlewareStack.identify().length;
    expect(withRequestLatency(client, 0).middlewareStack.identify()).toHaveLength(before);
    expect(withRequestLatency(client, 5).middlewareStack.identify()).toHaveLength(before + 1);
    client.destroy();
  });
});
