import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { StorageError, StorageUnavailableError } from "../config/errors";

export interface StoredObject {
  body: string;
  etag: string;
}

export type ConditionalWrite = { ifNoneMatch: "*" } | { ifMatch: string } | Record<string, never>;

export type WriteResult = { written: true; etag: string } | { written: false };

/** What a create-only copy did: wrote the destination, found it already there, or found no source. */
export type CopyResult = "copied" | "exists" | "no-source";

/**
 * A 409 ConditionalRequestConflict means another conditional write to the key is in flight: S3 asks for the
 * request to be repeated, after which it either succeeds or fails its precondition (412).
 */
const CONFLICT_ATTEMPTS = 5;
const CONFLICT_PAUSE_MS = 200;

/**
 * The collector's view of one S3 bucket. Only a conditional write that asked for it reports a lost
 * precondition (HTTP 412) as `{ written: false }` / `"exists"`: there losing the race is an expected outcome.
 * Every other failure is an error, classified like S3 means it (see storageError).
 */
export class S3Store {
  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    private readonly pause: (ms: number) => Promise<void> = (ms) =>
      new Promise((resolve) => setTimeout(resolve, ms)),
  ) {}

  async getText(key: string): Promise<StoredObject | undefined> {
    try {
      const result = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return { body: (await result.Body?.transformToString("utf-8")) ?? "", etag: result.ETag ?? "" };
    } catch (error) {
      if (isNotFound(error) || (await this.deniedButMissing(error, key))) return undefined;
      throw storageError(error, `GetObject ${key}`);
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (error) {
      if (isNotFound(error) || (await this.deniedButMissing(error, key))) return false;
      throw storageError(error, `HeadObject ${key}`);
    }
  }

  /**
   * S3 answers a GET or HEAD of a missing key with 403, not 404, unless the caller may list the whole bucket.
   * A role that may list only some prefixes (s3:prefix) asks again by listing the key itself: absent, it is
   * missing; present, the 403 was a real denial. Only a 403 costs this extra request.
   */
  private async deniedButMissing(error: unknown, key: string): Promise<boolean> {
    if (statusOf(error) !== 403) return false;
    try {
      const listed = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: key, MaxKeys: 1 }),
      );
      return listed.Contents?.[0]?.Key !== key;
    } catch (listError) {
      // A listing that failed for a passing reason (5xx, throttling, a conflict) has not told missing from
      // denied yet: retryable, not the permanent AccessDenied of the read.
      const classified = storageError(listError, `ListObjectsV2 ${key}`);
      if (classified instanceof StorageUnavailableError) throw classified;
      // Not allowed to list it either: the first denial is the one to report.
      return false;
    }
  }

  async put(
    key: string,
    body: string | Uint8Array,
    contentType: string,
    condition: ConditionalWrite = {},
  ): Promise<WriteResult> {
    const conditional = "ifNoneMatch" in condition || "ifMatch" in condition;
    return this.repeatingConflicts(conditional, `PutObject ${key}`, async () => {
      try {
        const result = await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: key,
            Body: body,
            ContentType: contentType,
            IfNoneMatch: "ifNoneMatch" in condition ? condition.ifNoneMatch : undefined,
            IfMatch: "ifMatch" in condition ? condition.ifMatch : undefined,
          }),
        );
        return { written: true, etag: result.ETag ?? "" };
      } catch (error) {
        // If-Match on a key that no longer exists answers 404: the object it was meant for is gone.
        if (conditional && (statusOf(error) === 412 || ("ifMatch" in condition && isNotFound(error))))
          return { written: false };
        throw error;
      }
    });
  }

  /**
   * Copies a staging object to a key that must be written at most once (If-None-Match: * on the
   * destination): two executions copying the same part at the same time write it once between them.
   */
  async copyIfAbsent(sourceKey: string, destinationKey: string): Promise<CopyResult> {
    return this.repeatingConflicts(true, `CopyObject ${sourceKey} → ${destinationKey}`, async () => {
      try {
        await this.client.send(
          new CopyObjectCommand({
            Bucket: this.bucket,
            Key: destinationKey,
            CopySource: `${this.bucket}/${sourceKey.split("/").map(encodeURIComponent).join("/")}`,
            IfNoneMatch: "*",
          }),
        );
        return "copied";
      } catch (error) {
        if (statusOf(error) === 412) return "exists";
        if (isNotFound(error) || (await this.deniedButMissing(error, sourceKey))) return "no-source";
        throw error;
      }
    });
  }

  async listKeys(prefix: string, startAfter?: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ContinuationToken: token,
            StartAfter: token ? undefined : startAfter,
          }),
        );
        for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (error) {
      throw storageError(error, `ListObjectsV2 ${prefix}`);
    }
    return keys;
  }

  async deleteKeys(keys: readonly string[]): Promise<void> {
    // DeleteObjects takes at most 1000 keys per call.
    for (let start = 0; start < keys.length; start += 1000) {
      const batch = keys.slice(start, start + 1000);
      let failed: { Key?: string; Code?: string }[];
      try {
        const result = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        failed = result.Errors ?? [];
      } catch (error) {
        throw storageError(error, "DeleteObjects");
      }
      const denied = failed.find((failure) => failure.Code === "AccessDenied");
      if (denied) {
        throw new StorageError(
          `S3 DeleteObjects was denied for ${denied.Key} (and ${failed.length - 1} more): check the function's IAM permissions`,
        );
      }
      if (failed.length > 0) {
        throw new StorageUnavailableError(
          `DeleteObjects could not delete ${failed.length} key(s), first ${failed[0]?.Key}: ${failed[0]?.Code}`,
        );
      }
    }
  }

  /** Runs one request, repeating it on 409 when it was conditional; any other failure is classified. */
  private async repeatingConflicts<T>(
    conditional: boolean,
    operation: string,
    request: () => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await request();
      } catch (error) {
        if (!(conditional && statusOf(error) === 409 && attempt < CONFLICT_ATTEMPTS))
          throw storageError(error, operation);
        await this.pause(CONFLICT_PAUSE_MS * attempt);
      }
    }
  }
}

function statusOf(error: unknown): number | undefined {
  return error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
}

function isNotFound(error: unknown): boolean {
  return (
    error instanceof S3ServiceException &&
    (error.name === "NoSuchKey" || error.name === "NotFound" || statusOf(error) === 404)
  );
}

/** S3 error codes that a repeat of the same request can cure, whatever their HTTP status (400 RequestTimeout). */
const TRANSIENT_CODES = new Set([
  "RequestTimeout",
  "RequestTimeoutException",
  "TimeoutError",
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "OperationAborted",
  "ConditionalRequestConflict",
  "InternalError",
  "ServiceUnavailable",
]);

/**
 * Classifies an S3 failure. Retryable (StorageUnavailableError; the Task's Retry rides it out): any 5xx,
 * 429, 409 (a conflicting operation in flight), throttling and timeout codes such as a 400 RequestTimeout,
 * what the SDK marks `$retryable`, and failures without an HTTP answer (network). Everything else, access
 * denied or a missing bucket above all, cannot succeed on retry: StorageError, which names what to check.
 */
export function storageError(error: unknown, operation: string): Error {
  if (error instanceof StorageUnavailableError || error instanceof StorageError) return error;
  const status = statusOf(error);
  const name = error instanceof Error ? error.name : "UnknownError";
  const message = `S3 ${operation} failed: ${name}${status ? ` (HTTP ${status})` : ""}: ${error instanceof Error ? error.message : String(error)}`;
  const retryableBySdk =
    typeof error === "object" &&
    error !== null &&
    (error as { $retryable?: unknown }).$retryable !== undefined;
  const transient =
    status === undefined ||
    status >= 500 ||
    status === 429 ||
    status === 409 ||
    TRANSIENT_CODES.has(name) ||
    retryableBySdk;
  if (transient) return new StorageUnavailableError(message, { cause: error });
  return new StorageError(`${message} (check S3_BUCKET and the function's IAM permissions)`, {
    cause: error,
  });
}
