import { gunzipSync } from "node:zlib";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { expect } from "vitest";
import { S3Store } from "../../functions/lib/aws/s3-store";
import type { Env } from "../../functions/lib/config/config";
import type { PageWindowHint } from "../../functions/lib/config/contracts";
import { pageWindowHintKey } from "../../functions/lib/feed/keys";
import { type LocalCollectionOptions, runLocalCollection } from "../../local/collection";
import {
  type CitrixSimulator,
  type SimulatorOptions,
  startCitrixSimulator,
} from "../../stand-ins/citrix-simulator";
import { type LocalS3, startLocalS3 } from "../../stand-ins/s3-server";
import { type LocalSecretsManager, startLocalSecretsManager } from "../../stand-ins/secrets-manager-server";

export const BUCKET = "collector-test";
export const FEED_PREFIX = "citrix_analytics";
export const STATE_KEY = `_citrix_collector/${FEED_PREFIX}/state.json`;
/** Where Plan and the collector read the page window's hint (see planIterations). */
export const PAGE_WINDOW_HINT_KEY = pageWindowHintKey(`_citrix_collector/${FEED_PREFIX}`);

/** A page window's hint learned an hour before `nowMs`: a limit the API enforced unless `fields` say not. */
export function pageWindowHint(nowMs: number, fields: Partial<PageWindowHint> = {}): string {
  return JSON.stringify({
    limit: 1,
    throttled: true,
    probeRounds: 32,
    at: new Date(nowMs - 3_600_000).toISOString(),
    ...fields,
  } satisfies PageWindowHint);
}

export interface Envelope {
  citrix_entity: string;
  citrix_hour_utc: string;
  collection_timestamp: string;
  raw: Record<string, unknown>;
}

/**
 * The real stand-ins a test runs against: the Citrix simulator, an S3 server and a Secrets Manager server on
 * 127.0.0.1. The Citrix client's backoff pauses are recorded in `sleeps` instead of waited out.
 */
export interface Stand {
  simulator: CitrixSimulator;
  s3: LocalS3;
  secrets: LocalSecretsManager;
  client: S3Client;
  store: S3Store;
  env: Env;
  logs: string[];
  sleeps: number[];
  run(
    executionName: string,
    options?: Partial<LocalCollectionOptions>,
  ): ReturnType<typeof runLocalCollection>;
  /** Every NDJSON line (without its "\n") under the feed prefix for an entity-hour, in part and line order. */
  feedLines(entity: string, hourUtc: string): Promise<string[]>;
  /** The same lines, parsed. */
  feed(entity: string, hourUtc: string): Promise<Envelope[]>;
  keys(prefix: string): Promise<string[]>;
  watermark(): Promise<string | null>;
  close(): Promise<void>;
}

export async function startStand(options: {
  simulator?: SimulatorOptions;
  env?: Env;
  now: number;
  /** Where the collector reads the simulator's credentials: CITRIX_* variables, or a secret (CITRIX_SECRET_ARN). */
  credentials?: "environment" | "secretsManager";
}): Promise<Stand> {
  const simulator = await startCitrixSimulator(options.simulator);
  const s3 = await startLocalS3({ buckets: [BUCKET] });
  const secrets = await startLocalSecretsManager();
  const client = s3.client();
  const store = new S3Store(client, BUCKET);
  const logs: string[] = [];
  const sleeps: number[] = [];
  const credentials: Env =
    options.credentials === "secretsManager"
      ? {
          CITRIX_SECRET_ARN: secrets.putSecret(
            "citrix-analytics-collector",
            JSON.stringify({
              CITRIX_CUSTOMER_ID: simulator.customerId,
              CITRIX_CLIENT_ID: simulator.clientId,
              CITRIX_CLIENT_SECRET: simulator.clientSecret,
            }),
          ),
        }
      : {
          CITRIX_CUSTOMER_ID: simulator.customerId,
          CITRIX_CLIENT_ID: simulator.clientId,
          CITRIX_CLIENT_SECRET: simulator.clientSecret,
        };
  const env: Env = {
    S3_BUCKET: BUCKET,
    S3_PREFIX: FEED_PREFIX,
    API_BASE: simulator.apiBase,
    ...credentials,
    TOKEN_URL: simulator.tokenUrl,
    HTTP_TIMEOUT_MS: "5000",
    ...options.env,
  };
  async function feedLines(entity: string, hourUtc: string): Promise<string[]> {
    const [date, time] = hourUtc.split("T") as [string, string];
    const [year, month, day] = date.split("-");
    const prefix = `${FEED_PREFIX}/${entity}/year=${year}/month=${month}/day=${day}/hour=${time.slice(0, 2)}/`;
    const lines: string[] = [];
    for (const key of (await store.listKeys(prefix)).sort()) {
      const body = await readFeedObject(client, key);
      if (body !== "" && !body.endsWith("\n")) throw new Error(`${key} does not end with a newline`);
      for (const line of body.split("\n").slice(0, -1)) lines.push(line);
    }
    return lines;
  }

  return {
    simulator,
    s3,
    secrets,
    client,
    store,
    env,
    logs,
    sleeps,
    run: (executionName, overrides = {}) =>
      runLocalCollection({
        env,
        s3: (credentials) => (credentials ? s3.client(credentials) : client),
        secretsManager: (_region, credentials) => secrets.client(credentials ? { credentials } : {}),
        executionName,
        now: () => options.now,
        retryPauseMs: 5,
        logSink: (line) => logs.push(line),
        ...overrides,
        citrix: {
          ...overrides.citrix,
          client: {
            sleep: async (ms) => {
              sleeps.push(ms);
            },
            ...overrides.citrix?.client,
          },
        },
      }),
    feedLines,
    async feed(entity, hourUtc) {
      return (await feedLines(entity, hourUtc)).map((line) => JSON.parse(line) as Envelope);
    },
    keys: (prefix) => store.listKeys(prefix),
    async watermark() {
      const state = await store.getText(STATE_KEY);
      return state ? (JSON.parse(state.body) as { last_hour_utc: string }).last_hour_utc : null;
    },
    async close() {
      await simulator.close();
      await s3.close();
      await secrets.close();
    },
  };
}

/** A feed object's text; `.ndjson.gz` parts are gunzipped, as the SecOps feed does. */
async function readFeedObject(client: S3Client, key: string): Promise<string> {
  const object = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const bytes = Buffer.from((await object.Body?.transformToByteArray()) ?? []);
  return (key.endsWith(".gz") ? gunzipSync(bytes) : bytes).toString("utf8");
}

/** The feed holds exactly the records the simulator serves for an entity-hour, in order, each once. */
export async function expectFeedMatchesSimulator(
  stand: Stand,
  entity: string,
  hourUtc: string,
): Promise<void> {
  const lines = await stand.feedLines(entity, hourUtc);
  const envelopes = lines.map((line) => JSON.parse(line) as Envelope);
  const records = stand.simulator.records(entity, hourUtc);
  expect(envelopes.map((line) => line.raw)).toEqual(records);
  // Byte for byte: each line is the envelope around the record exactly as the simulator wrote it.
  expect(lines).toEqual(envelopes.map((line, i) => JSON.stringify({ ...line, raw: records[i] })));
  for (const line of envelopes) {
    expect(Object.keys(line)).toEqual(["citrix_entity", "citrix_hour_utc", "collection_timestamp", "raw"]);
    expect(line.citrix_entity).toBe(entity);
    expect(line.citrix_hour_utc).toBe(hourUtc);
    expect(line.collection_timestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  }
}
