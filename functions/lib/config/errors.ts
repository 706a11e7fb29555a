/**
 * The collector's named errors. Step Functions matches Retry/Catch on `Error`, which is the thrown
 * error's `name`; bundlers rename classes, so every class hard-codes its name instead of relying on
 * `constructor.name`. `retryable` mirrors what the state machine does with it (see the ASL Retry blocks).
 */
export abstract class CollectorError extends Error {
  abstract override readonly name: string;
  abstract readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Configuration is invalid, or points nowhere (an unknown host, no token endpoint at TOKEN_URL, an unreadable
 * CITRIX_SECRET_ARN): fix the Lambda environment or the secret, then redrive.
 */
export class ConfigurationError extends CollectorError {
  override readonly name = "ConfigurationError";
  readonly retryable = false;
}

/** A state's input did not match its contract (a hand-started execution with a bad range, or a bug). */
export class InvalidInputError extends CollectorError {
  override readonly name = "InvalidInputError";
  readonly retryable = false;
}

/** The Citrix API refused the credentials (token endpoint 400/401/403, a 403, or a second 401 in a row). */
export class CitrixAuthError extends CollectorError {
  override readonly name = "CitrixAuthError";
  readonly retryable = false;
}

/** Throttling, 5xx, resets or timeouts outlasted this invocation's retry budget: the Task retries later. */
export class CitrixUnavailableError extends CollectorError {
  override readonly name = "CitrixUnavailableError";
  readonly retryable = true;
  /**
   * When the next attempt may go out (epoch ms): what Retry-After asked for, or the backoff this invocation
   * had no time or attempts left to wait. An invocation that hands over carries it to the next one.
   */
  readonly retryAtMs: number | undefined;
  constructor(message: string, options?: { cause?: unknown; retryAtMs?: number }) {
    super(message, options);
    this.retryAtMs = options?.retryAtMs;
  }
}

/** The API answered something that is not an OData page (not JSON, no `value` list, or a non-retryable 4xx). */
export class CitrixResponseError extends CollectorError {
  override readonly name = "CitrixResponseError";
  readonly retryable = false;
}

/**
 * The API's paging made no progress: it ignored `$skip` and served a full page again, its `@odata.nextLink`
 * pointed at itself or back at a page already read, or an entity-hour ran past MAX_PAGES_PER_ENTITY_HOUR.
 * Retrying would loop the same way, so an operator looks at what the message says the API did.
 */
export class CitrixPagingError extends CollectorError {
  override readonly name = "CitrixPagingError";
  readonly retryable = false;
}

/** S3 failed in a way worth retrying (throttling, 5xx, network). */
export class StorageUnavailableError extends CollectorError {
  override readonly name = "StorageUnavailableError";
  readonly retryable = true;
}

/** S3 refused the request for a reason retrying cannot fix (access denied, missing bucket). */
export class StorageError extends CollectorError {
  override readonly name = "StorageError";
  readonly retryable = false;
}

/** Secrets Manager failed in a way worth retrying (throttling, 5xx, network) while reading CITRIX_SECRET_ARN. */
export class SecretsManagerUnavailableError extends CollectorError {
  override readonly name = "SecretsManagerUnavailableError";
  readonly retryable = true;
}

/**
 * An hour's manifest names staging parts that are gone while the hour is not published (staging deleted by
 * hand or expired by a lifecycle rule): it cannot be finished from staging, and the message says what to delete.
 */
export class StagingLostError extends CollectorError {
  override readonly name = "StagingLostError";
  readonly retryable = false;
}

/** Every error class the code throws; the definition test derives the names Retry/Catch may match. */
export const COLLECTOR_ERRORS = [
  ConfigurationError,
  InvalidInputError,
  CitrixAuthError,
  CitrixUnavailableError,
  CitrixResponseError,
  StorageUnavailableError,
  StorageError,
  SecretsManagerUnavailableError,
  StagingLostError,
  CitrixPagingError,
] as const;
