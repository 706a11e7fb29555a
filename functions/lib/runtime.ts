import { S3Client } from "@aws-sdk/client-s3";
import { CitrixClient } from "./citrix-client";
import { type CollectorConfig, type Env, loadConfig } from "./config";
import { createLogger, type Logger } from "./log";
import { S3Store } from "./s3-store";

/** What every handler works with; built once per Lambda container and reused by warm invocations. */
export interface Runtime {
  config: CollectorConfig;
  store: S3Store;
  citrix: CitrixClient;
  log: Logger;
}

export function createRuntime(config: CollectorConfig, s3: S3Client, log: Logger = createLogger()): Runtime {
  return {
    config,
    store: new S3Store(s3, config.bucket),
    citrix: new CitrixClient({
      credentials: config.citrix,
      apiBase: config.citrix.apiBase,
      tokenUrl: config.citrix.tokenUrl,
      timeoutMs: config.httpTimeoutMs,
    }),
    log,
  };
}

/** The SDK reads AWS_ENDPOINT_URL_S3 itself; S3-compatible servers there need path-style addressing. */
export function s3ClientFor(env: Env): S3Client {
  return new S3Client({ forcePathStyle: Boolean(env.AWS_ENDPOINT_URL_S3) });
}

/**
 * A lazily built runtime: config errors surface as a ConfigurationError from the handler (a named error
 * the console shows) instead of a Lambda init crash, and a failed build is retried on the next call.
 */
export function runtimeFromEnvironment(
  env: Env = process.env,
  s3: (env: Env) => S3Client = s3ClientFor,
  log?: Logger,
): () => Runtime {
  let runtime: Runtime | undefined;
  return () => {
    runtime ??= createRuntime(loadConfig(env), s3(env), log);
    return runtime;
  };
}
