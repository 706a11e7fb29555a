import { gunzipSync } from "node:zlib";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { CitrixClient, type CitrixClientOptions } from "../../functions/lib/citrix/citrix-client";
import type { CollectOutput } from "../../functions/lib/config/contracts";
import { stagingPartKey } from "../../functions/lib/feed/keys";
import type { CitrixSimulator } from "../../stand-ins/citrix-simulator";

/** A Citrix client of the simulator `api`, with its credentials; `options` sets timeouts, clock and backoff. */
export function simulatorClient(
  api: CitrixSimulator,
  options: Partial<CitrixClientOptions> & Pick<CitrixClientOptions, "timeoutMs">,
): CitrixClient {
  return new CitrixClient({
    credentials: {
      origin: "CITRIX_CLIENT_SECRET",
      get: async () => ({
        customerId: api.customerId,
        clientId: api.clientId,
        clientSecret: api.clientSecret,
      }),
      forget: () => undefined,
    },
    apiBase: api.apiBase,
    tokenUrl: api.tokenUrl,
    ...options,
  });
}

/** The `raw` records in the staging parts a collect output names, in order. */
export async function stagedRecords(
  s3: S3Client,
  bucket: string,
  controlPrefix: string,
  runId: string,
  output: CollectOutput,
): Promise<unknown[]> {
  const records: unknown[] = [];
  for (const segment of output.progress?.segments ?? [])
    for (let part = segment.firstPart; part < segment.firstPart + segment.parts; part++) {
      const key = stagingPartKey(
        controlPrefix,
        runId,
        output.entity,
        output.hourUtc,
        segment.attempt,
        part,
        segment.compressed,
      );
      const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const bytes = Buffer.from((await object.Body?.transformToByteArray()) ?? []);
      const text = (segment.compressed ? gunzipSync(bytes) : bytes).toString("utf8");
      for (const line of text.split("\n").slice(0, -1))
        records.push((JSON.parse(line) as { raw: unknown }).raw);
    }
  return records;
}
