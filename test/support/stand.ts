import type { S3Client } from "@aws-sdk/client-s3";
import type { Env } from "../../functions/lib/config";
import { S3Store } from "../../functions/lib/s3-store";
import {
  type CitrixSimulator,
  type SimulatorOptions,
  startCitrixSimulator,
} from "../../local/citrix-simulator";
import { type LocalCollectionOptions, runLocalCollection } from "../../local/collection";
import { type LocalS3, startLocalS3 } from "../../local/s3-server";

export const BUCKET = "collector-test";
export const FEED_PREFIX = "citrix_analytics";
export const STATE_KEY = `_citrix_collector/${FEED_PREFIX}/state.json`;

export interface Envelope {
  citrix_entity: string;
  citrix_hour_utc: string;
  collection_timestamp: string;
  raw: Record<string, unknown>;
}

/** The real stand-ins a test runs against: the Citrix simulator and an S3 server on 127.0.0.1. */
export interface Stand {
  simulator: CitrixSimulator;
  s3: LocalS3;
  client: S3Client;
  store: S3Store;
  env: Env;
  logs: string[];
  run(
    executionName: string,
    options?: Partial<LocalCollectionOptions>,
  ): ReturnType<typeof runLocalCollection>;
  /** Every envelope under the feed prefix for an entity-hour, in part and line order. */
  feed(entity: string, hourUtc: string): Promise<Envelope[]>;
  keys(prefix: string): Promise<string[]>;
  watermark(): Promise<string | null>;
  close(): Promise<void>;
}

export async function startStand(options: {
  simulator?: SimulatorOptions;
  env?: Env;
  now: number;
}): Promise<Stand> {
  const simulator = await startCitrixSimulator(options.simulator);
  const s3 = await startLocalS3({ buckets: [BUCKET] });
  const client = s3.client();
  const store = new S3Store(client, BUCKET);
  const logs: string[] = [];
  const env: Env = {
    S3_BUCKET: BUCKET,
    S3_PREFIX: FEED_PREFIX,
    API_BASE: simulator.apiBase,
    CITRIX_CUSTOMER_ID: simulator.customerId,
    CITRIX_CLIENT_ID: simulator.clientId,
    CITRIX_CLIENT_SECRET: simulator.clientSecret,
    TOKEN_URL: simulator.tokenUrl,
    HTTP_TIMEOUT_MS: "5000",
    ...options.env,
  };
  return {
    simulator,
    s3,
    client,
    store,
    env,
    logs,
    run: (executionName, overrides = {}) =>
      runLocalCollection({
        env,
        s3: client,
        executionName,
        now: () => options.now,
        retryPauseMs: 5,
        logSink: (line) => logs.push(line),
        ...overrides,
      }),
    async feed(entity, hourUtc) {
      const [date, time] = hourUtc.split("T") as [string, string];
      const [year, month, day] = date.split("-");
      const prefix = `${FEED_PREFIX}/${entity}/year=${year}/month=${month}/day=${day}/hour=${time.slice(0, 2)}/`;
      const envelopes: Envelope[] = [];
      for (const key of (await store.listKeys(prefix)).sort()) {
        const object = await store.getText(key);
        const body = object?.body ?? "";
        if (body !== "" && !body.endsWith("\n")) throw new Error(`${key} does not end with a newline`);
        for (const line of body.split("\n").slice(0, -1)) envelopes.push(JSON.parse(line) as Envelope);
      }
      return envelopes;
    },
    keys: (prefix) => store.listKeys(prefix),
    async watermark() {
      const state = await store.getText(STATE_KEY);
      return state ? (JSON.parse(state.body) as { last_hour_utc: string }).last_hour_utc : null;
    },
    async close() {
      await simulator.close();
      await s3.close();
    },
  };
}
