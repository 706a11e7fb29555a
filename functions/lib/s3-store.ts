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
import { StorageError, StorageUnavailableError } from "./errors";

export interface StoredObject {
  body: string;
  etag: string;
}

export type ConditionalWrite = { ifNoneMatch: "*" } | { ifMatch: string } | Record<string, never>;

export type WriteResult = { written: true; etag: string } | { written: false };

/**
 * The collector's view of one S3 bucket. Conditional writes report a lost precondition as
 * `{ written: false }` rather than an error, because losing the race is an expected outcome.
 */
export class S3Store {
  constructor(
    readonly client: S3Client,
    readonly bucket: string,
  ) {}

  async getText(key: string): Promise<StoredObject | undefined> {
    try {
      const result = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return { body: (await result.Body?.transformToString("utf-8")) ?? "", etag: result.ETag ?? "" };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw storageError(error, `GetObject ${key}`);
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw storageError(error, `HeadObject ${key}`);
    }
  }

  async put(
    key: string,
    body: string | Uint8Array,
    contentType: string,
    condition: ConditionalWrite = {},
  ): Promise<WriteResult> {
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
      if (isPreconditionFailed(error) || ("ifMatch" in condition && isNotFound(error)))
        return { written: false };
      throw storageError(error, `PutObject ${key}`);
    }
  }

  async copy(sourceKey: string, destinationKey: string): Promise<void> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: destinationKey,
          CopySource: `${this.bucket}/${sourceKey.split("/").map(encodeURIComponent).join("/")}`,
        }),
      );
    } catch (error) {
      throw storageError(error, `CopyObject ${sourceKey} → ${destinationKey}`);
    }
  }

  async listKeys(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
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
      try {
        const result = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        const failed = result.Errors ?? [];
        if (failed.length > 0) {
          throw new StorageUnavailableError(
            `DeleteObjects could not delete ${failed.length} key(s), first ${failed[0]?.Key}: ${failed[0]?.Code}`,
          );
        }
      } catch (error) {
        if (error instanceof StorageUnavailableError) throw error;
        throw storageError(error, "DeleteObjects");
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

function isPreconditionFailed(error: unknown): boolean {
  // 409 ConditionalRequestConflict: a concurrent conditional write to the same key won.
  return error instanceof S3ServiceException && (statusOf(error) === 412 || statusOf(error) === 409);
}

/** 4xx other than throttling cannot succeed on retry (access denied, missing bucket); the rest can. */
function storageError(error: unknown, operation: string): Error {
  const status = statusOf(error);
  const name = error instanceof Error ? error.name : "UnknownError";
  const message = `S3 ${operation} failed: ${name}${status ? ` (HTTP ${status})` : ""}: ${error instanceof Error ? error.message : String(error)}`;
  if (status !== undefined && status >= 400 && status < 500 && status !== 429 && name !== "SlowDown") {
    return new StorageError(`${message} (check S3_BUCKET and the function's IAM permissions)`, {
      cause: error,
    });
  }
  return new StorageUnavailableError(message, { cause: error });
}
