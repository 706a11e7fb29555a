import { S3ServiceException } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { storageError } from "../../../functions/lib/aws/s3-store";
import { StorageError, StorageUnavailableError } from "../../../functions/lib/config/errors";

function s3(
  name: string,
  status: number | undefined,
  extra: Record<string, unknown> = {},
): S3ServiceException {
  const error = new S3ServiceException({
    name,
    $fault: status !== undefined && status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status },
    message: `${name} happened`,
  });
  return Object.assign(error, extra);
}

describe("storageError classifies S3 failures as S3 means them", () => {
  it.each([
    ["InternalError", 500],
    ["ServiceUnavailable", 503],
    ["SlowDown", 503],
    ["TooManyRequests", 429],
    ["RequestTimeout", 400],
    ["OperationAborted", 409],
    ["ConditionalRequestConflict", 409],
    ["Throttling", 400],
    ["NetworkingError", undefined],
  ] as const)("%s (HTTP %s) is worth retrying", (name, status) => {
    const error = storageError(s3(name, status), "PutObject k");
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(error.message).toContain(`S3 PutObject k failed: ${name}`);
    expect((error as Error & { cause?: unknown }).cause).toBeInstanceOf(S3ServiceException);
  });

  it("follows the SDK's own retryable mark", () => {
    expect(storageError(s3("SomethingNew", 400, { $retryable: {} }), "GetObject k")).toBeInstanceOf(
      StorageUnavailableError,
    );
  });

  it.each([
    ["AccessDenied", 403],
    ["NoSuchBucket", 404],
    ["PreconditionFailed", 412],
    ["InvalidArgument", 400],
  ] as const)("%s (HTTP %s) is not retried, and says what to check", (name, status) => {
    const error = storageError(s3(name, status), "CopyObject a → b");
    expect(error).toBeInstanceOf(StorageError);
    expect(error.message).toContain(`(HTTP ${status})`);
    expect(error.message).toContain("check S3_BUCKET and the function's IAM permissions");
  });

  it("passes the collector's own storage errors through unchanged", () => {
    const named = new StorageUnavailableError("already classified");
    expect(storageError(named, "DeleteObjects")).toBe(named);
    const fatal = new StorageError("already classified");
    expect(storageError(fatal, "DeleteObjects")).toBe(fatal);
  });
});
