import { S3Client } from "@aws-sdk/client-s3";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { createLogger, type Logger } from "./aws/log";
import { S3Store } from "./aws/s3-store";
import { CitrixClient, type CitrixClientTuning } from "./citrix/citrix-client";
import { citrixCredentialsSource, type SecretsManagerFactory } from "./citrix/citrix-credentials";
import { type CollectorConfig, type ConfigWithoutCitrix, type Env, loadConfig } from "./config/config";

/**
 * What the plan and commit functions work with: S3 only. They are deployed without the Citrix credentials,
 * so their configuration is loaded without them. Built once per Lambda container, reused when warm.
 */
export interface StoreRuntime {
  config: ConfigWithoutCitrix;
  store: S3Store;
  log: Logger;
}

/** What the collect function works with: the store and the Citrix API client. */
export interface Runtime extends StoreRuntime {
  config: CollectorConfig;
  citrix: CitrixClient;
}

/** What the Citrix client is built over besides the configuration; tests point these at local stand-ins. */
export interface CitrixDeps {
  /** Builds the client that reads CITRIX_SECRET_ARN; only called when the collect function needs a token. */
  secretsManager?: SecretsManagerFactory;
  /** Clock, transport and backoff of the Citrix client (tests skip real waits). */
  client?: CitrixClientTuning;
}

export function createRuntime(
  config: CollectorConfig,
  s3: S3Client,
  log: Logger = createLogger(),
  citrix: CitrixDeps = {},
): Runtime {
  return {
    config,
    store: new S3Store(s3, config.bucket),
    citrix: new CitrixClient({
      ...citrix.client,
      credentials: citrixCredentialsSource(
        config.citrix.credentials,
        citrix.secretsManager ?? secretsManagerClientFor,
      ),
      apiBase: config.citrix.apiBase,
      tokenUrl: config.citrix.tokenUrl,
      timeoutMs: config.httpTimeoutMs,
    }),
    log,
  };
}

/**
 * The SDK reads AWS_ENDPOINT_URL_S3 itself; S3-compatible servers there need path-style addressing. Five
 * attempts per request (the SDK's default is three) ride out a short burst of 5xx or SlowDown inside the
 * invocation; longer trouble surfaces as StorageUnavailableError, which the Task's Retry backs off from.
 * Credentials are the SDK's own (the Lambda role's) unless a local run signs with a role of its twin.
 */
export function s3ClientFor(
  env: Env,
  credentials?: { accessKeyId: string; secretAccessKey: string },
): S3Client {
  return new S3Client({ forcePathStyle: Boolean(env.AWS_ENDPOINT_URL_S3), maxAttempts: 5, credentials });
}

/**
 * The secret is read in its own region (from its ARN), which may differ from the Lambda's. The SDK reads
 * AWS_ENDPOINT_URL_SECRETS_MANAGER itself; the timeouts keep a hung connection from eating the invocation.
 */
export function secretsManagerClientFor(region: string): SecretsManagerClient {
  return new SecretsManagerClient({
    region,
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 10_000 },
  });
}

/**
 * A lazily built runtime: config errors surface as a ConfigurationError from the handler (a named error
 * the console shows) instead of a Lambda init crash, and a failed build is retried on the next call.
 */
export function runtimeFromEnvironment(
  env: Env = process.env,
  s3: (env: Env) => S3Client = s3ClientFor,
  log?: Logger,
  citrix?: CitrixDeps,
): () => Runtime {
  return lazily(() => createRuntime(loadConfig(env), s3(env), log, citrix));
}

/** The same for the plan and commit functions, whose environment holds no Citrix setting. */
export function storeRuntimeFromEnvironment(
  env: Env = process.env,
  s3: (env: Env) => S3Client = s3ClientFor,
  log: Logger = createLogger(),
): () => StoreRuntime {
  return lazily(() => {
    const config = loadConfig(env, { citrix: false });
    return { config, store: new S3Store(s3(env), config.bucket), log };
  });
}

function lazily<T>(build: () => T): () => T {
  let built: T | undefined;
  return () => {
    built ??= build();
    return built;
  };
}
