// A local Amazon S3 stand-in for tests and local runs: s3rver (a Koa app over a directory) plus one
// middleware, inserted just before s3rver's router, that adds what the collector relies on and s3rver
// lacks or gets wrong:
//   - conditional writes exactly as S3 enforces them (If-None-Match: * / If-Match: <etag> on PutObject,
//     CopyObject's destination, CompleteMultipartUpload; If-Match on DeleteObject; x-amz-copy-source-if-*),
//     with check + write atomic per key (a FIFO lock per bucket/key held until the write has landed);
//   - aws-chunked request bodies (what @aws-sdk/client-s3 sends for streaming bodies by default) decoded
//     instead of stored verbatim, and Content-MD5 / x-amz-checksum-* verified (BadDigest on mismatch);
//   - ListObjects(V2) reimplemented: s3rver's continuation tokens use DES, which Node 22's OpenSSL 3
//     rejects (every truncated page was a 500), and it walks the directory tree in path order, not key order;
//   - store writes made atomic (temp file + rename) and ETags made consistent, multipart ETags S3-style;
//   - CopySource decoded fully (s3rver used decodeURI, so "%3D" in "year=2026/..." keys never matched);
//   - AbortMultipartUpload, NoSuchUpload, InvalidPart/InvalidPartOrder/EntityTooSmall on Complete;
//   - IAM and KMS as S3 applies them to a registered principal (stand-ins/access-control.ts): every request is
//     authorized for the actions S3 needs for it (a 403 AccessDenied otherwise), a missing key reads as 403
//     rather than 404 without s3:ListBucket, and a bucket whose default encryption is SSE-KMS (PutBucketEncryption)
//     needs kms:GenerateDataKey on its key to write and kms:Decrypt to read, through S3 (kms:ViaService).
import { createHash, type Hash, randomBytes } from "node:crypto";
import type { Dirent } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fsp from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { PassThrough, type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { crc32 } from "node:zlib";
import { S3Client } from "@aws-sdk/client-s3";
// @ts-expect-error s3rver ships no type declarations; the shapes used are declared below.
import S3rverModule from "s3rver";
// @ts-expect-error untyped (see above)
import bucketControllerModule from "s3rver/lib/controllers/bucket";
// @ts-expect-error untyped (see above)
import objectControllerModule from "s3rver/lib/controllers/object";
// @ts-expect-error untyped (see above)
import accountModule from "s3rver/lib/models/account";
// @ts-expect-error untyped (see above)
import S3ErrorModule from "s3rver/lib/models/error";
import { type AccessCheck, accessKeyIdOf, authorize, isRegistered } from "./access-control";

export interface LocalS3Options {
  /** Default 0 = an ephemeral port. The host is always 127.0.0.1. */
  port?: number;
  /** Default: a fresh mkdtemp directory under os.tmpdir(), removed on close. */
  directory?: string;
  buckets: string[];
}

/** The S3 operations a fault can be aimed at. */
export type S3Operation =
  | "PutObject"
  | "CopyObject"
  | "GetObject"
  | "HeadObject"
  | "ListObjectsV2"
  | "DeleteObjects"
  | "Other";

/**
 * An error the server answers instead of doing the request, as S3 answers it (XML body, status, code), to
 * the matching requests: `times` of them, after letting `after` through. Faults are checked before any
 * precondition or write, so a faulted request changes nothing.
 */
export interface S3Fault {
  operation?: S3Operation;
  /** Only requests whose key starts with this. */
  keyPrefix?: string;
  status: number;
  code: string;
  times: number;
  after?: number;
}

export interface LocalS3 {
  /** "http://127.0.0.1:<port>" */
  readonly endpoint: string;
  readonly directory: string;
  /** Answers matching requests with an S3 error (see S3Fault); returns the fault, whose `times` counts down. */
  inject(fault: S3Fault): S3Fault;
  /** Removes every fault not yet used up. */
  clearFaults(): void;
  /**
   * A client pointed at it: us-east-1, path-style, no retries; the account's administrator by default, or the
   * principal registered under `credentials.accessKeyId` (see access-control.ts).
   */
  client(credentials?: { accessKeyId: string; secretAccessKey: string }): S3Client;
  /** Stops the server, ends keep-alive sockets, destroys the clients handed out, removes an own directory. */
  close(): Promise<void>;
}

/** The region the stand-in answers for: kms:ViaService is s3.<region>.amazonaws.com. */
export const LOCAL_S3_REGION = "us-east-1";

/** The dummy credentials s3rver knows. Any other SigV4 access key id is accepted too (see registerAccessKey). */
export const LOCAL_S3_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } as const;

// ---------------------------------------------------------------------------------------------------------
// The parts of s3rver used here.

type HeaderValue = string | string[] | undefined;

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, HeaderValue>;
  headers: Record<string, HeaderValue>;
  req: Readable;
  status: number;
  body: unknown;
  set(field: string, value: string): void;
}

type Next = () => Promise<unknown>;
type Middleware = ((ctx: KoaContext, next: Next) => unknown) & { router?: unknown };

type Metadata = Record<string, string | number | undefined>;

interface StoredObjectInput {
  bucket: string;
  key: string;
  content: Readable | Buffer;
  metadata: Metadata;
}

interface FilesystemStore {
  rootDirectory: string;
  getBucketPath(bucket: string): string;
  getResourcePath(bucket: string, key: string | undefined, resource: string): string;
  getBucket(bucket: string): Promise<unknown>;
  getMetadata(bucket: string, key: string): Promise<Metadata>;
  putMetadata(bucket: string, key: string, metadata: Metadata, md5?: string): Promise<void>;
  putObject(object: StoredObjectInput): Promise<{ md5: string; size: number }>;
  copyObject(
    srcBucket: string,
    srcKey: string,
    destBucket: string,
    destKey: string,
    replacementMetadata: Metadata | null,
  ): Promise<Metadata>;
  deleteObject(bucket: string, key: string): Promise<void>;
  putPart(
    bucket: string,
    uploadId: string,
    partNumber: number,
    content: Readable,
  ): Promise<{ md5: string; size: number }>;
  putObjectMultipart(
    bucket: string,
    uploadId: string,
    parts: { number: number; etag: string }[],
  ): Promise<{ md5: string; size: number }>;
}

interface FilesystemStoreStatics {
  encodeKeyPath(key: string): string;
  decodeKeyPath(keyPath: string): string;
}

interface S3rverApp {
  middleware: Middleware[];
  store: FilesystemStore;
  httpServer?: Server;
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  on(event: "error", listener: (error: unknown) => void): void;
}

type S3rverConstructor = new (options: Record<string, unknown>) => S3rverApp;

interface S3ErrorInstance extends Error {
  code: string;
  status: number;
  expose: boolean;
}
type S3ErrorConstructor = new (
  code: string,
  message?: string,
  detail?: Record<string, unknown>,
) => S3ErrorInstance;

interface AwsAccount {
  createKeyPair(accessKeyId: string, secretAccessKey: string): void;
}

const S3rver = S3rverModule as S3rverConstructor;
const S3Error = S3ErrorModule as S3ErrorConstructor;
const accounts = accountModule as {
  registry: Map<string, unknown>;
  DUMMY_ACCOUNT: AwsAccount & { id: number; displayName: string };
};
const BUCKET_SUBRESOURCES = new Set<string>((bucketControllerModule as { METHODS: string[] }).METHODS);
const OBJECT_SUBRESOURCES = new Set<string>([
  ...(bucketControllerModule as { METHODS: string[] }).METHODS,
  ...(objectControllerModule as { METHODS: string[] }).METHODS,
]);

/** Errors answered for an injected fault: expected, so a 5xx among them is not logged as a server bug. */
const INJECTED = new WeakSet<object>();

const OBJECT_SUFFIX = "._S3rver_object";
const UPLOADS_SUFFIX = "._S3rver_uploads";
const MIN_PART_SIZE = 5 * 1024 * 1024;
const PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold";

// ---------------------------------------------------------------------------------------------------------

export async function startLocalS3(options: LocalS3Options): Promise<LocalS3> {
  const ownDirectory = options.directory === undefined;
  const directory = options.directory ?? (await fsp.mkdtemp(path.join(os.tmpdir(), "local-s3-")));
  await fsp.mkdir(directory, { recursive: true });

  const app = new S3rver({
    address: "127.0.0.1",
    port: options.port ?? 0,
    silent: true,
    directory,
    resetOnClose: false,
    vhostBuckets: false,
    configureBuckets: options.buckets.map((name) => ({ name, configs: [] })),
  });
  // Koa is silent about 5xx when `silent` is set; those are bugs worth seeing (on stderr, not stdout).
  app.on("error", (error) => {
    const status = (error as { status?: number }).status ?? 500;
    if (status >= 500 && status !== 501 && !INJECTED.has(error as object))
      process.stderr.write(`[local-s3] ${String((error as Error).stack ?? error)}\n`);
  });

  // s3rver logs every request through koa-logger and winston, formatting each line even when `silent` drops
  // it: a few percent of a test's CPU. The logger is its first middleware.
  if (app.middleware[0]?.name !== "logger")
    throw new Error("local-s3: unexpected s3rver middleware layout (request logger not first)");
  app.middleware.splice(0, 1);

  const store = app.store;
  hardenStore(store);

  const router = app.middleware.at(-1);
  if (!router?.router) throw new Error("local-s3: unexpected s3rver middleware layout (router not last)");
  const faults: S3Fault[] = [];
  const encryption = await BucketEncryption.load(directory);
  app.middleware.splice(app.middleware.length - 1, 0, s3CompatMiddleware(store, faults, encryption));

  let address: AddressInfo;
  try {
    address = await app.run();
  } catch (error) {
    if (ownDirectory) await fsp.rm(directory, { recursive: true, force: true });
    throw error;
  }
  const endpoint = `http://127.0.0.1:${address.port}`;
  const clients = new Set<S3Client>();
  let closing: Promise<void> | undefined;

  return {
    endpoint,
    directory,
    inject(fault) {
      const armed = { ...fault };
      faults.push(armed);
      return armed;
    },
    clearFaults() {
      faults.length = 0;
    },
    client(credentials = LOCAL_S3_CREDENTIALS) {
      const client = new S3Client({
        endpoint,
        region: LOCAL_S3_REGION,
        forcePathStyle: true,
        credentials: { ...credentials },
        maxAttempts: 1,
      });
      clients.add(client);
      return client;
    },
    close() {
      closing ??= (async () => {
        for (const client of clients) client.destroy();
        clients.clear();
        const server = app.httpServer;
        const closed = app.close();
        server?.closeAllConnections();
        await closed;
        if (ownDirectory) await fsp.rm(directory, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// The middleware.

function s3CompatMiddleware(
  store: FilesystemStore,
  faults: S3Fault[],
  encryption: BucketEncryption,
): Middleware {
  const locks = new KeyedLock();
  const lockName = (bucket: string, key: string) => `${bucket}\u0000${key}`;

  return async function s3Compat(ctx, next) {
    registerAccessKey(ctx);
    const target = parseTarget(ctx.path);
    if (!target) return next();
    const { bucket, key } = target;
    const fault = takeFault(faults, operationOf(ctx, key), key);
    if (fault) {
      return guarded(ctx, async () => {
        const error = s3Error(fault.code, fault.status, `injected ${fault.code}`);
        INJECTED.add(error);
        throw error;
      });
    }
    if (!(await store.getBucket(bucket))) return next(); // s3rver answers NoSuchBucket
    const query = ctx.query;
    const method = ctx.method;
    const accessKeyId = accessKeyIdOf(header(ctx, "authorization"), single(query["X-Amz-Credential"]));
    if (key === undefined && "encryption" in query) {
      return guarded(ctx, () => bucketEncryptionRequest(ctx, bucket, encryption, accessKeyId));
    }
    if (isRegistered(accessKeyId)) {
      await guarded(ctx, () => authorizeRequest(ctx, encryption, accessKeyId, bucket, key));
    }

    if (key === undefined) {
      if (method === "GET" && !Object.keys(query).some((name) => BUCKET_SUBRESOURCES.has(name))) {
        return listObjects(store, ctx, bucket);
      }
      if (method === "POST" && "delete" in query) {
        // DeleteObjects: take the lock of every key named, so a batch delete is ordered against
        // conditional writes to the same keys like single deletes are.
        const body = prepareBody(ctx, await readBody(ctx.req));
        const keys = [...body.toString("utf8").matchAll(/<Key>([\s\S]*?)<\/Key>/g)].map((m) =>
          decodeXmlText(m[1] ?? ""),
        );
        // S3 authorizes s3:DeleteObject key by key and reports each denied key as an error of the result.
        const denied = new Set<string>();
        for (const k of keys) {
          const decision = await authorize(accessKeyId, [
            { action: "s3:DeleteObject", resource: s3Arn(bucket, k) },
          ]);
          if (!decision.allowed) denied.add(k);
        }
        const errors = [...denied].map((k) => ({ Key: k, Code: "AccessDenied", Message: "Access Denied" }));
        const allowed = keys.filter((k) => !denied.has(k));
        if (allowed.length === 0 && errors.length > 0) {
          ctx.set("Content-Type", "application/xml");
          ctx.body = {
            DeleteResult: { "@": { xmlns: "http://s3.amazonaws.com/doc/2006-03-01/" }, Error: errors },
          };
          return;
        }
        return withLocks(
          allowed.map((k) => lockName(bucket, k)),
          async () => {
            ctx.req = bufferStream(denied.size === 0 ? body : deleteRequestBody(allowed));
            await next();
            const result = (ctx.body as { DeleteResult?: Record<string, unknown> } | undefined)?.DeleteResult;
            if (result && errors.length > 0) result.Error = errors;
          },
        );
      }
      return next();
    }

    const subresources = Object.keys(query).filter((name) => OBJECT_SUBRESOURCES.has(name));
    const only = (name: string) => subresources.length === 1 && subresources[0] === name;
    const h = (name: string) => header(ctx, name);

    if (method === "PUT" && subresources.length === 0 && h("x-amz-copy-source") === undefined) {
      // PutObject
      return withLocks([lockName(bucket, key)], async () => {
        await guarded(ctx, () => checkWritePreconditions(store, ctx, bucket, key));
        ctx.req = bufferStream(prepareBody(ctx, await readBody(ctx.req)));
        await next();
      });
    }

    if (method === "PUT" && subresources.length === 0) {
      // CopyObject
      const source = await guarded(ctx, async () => parseCopySource(h("x-amz-copy-source") ?? ""));
      // s3rver decodes this header with decodeURI, which leaves %3D, %2B, %26 ... encoded; hand it a form
      // that decodeURI maps back to the exact source key.
      ctx.headers["x-amz-copy-source"] = encodeURI(`${source.bucket}/${source.key}`);
      return withLocks([lockName(bucket, key), lockName(source.bucket, source.key)], async () => {
        await guarded(ctx, async () => {
          const src = await currentObject(store, source.bucket, source.key);
          // Its decryption was authorized with the copy; only whether it is missing is left to say.
          await disclosure(accessKeyId, source.bucket, src, undefined);
          if (src) checkCopySourcePreconditions(ctx, src);
          await checkWritePreconditions(store, ctx, bucket, key);
        });
        await next();
      });
    }

    if (method === "PUT" && only("uploadId")) {
      // UploadPart
      await guarded(ctx, async () => {
        await requireUpload(store, bucket, key, single(query.uploadId));
        const partNumber = Number(single(query.partNumber));
        if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10000) {
          throw new S3Error(
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive",
            {
              ArgumentName: "partNumber",
              ArgumentValue: String(single(query.partNumber)),
            },
          );
        }
      });
      ctx.req = bufferStream(prepareBody(ctx, await readBody(ctx.req)));
      return next();
    }

    if (method === "POST" && only("uploadId")) {
      // CompleteMultipartUpload
      return withLocks([lockName(bucket, key)], async () => {
        await guarded(ctx, async () => {
          await requireUpload(store, bucket, key, single(query.uploadId));
          await checkWritePreconditions(store, ctx, bucket, key);
        });
        await next();
      });
    }

    if (method === "DELETE" && only("uploadId")) {
      // AbortMultipartUpload (s3rver answers 405)
      const uploadDir = await requireUpload(store, bucket, key, single(query.uploadId));
      await fsp.rm(uploadDir, { recursive: true, force: true });
      ctx.status = 204;
      return;
    }

    if (method === "DELETE" && subresources.length === 0) {
      // DeleteObject
      return withLocks([lockName(bucket, key)], async () => {
        const ifMatch = h("if-match");
        if (ifMatch !== undefined) {
          const current = await currentObject(store, bucket, key);
          if (!current) throw noSuchKey(key);
          if (!etagMatches(ifMatch, current.etag)) throw preconditionFailed("If-Match");
        }
        await next();
      });
    }

    if ((method === "GET" || method === "HEAD") && subresources.length === 0) {
      // GetObject / HeadObject: under the lock until the file is open, so a read never sees half a write.
      return withLocks([lockName(bucket, key)], async () => {
        const current = await currentObject(store, bucket, key);
        await guarded(ctx, () =>
          disclosure(accessKeyId, bucket, current, method === "GET" ? encryption.keyOf(bucket) : undefined),
        );
        if (current && evaluateReadPreconditions(ctx, current) === "not-modified") {
          ctx.status = 304;
          ctx.set("ETag", `"${current.etag}"`);
          ctx.set("Last-Modified", current.lastModified.toUTCString());
          return;
        }
        await next();
      });
    }

    return next();
  };

  async function withLocks<T>(names: string[], action: () => Promise<T>): Promise<T> {
    const release = await locks.acquire(names);
    try {
      return await action();
    } finally {
      release();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// IAM and KMS (see access-control.ts).

/** The bucket's and its objects' ARN, as IAM names them. */
function s3Arn(bucket: string, key?: string): string {
  return key === undefined ? `arn:aws:s3:::${bucket}` : `arn:aws:s3:::${bucket}/${key}`;
}

/**
 * What S3 asks KMS for on a principal's behalf when it writes or reads an object of a bucket encrypted with
 * SSE-KMS. The key policy is KMS's default one (the account may use the key through IAM policies), so the
 * principal's own policy decides, under the condition S3 sets: kms:ViaService.
 */
function kmsCheck(action: "kms:GenerateDataKey" | "kms:Decrypt", keyArn: string): AccessCheck {
  const account = keyArn.split(":")[4] ?? "";
  return {
    action,
    resource: keyArn,
    context: { "kms:ViaService": `s3.${LOCAL_S3_REGION}.amazonaws.com`, "kms:CallerAccount": account },
    resourcePolicy: {
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "Enable IAM User Permissions",
          Effect: "Allow",
          Principal: { AWS: `arn:aws:iam::${account}:root` },
          Action: "kms:*",
          Resource: "*",
        },
      ],
    },
  };
}

function accessDenied(message: string): S3ErrorInstance {
  return new S3Error("AccessDenied", message);
}

async function requireAccess(accessKeyId: string | undefined, checks: AccessCheck[]): Promise<void> {
  const decision = await authorize(accessKeyId, checks);
  if (!decision.allowed) throw accessDenied(decision.message);
}

/**
 * Authorizes a registered principal's request as S3 does, throwing AccessDenied (403) where S3 would. A GET
 * or HEAD of a missing key is a 403 too unless the principal may list the bucket: S3 does not tell who may not
 * list whether a key exists (a ListBucket grant limited by s3:prefix is not taken to earn the 404 here, as
 * AWS does not document that it does). DeleteObjects is authorized key by key where it is handled.
 */
async function authorizeRequest(
  ctx: KoaContext,
  encryption: BucketEncryption,
  accessKeyId: string | undefined,
  bucket: string,
  key: string | undefined,
): Promise<void> {
  const kmsKey = encryption.keyOf(bucket);
  const method = ctx.method;
  const subresources = Object.keys(ctx.query).filter((name) => OBJECT_SUBRESOURCES.has(name));
  if (key === undefined) {
    if (method === "POST" && "delete" in ctx.query) return;
    if (method === "GET" && subresources.length === 0) {
      const prefix = single(ctx.query.prefix) ?? "";
      return requireAccess(accessKeyId, [
        { action: "s3:ListBucket", resource: s3Arn(bucket), context: { "s3:prefix": prefix } },
      ]);
    }
    const action = method === "GET" && "location" in ctx.query ? "s3:GetBucketLocation" : undefined;
    if (!action)
      throw accessDenied(`the local S3 stand-in authorizes no ${method} ?${subresources.join("&")}`);
    return requireAccess(accessKeyId, [{ action, resource: s3Arn(bucket) }]);
  }
  const object = s3Arn(bucket, key);
  const copySource = header(ctx, "x-amz-copy-source");
  if (method === "PUT" && subresources.length === 0 && copySource === undefined) {
    return requireAccess(accessKeyId, [
      { action: "s3:PutObject", resource: object },
      ...(kmsKey ? [kmsCheck("kms:GenerateDataKey", kmsKey)] : []),
    ]);
  }
  if (method === "PUT" && subresources.length === 0) {
    const source = parseCopySource(copySource ?? "");
    const sourceKms = encryption.keyOf(source.bucket);
    // Whether the source is missing is asked under the keys' lock (see disclosure).
    return requireAccess(accessKeyId, [
      { action: "s3:GetObject", resource: s3Arn(source.bucket, source.key) },
      { action: "s3:PutObject", resource: object },
      ...(sourceKms ? [kmsCheck("kms:Decrypt", sourceKms)] : []),
      ...(kmsKey ? [kmsCheck("kms:GenerateDataKey", kmsKey)] : []),
    ]);
  }
  if (
    (method === "POST" || method === "PUT") &&
    (subresources[0] === "uploads" || subresources[0] === "uploadId")
  ) {
    // A multipart upload to an SSE-KMS bucket: a data key to start it, and Decrypt to assemble the parts.
    const completing = method === "POST" && subresources[0] === "uploadId";
    return requireAccess(accessKeyId, [
      { action: "s3:PutObject", resource: object },
      ...(kmsKey ? [kmsCheck(completing ? "kms:Decrypt" : "kms:GenerateDataKey", kmsKey)] : []),
    ]);
  }
  if (method === "DELETE" && subresources[0] === "uploadId") {
    return requireAccess(accessKeyId, [{ action: "s3:AbortMultipartUpload", resource: object }]);
  }
  if (method === "DELETE" && subresources.length === 0) {
    return requireAccess(accessKeyId, [{ action: "s3:DeleteObject", resource: object }]);
  }
  if ((method === "GET" || method === "HEAD") && subresources.length === 0) {
    // Whether the key is missing, and so whether to decrypt, is asked under the key's lock (see disclosure).
    return requireAccess(accessKeyId, [{ action: "s3:GetObject", resource: object }]);
  }
  throw accessDenied(`the local S3 stand-in authorizes no ${method} ?${subresources.join("&")} on objects`);
}

/** A DeleteObjects body naming only `keys` (the checksums were verified on the original body). */
function deleteRequestBody(keys: readonly string[]): Buffer {
  const xmlText = (text: string) =>
    text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  return Buffer.from(
    `<Delete>${keys.map((k) => `<Object><Key>${xmlText(k)}</Key></Object>`).join("")}<Quiet>true</Quiet></Delete>`,
  );
}

/**
 * What a read of an object (GET or HEAD, or CopyObject's source) may learn, decided under the key's lock once
 * its permission to read was granted: a missing key answers 404 only to who may list the bucket (without a
 * prefix), to anyone else 403; an object of an SSE-KMS bucket is decrypted (GET and copy, not HEAD) only with
 * kms:Decrypt.
 */
async function disclosure(
  accessKeyId: string | undefined,
  bucket: string,
  current: CurrentObject | undefined,
  decrypts: string | undefined,
): Promise<void> {
  if (!isRegistered(accessKeyId)) return;
  if (!current) {
    const decision = await authorize(accessKeyId, [
      { action: "s3:ListBucket", resource: s3Arn(bucket), disclosure: true },
    ]);
    if (!decision.allowed) throw accessDenied("Access Denied");
    return;
  }
  if (decrypts) await requireAccess(accessKeyId, [kmsCheck("kms:Decrypt", decrypts)]);
}

/**
 * Each bucket's default encryption, as PutBucketEncryption sets it: SSE-S3 unless an SSE-KMS key was set.
 * Kept in a file beside the buckets, so a data directory keeps its buckets' settings across runs.
 */
class BucketEncryption {
  private constructor(
    private readonly file: string,
    private readonly keys: Record<string, string>,
  ) {}

  static async load(directory: string): Promise<BucketEncryption> {
    const file = path.join(directory, ".bucket-encryption.json");
    const text = await fsp.readFile(file, "utf8").catch(() => "{}");
    return new BucketEncryption(file, JSON.parse(text) as Record<string, string>);
  }

  /** The SSE-KMS key every object written to the bucket is encrypted with, if any. */
  keyOf(bucket: string): string | undefined {
    return this.keys[bucket];
  }

  async set(bucket: string, kmsKeyArn: string | undefined): Promise<void> {
    if (kmsKeyArn === undefined) delete this.keys[bucket];
    else this.keys[bucket] = kmsKeyArn;
    await fsp.writeFile(this.file, JSON.stringify(this.keys));
  }
}

/** PutBucketEncryption, GetBucketEncryption and DeleteBucketEncryption (SSE-S3 or SSE-KMS with one key). */
async function bucketEncryptionRequest(
  ctx: KoaContext,
  bucket: string,
  encryption: BucketEncryption,
  accessKeyId: string | undefined,
): Promise<void> {
  const action = ctx.method === "GET" ? "s3:GetEncryptionConfiguration" : "s3:PutEncryptionConfiguration";
  await requireAccess(accessKeyId, [{ action, resource: s3Arn(bucket) }]);
  if (ctx.method === "PUT") {
    const body = prepareBody(ctx, await readBody(ctx.req)).toString("utf8");
    const algorithm = /<SSEAlgorithm>([^<]*)<\/SSEAlgorithm>/.exec(body)?.[1];
    const keyId = /<KMSMasterKeyID>([^<]*)<\/KMSMasterKeyID>/.exec(body)?.[1];
    if (algorithm !== "aws:kms" && algorithm !== "AES256")
      throw new S3Error("MalformedXML", "The XML you provided was not well-formed or did not validate");
    await encryption.set(bucket, algorithm === "aws:kms" ? decodeXmlText(keyId ?? "") : undefined);
    ctx.status = 200;
    ctx.body = "";
    return;
  }
  if (ctx.method === "DELETE") {
    await encryption.set(bucket, undefined);
    ctx.status = 204;
    ctx.body = "";
    return;
  }
  const kmsKey = encryption.keyOf(bucket);
  ctx.set("Content-Type", "application/xml");
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>\n<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ApplyServerSideEncryptionByDefault>' +
    (kmsKey
      ? `<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>${kmsKey}</KMSMasterKeyID>`
      : "<SSEAlgorithm>AES256</SSEAlgorithm>") +
    `</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>${kmsKey ? "true" : "false"}</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>`;
}

/** Runs a pre-check; if it throws, the unread request body is drained first so the error reply is clean. */
function operationOf(ctx: KoaContext, key: string | undefined): S3Operation {
  const subresources = Object.keys(ctx.query).filter((name) => OBJECT_SUBRESOURCES.has(name));
  if (key === undefined) {
    if (ctx.method === "GET" && !Object.keys(ctx.query).some((name) => BUCKET_SUBRESOURCES.has(name)))
      return "ListObjectsV2";
    return ctx.method === "POST" && "delete" in ctx.query ? "DeleteObjects" : "Other";
  }
  if (subresources.length > 0) return "Other";
  if (ctx.method === "PUT")
    return header(ctx, "x-amz-copy-source") === undefined ? "PutObject" : "CopyObject";
  if (ctx.method === "GET") return "GetObject";
  return ctx.method === "HEAD" ? "HeadObject" : "Other";
}

/** The first armed fault matching the request, counted down; undefined lets the request through. */
function takeFault(faults: S3Fault[], operation: S3Operation, key: string | undefined): S3Fault | undefined {
  for (const fault of faults) {
    if (fault.times <= 0) continue;
    if (fault.operation !== undefined && fault.operation !== operation) continue;
    if (fault.keyPrefix !== undefined && !(key ?? "").startsWith(fault.keyPrefix)) continue;
    if ((fault.after ?? 0) > 0) {
      fault.after = (fault.after ?? 0) - 1;
      continue;
    }
    fault.times--;
    return fault;
  }
  return undefined;
}

async function guarded<T>(ctx: KoaContext, check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (error) {
    await drain(ctx.req);
    throw error;
  }
}

/** s3rver accepts only its own access key id; SigV4 signatures are never verified, so accept any id. */
function registerAccessKey(ctx: KoaContext): void {
  const auth = header(ctx, "authorization");
  const credential = auth?.startsWith("AWS4-") ? /Credential=([^/,\s]+)\//.exec(auth)?.[1] : undefined;
  const fromQuery = single(ctx.query["X-Amz-Credential"])?.split("/")[0];
  for (const id of [credential, fromQuery]) {
    if (id && !accounts.registry.has(id)) accounts.DUMMY_ACCOUNT.createKeyPair(id, id);
  }
}

function parseTarget(urlPath: string): { bucket: string; key: string | undefined } | undefined {
  const rest = urlPath.startsWith("/") ? urlPath.slice(1) : urlPath;
  if (!rest) return undefined;
  const slash = rest.indexOf("/");
  const bucket = safeDecode(slash === -1 ? rest : rest.slice(0, slash));
  const key = slash === -1 ? "" : safeDecode(rest.slice(slash + 1));
  return { bucket, key: key === "" ? undefined : key };
}

function parseCopySource(raw: string): { bucket: string; key: string } {
  let source = raw;
  const queryStart = source.indexOf("?"); // ?versionId=... (no versioning here)
  if (queryStart !== -1) source = source.slice(0, queryStart);
  source = safeDecode(source.startsWith("/") ? source.slice(1) : source);
  const slash = source.indexOf("/");
  const bucket = source.slice(0, slash);
  const key = source.slice(slash + 1);
  let wellFormed = slash > 0 && key.length > 0;
  try {
    encodeURI(source);
  } catch {
    wellFormed = false;
  }
  if (!wellFormed) {
    throw new S3Error(
      "InvalidArgument",
      "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
      {
        ArgumentName: "x-amz-copy-source",
        ArgumentValue: raw,
      },
    );
  }
  return { bucket, key };
}

// ---------------------------------------------------------------------------------------------------------
// Preconditions.

interface CurrentObject {
  /** Unquoted. */
  etag: string;
  lastModified: Date;
}

async function currentObject(
  store: FilesystemStore,
  bucket: string,
  key: string,
): Promise<CurrentObject | undefined> {
  try {
    const metadata = await store.getMetadata(bucket, key);
    return {
      etag: String(metadata.etag ?? "").replace(/"/g, ""),
      lastModified: new Date(String(metadata["last-modified"])),
    };
  } catch (error) {
    if (isMissingFileError(error)) return undefined;
    throw error;
  }
}

async function checkWritePreconditions(store: FilesystemStore, ctx: KoaContext, bucket: string, key: string) {
  const ifNoneMatch = header(ctx, "if-none-match");
  const ifMatch = header(ctx, "if-match");
  if (ifNoneMatch === undefined && ifMatch === undefined) return;
  if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== "*") {
    throw new S3Error(
      "NotImplemented",
      "A header you provided implies functionality that is not implemented",
      {
        Header: "If-None-Match",
      },
    );
  }
  const current = await currentObject(store, bucket, key);
  if (ifNoneMatch !== undefined && current) throw preconditionFailed("If-None-Match");
  if (ifMatch !== undefined) {
    if (!current) throw noSuchKey(key);
    if (!etagMatches(ifMatch, current.etag)) throw preconditionFailed("If-Match");
  }
}

function checkCopySourcePreconditions(ctx: KoaContext, source: CurrentObject): void {
  const ifMatch = header(ctx, "x-amz-copy-source-if-match");
  const ifNoneMatch = header(ctx, "x-amz-copy-source-if-none-match");
  const ifUnmodifiedSince = parseHttpDate(header(ctx, "x-amz-copy-source-if-unmodified-since"));
  const ifModifiedSince = parseHttpDate(header(ctx, "x-amz-copy-source-if-modified-since"));
  // S3: If-Match true wins over If-Unmodified-Since false; If-None-Match false fails whatever the date says.
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, source.etag)) throw preconditionFailed("x-amz-copy-source-If-Match");
  } else if (ifUnmodifiedSince && source.lastModified > ifUnmodifiedSince) {
    throw preconditionFailed("x-amz-copy-source-If-Unmodified-Since");
  }
  if (ifNoneMatch !== undefined) {
    if (etagMatches(ifNoneMatch, source.etag)) throw preconditionFailed("x-amz-copy-source-If-None-Match");
  } else if (ifModifiedSince && source.lastModified <= ifModifiedSince) {
    throw preconditionFailed("x-amz-copy-source-If-Modified-Since");
  }
}

/**
 * GET/HEAD conditions per RFC 7232 and S3 (s3rver ignores If-Match/If-Unmodified-Since, compares
 * If-None-Match verbatim and applies If-Modified-Since even when If-None-Match is present).
 */
function evaluateReadPreconditions(ctx: KoaContext, current: CurrentObject): "ok" | "not-modified" {
  const ifMatch = header(ctx, "if-match");
  const ifNoneMatch = header(ctx, "if-none-match");
  const ifUnmodifiedSince = parseHttpDate(header(ctx, "if-unmodified-since"));
  const ifModifiedSince = parseHttpDate(header(ctx, "if-modified-since"));
  delete ctx.headers["if-none-match"];
  delete ctx.headers["if-modified-since"];
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, current.etag)) throw preconditionFailed("If-Match");
  } else if (ifUnmodifiedSince && current.lastModified > ifUnmodifiedSince) {
    throw preconditionFailed("If-Unmodified-Since");
  }
  if (ifNoneMatch !== undefined) return etagMatches(ifNoneMatch, current.etag) ? "not-modified" : "ok";
  if (ifModifiedSince && current.lastModified <= ifModifiedSince) return "not-modified";
  return "ok";
}

function etagMatches(condition: string, etag: string): boolean {
  return condition.split(",").some((candidate) => {
    const value = candidate
      .trim()
      .replace(/^W\//, "")
      .replace(/^"(.*)"$/, "$1");
    return value === "*" || value === etag;
  });
}

function parseHttpDate(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function preconditionFailed(condition: string): S3ErrorInstance {
  return new S3Error("PreconditionFailed", PRECONDITION_MESSAGE, { Condition: condition });
}

function noSuchKey(key: string): S3ErrorInstance {
  return new S3Error("NoSuchKey", "The specified key does not exist.", { Key: key });
}

function s3Error(
  code: string,
  status: number,
  message: string,
  detail?: Record<string, unknown>,
): S3ErrorInstance {
  const error = new S3Error(code, message, detail);
  error.status = status;
  error.expose = status < 500;
  return error;
}

async function requireUpload(
  store: FilesystemStore,
  bucket: string,
  key: string,
  uploadId: string | undefined,
) {
  const uploadDir = uploadDirectory(store, bucket, uploadId ?? "");
  let uploadKey: string | undefined;
  if (uploadId && /^[0-9a-f]+$/i.test(uploadId)) {
    uploadKey = await fsp.readFile(path.join(uploadDir, "key"), "utf8").catch(() => undefined);
  }
  if (uploadKey !== key) {
    throw new S3Error(
      "NoSuchUpload",
      "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
      { UploadId: uploadId ?? "" },
    );
  }
  return uploadDir;
}

function uploadDirectory(store: FilesystemStore, bucket: string, uploadId: string): string {
  return path.join(store.getResourcePath(bucket, undefined, "uploads"), uploadId);
}

// ---------------------------------------------------------------------------------------------------------
// Request bodies: aws-chunked decoding and integrity checks.

async function readBody(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function drain(stream: Readable): Promise<void> {
  if (stream.readableEnded || stream.destroyed) return;
  try {
    for await (const _ of stream) {
      // discard
    }
  } catch {
    // the client went away; nothing to answer
  }
}

/** Request streams the middleware already read whole, so the store can write the buffer in one go. */
const BUFFERED_BODIES = new WeakMap<Readable, Buffer>();

function bufferStream(body: Buffer): Readable {
  const stream = new PassThrough();
  stream.end(body);
  BUFFERED_BODIES.set(stream, body);
  return stream;
}

/**
 * Returns the object bytes of a PUT/POST body: aws-chunked framing removed (with the request headers fixed
 * up so s3rver does not store "Content-Encoding: aws-chunked"), then Content-MD5, x-amz-content-sha256 and
 * any x-amz-checksum-* (header or trailer) verified the way S3 does.
 */
function prepareBody(ctx: KoaContext, raw: Buffer): Buffer {
  const contentSha256 = header(ctx, "x-amz-content-sha256");
  const encodings = (header(ctx, "content-encoding") ?? "")
    .split(",")
    .map((token) => token.trim())
    .filter(Boolean);
  const chunked = encodings.includes("aws-chunked") || (contentSha256?.startsWith("STREAMING-") ?? false);
  let payload = raw;
  let trailers: Record<string, string> = {};
  if (chunked) {
    ({ payload, trailers } = decodeAwsChunked(raw));
    const declared = header(ctx, "x-amz-decoded-content-length");
    if (declared !== undefined && Number(declared) !== payload.length) {
      throw s3Error(
        "IncompleteBody",
        400,
        "You did not provide the number of bytes specified by the Content-Length HTTP header",
      );
    }
    const rest = encodings.filter((token) => token !== "aws-chunked");
    if (rest.length > 0) ctx.headers["content-encoding"] = rest.join(",");
    else delete ctx.headers["content-encoding"];
    ctx.headers["content-length"] = String(payload.length);
    delete ctx.headers["transfer-encoding"];
  } else if (contentSha256 && /^[0-9a-f]{64}$/i.test(contentSha256)) {
    if (createHash("sha256").update(payload).digest("hex") !== contentSha256.toLowerCase()) {
      throw s3Error(
        "XAmzContentSHA256Mismatch",
        400,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
      );
    }
  }

  const contentMd5 = header(ctx, "content-md5");
  if (contentMd5 !== undefined) {
    if (Buffer.from(contentMd5, "base64").length !== 16) {
      throw s3Error("InvalidDigest", 400, "The Content-MD5 you specified was invalid.");
    }
    if (createHash("md5").update(payload).digest("base64") !== contentMd5) {
      throw s3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.");
    }
  }

  for (const [algorithm, compute] of Object.entries(CHECKSUMS)) {
    const name = `x-amz-checksum-${algorithm}`;
    const expected = header(ctx, name) ?? trailers[name];
    if (expected === undefined) continue;
    if (compute(payload) !== expected.trim()) {
      throw s3Error(
        "BadDigest",
        400,
        `The ${algorithm.toUpperCase()} you specified did not match the calculated checksum.`,
      );
    }
  }
  return payload;
}

/** Both STREAMING-UNSIGNED-PAYLOAD-TRAILER and signed (";chunk-signature=...") framings; signatures unchecked. */
function decodeAwsChunked(raw: Buffer): { payload: Buffer; trailers: Record<string, string> } {
  const chunks: Buffer[] = [];
  const trailers: Record<string, string> = {};
  const malformed = () =>
    s3Error("IncompleteBody", 400, "The request body is not valid aws-chunked encoding.");
  let position = 0;
  for (;;) {
    const lineEnd = raw.indexOf("\r\n", position);
    if (lineEnd === -1) throw malformed();
    const sizeText = raw.toString("latin1", position, lineEnd).split(";")[0]?.trim() ?? "";
    if (!/^[0-9a-f]+$/i.test(sizeText)) throw malformed();
    const size = Number.parseInt(sizeText, 16);
    position = lineEnd + 2;
    if (size === 0) break;
    if (position + size + 2 > raw.length) throw malformed();
    chunks.push(raw.subarray(position, position + size));
    position += size;
    if (raw.toString("latin1", position, position + 2) !== "\r\n") throw malformed();
    position += 2;
  }
  for (const line of raw.toString("latin1", position).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { payload: Buffer.concat(chunks), trailers };
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32c(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (CRC32C_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function uint32Base64(value: number): string {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value >>> 0);
  return buffer.toString("base64");
}

/** Checksums verified; others the SDK can send (CRC64NVME, XXHASH*) are accepted unverified. */
const CHECKSUMS: Record<string, (data: Buffer) => string> = {
  crc32: (data) => uint32Base64(crc32(data)),
  crc32c: (data) => uint32Base64(crc32c(data)),
  sha1: (data) => createHash("sha1").update(data).digest("base64"),
  sha256: (data) => createHash("sha256").update(data).digest("base64"),
  sha512: (data) => createHash("sha512").update(data).digest("base64"),
  md5: (data) => createHash("md5").update(data).digest("base64"),
};

// ---------------------------------------------------------------------------------------------------------
// ListObjects / ListObjectsV2.

async function listObjects(store: FilesystemStore, ctx: KoaContext, bucket: string): Promise<void> {
  const q = (name: string) => single(ctx.query[name]);
  const v2 = q("list-type") === "2";
  const prefix = q("prefix") ?? "";
  const delimiter = q("delimiter") ?? "";
  const encodingType = q("encoding-type");
  if (encodingType !== undefined && encodingType !== "url") {
    throw new S3Error("InvalidArgument", "Invalid Encoding Method specified in Request", {
      ArgumentName: "encoding-type",
      ArgumentValue: encodingType,
    });
  }
  const encode = (value: string) =>
    encodingType === "url" ? encodeURIComponent(value).replace(/%2F/g, "/") : value;

  let maxKeys = 1000;
  const maxKeysText = q("max-keys");
  if (maxKeysText !== undefined) {
    if (!/^\d+$/.test(maxKeysText) || Number(maxKeysText) > 2147483647) {
      throw new S3Error("InvalidArgument", "Provided max-keys not an integer or within integer range", {
        ArgumentName: "max-keys",
        ArgumentValue: maxKeysText,
      });
    }
    maxKeys = Math.min(1000, Number(maxKeysText));
  }

  let after = "";
  const continuationToken = q("continuation-token");
  const startAfter = q("start-after");
  const marker = q("marker");
  if (v2) {
    if (marker !== undefined) {
      throw new S3Error("InvalidArgument", "Marker unsupported with REST.GET.BUCKET in list-type=2", {
        ArgumentName: "marker",
      });
    }
    if (continuationToken !== undefined) after = decodeContinuationToken(continuationToken, bucket);
    else after = startAfter ?? "";
  } else {
    if (continuationToken !== undefined || startAfter !== undefined) {
      throw new S3Error(
        "InvalidArgument",
        "continuation-token and start-after are only supported with list-type=2",
        {
          ArgumentName: continuationToken !== undefined ? "continuation-token" : "start-after",
        },
      );
    }
    after = marker ?? "";
  }
  // Resuming after a common prefix skips everything rolled up into it.
  const afterIsCommonPrefix =
    delimiter !== "" &&
    after.length > prefix.length &&
    after.startsWith(prefix) &&
    after.indexOf(delimiter, prefix.length) === after.length - delimiter.length;
  const afterBytes = Buffer.from(after);

  type Entry = { key: string } | { commonPrefix: string };
  const entries: Entry[] = [];
  let truncated = false;
  let lastCommonPrefix: string | undefined;
  if (maxKeys > 0) {
    for (const key of await listKeys(store, bucket, prefix)) {
      if (Buffer.compare(Buffer.from(key), afterBytes) <= 0) continue;
      if (afterIsCommonPrefix && key.startsWith(after)) continue;
      let entry: Entry = { key };
      if (delimiter !== "") {
        const index = key.indexOf(delimiter, prefix.length);
        if (index !== -1) {
          const commonPrefix = key.slice(0, index + delimiter.length);
          if (commonPrefix === lastCommonPrefix) continue;
          entry = { commonPrefix };
        }
      }
      if (entries.length >= maxKeys) {
        truncated = true;
        break;
      }
      entries.push(entry);
      if ("commonPrefix" in entry) lastCommonPrefix = entry.commonPrefix;
    }
  }

  const contents = [];
  for (const entry of entries) {
    if (!("key" in entry)) continue;
    const metadata = await store.getMetadata(bucket, entry.key).catch((error: unknown) => {
      if (isMissingFileError(error)) return undefined; // deleted while listing
      throw error;
    });
    if (!metadata) continue;
    contents.push({
      Key: encode(entry.key),
      LastModified: new Date(String(metadata["last-modified"])).toISOString(),
      ETag: String(metadata.etag),
      Size: Number(metadata["content-length"]),
      Owner:
        !v2 || q("fetch-owner") === "true"
          ? { ID: accounts.DUMMY_ACCOUNT.id, DisplayName: accounts.DUMMY_ACCOUNT.displayName }
          : undefined,
      StorageClass: "STANDARD",
    });
  }
  const commonPrefixes = entries.flatMap((entry) =>
    "commonPrefix" in entry ? [{ Prefix: encode(entry.commonPrefix) }] : [],
  );
  const last = entries.at(-1);
  const lastName = last === undefined ? "" : "key" in last ? last.key : last.commonPrefix;

  ctx.body = {
    ListBucketResult: {
      "@": { xmlns: "http://s3.amazonaws.com/doc/2006-03-01/" },
      Name: bucket,
      Prefix: encode(prefix),
      ...(v2
        ? {
            StartAfter:
              continuationToken === undefined && startAfter !== undefined ? encode(startAfter) : undefined,
            ContinuationToken: continuationToken,
            NextContinuationToken: truncated ? encodeContinuationToken(bucket, lastName) : undefined,
            KeyCount: entries.length,
          }
        : {
            Marker: encode(marker ?? ""),
            NextMarker: truncated && delimiter !== "" ? encode(lastName) : undefined,
          }),
      MaxKeys: maxKeysText ?? 1000,
      Delimiter: delimiter !== "" ? encode(delimiter) : undefined,
      EncodingType: encodingType,
      IsTruncated: truncated,
      Contents: contents,
      CommonPrefixes: commonPrefixes,
    },
  };
}

/** All keys under `prefix`, in S3 order (UTF-8 byte order). Tolerates files vanishing mid-walk. */
async function listKeys(store: FilesystemStore, bucket: string, prefix: string): Promise<string[]> {
  const statics = store.constructor as unknown as FilesystemStoreStatics;
  const keys: string[] = [];
  const visit = async (directory: string, relative: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(directory, { withFileTypes: true });
    } catch (error) {
      if (isMissingFileError(error)) return;
      throw error;
    }
    for (const entry of entries) {
      if (entry.isDirectory()) {
        if (relative === "" && entry.name.endsWith(UPLOADS_SUFFIX)) continue;
        const child = `${relative}${statics.decodeKeyPath(entry.name)}/`;
        if (child.startsWith(prefix) || prefix.startsWith(child))
          await visit(path.join(directory, entry.name), child);
      } else if (entry.isFile() && entry.name.endsWith(OBJECT_SUFFIX)) {
        const key = relative + statics.decodeKeyPath(entry.name.slice(0, -OBJECT_SUFFIX.length));
        if (key.startsWith(prefix)) keys.push(key);
      }
    }
  };
  await visit(store.getBucketPath(bucket), "");
  return keys
    .map((key) => ({ key, bytes: Buffer.from(key) }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map(({ key }) => key);
}

function encodeContinuationToken(bucket: string, after: string): string {
  return Buffer.from(JSON.stringify({ b: bucket, a: after })).toString("base64url");
}

function decodeContinuationToken(token: string, bucket: string): string {
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as {
      b?: unknown;
      a?: unknown;
    };
    if (parsed.b === bucket && typeof parsed.a === "string") return parsed.a;
  } catch {
    // fall through
  }
  throw new S3Error("InvalidArgument", "The continuation token provided is incorrect", {
    ArgumentName: "continuation-token",
  });
}

// ---------------------------------------------------------------------------------------------------------
// Store fixes: atomic writes, consistent ETags, S3-style multipart.

/** Streams `content` into the file, through `hash`; returns how many bytes it wrote. */
async function writeHashed(content: Readable | Buffer, hash: Hash, handle: FileHandle): Promise<number> {
  let size = 0;
  const measure = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  await pipeline(content, measure, handle.createWriteStream());
  return size;
}

function hardenStore(store: FilesystemStore): void {
  const statics = store.constructor as unknown as FilesystemStoreStatics;

  store.putObject = async (object) => {
    const objectPath = store.getResourcePath(object.bucket, object.key, "object");
    const hash = createHash("md5");
    let size = 0;
    await writeAtomically(objectPath, async (handle) => {
      const whole = Buffer.isBuffer(object.content) ? object.content : BUFFERED_BODIES.get(object.content);
      if (whole) {
        hash.update(whole);
        size = whole.length;
        await handle.writeFile(whole);
        return;
      }
      size = await writeHashed(object.content, hash, handle);
    });
    const md5 = hash.digest("hex");
    await store.putMetadata(object.bucket, object.key, object.metadata, md5);
    return { md5, size };
  };

  // s3rver answers UploadPart once its hash has seen the bytes, not once the file holds them: a Complete right
  // after could find a part shorter than it is (EntityTooSmall on a busy machine). Written whole, then named.
  store.putPart = async (bucket, uploadId, partNumber, content) => {
    const partPath = path.join(uploadDirectory(store, bucket, uploadId), String(partNumber));
    const hash = createHash("md5");
    let size = 0;
    await writeAtomically(partPath, async (handle) => {
      size = await writeHashed(content, hash, handle);
    });
    const md5 = hash.digest("hex");
    await fsp.writeFile(`${partPath}.md5`, md5);
    return { md5, size };
  };

  store.copyObject = async (srcBucket, srcKey, destBucket, destKey, replacementMetadata) => {
    const srcPath = store.getResourcePath(srcBucket, srcKey, "object");
    const destPath = store.getResourcePath(destBucket, destKey, "object");
    const source = await store.getMetadata(srcBucket, srcKey);
    let md5 = String(source.etag).replace(/"/g, "");
    if (srcPath !== destPath) {
      // The kernel copies the file (copy_file_range), not a read and write stream through this process.
      await writeAtomically(destPath, async (_handle, temp) => fsp.copyFile(srcPath, temp));
    } else {
      const now = new Date();
      await fsp.utimes(destPath, now, now);
    }
    // A single-request copy of a multipart object gets a plain MD5 ETag on S3.
    if (md5.includes("-")) md5 = await md5OfFile(destPath);
    // s3rver left the destination's old .md5 file in place on a REPLACE copy: a stale ETag.
    await store.putMetadata(destBucket, destKey, replacementMetadata ?? source, md5);
    return store.getMetadata(destBucket, destKey);
  };

  store.deleteObject = async (bucket, key) => {
    await Promise.all(
      ["object", "object.md5", "metadata.json", "tagging.xml"].map((resource) =>
        fsp.rm(store.getResourcePath(bucket, key, resource), { force: true }),
      ),
    );
    // Remove directories left empty; concurrent deletes in one directory race here (s3rver threw ENOENT).
    const parts = statics.encodeKeyPath(key).split("/");
    parts.pop();
    while (parts.length > 0) {
      try {
        await fsp.rmdir(path.join(store.getBucketPath(bucket), ...parts));
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "ENOENT") break; // ENOTEMPTY/EEXIST: still in use
      }
      parts.pop();
    }
  };

  store.putObjectMultipart = async (bucket, uploadId, parts) => {
    const uploadDir = uploadDirectory(store, bucket, uploadId);
    const [key, metadataText] = await Promise.all([
      fsp.readFile(path.join(uploadDir, "key"), "utf8"),
      fsp.readFile(path.join(uploadDir, "metadata"), "utf8"),
    ]).catch(() => {
      throw new S3Error("NoSuchUpload", "The specified upload does not exist.", { UploadId: uploadId });
    });
    const invalidPart = (part: { number: number; etag: string }) =>
      new S3Error(
        "InvalidPart",
        "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
        { UploadId: uploadId, PartNumber: part.number, ETag: part.etag },
      );
    const partFiles: { file: string; md5: string; size: number }[] = [];
    let previous = 0;
    for (const part of parts) {
      if (!(part.number > previous)) {
        throw new S3Error(
          "InvalidPartOrder",
          "The list of parts was not in ascending order. Parts must be ordered by part number.",
          { UploadId: uploadId },
        );
      }
      previous = part.number;
      const file = path.join(uploadDir, String(part.number));
      const md5 = await fsp.readFile(`${file}.md5`, "utf8").catch(() => undefined);
      if (md5 === undefined || md5 !== part.etag) throw invalidPart(part);
      partFiles.push({ file, md5, size: (await fsp.stat(file)).size });
    }
    partFiles.forEach(({ size }, index) => {
      if (index < partFiles.length - 1 && size < MIN_PART_SIZE) {
        throw new S3Error(
          "EntityTooSmall",
          "Your proposed upload is smaller than the minimum allowed object size.",
          {
            ProposedSize: size,
            MinSizeAllowed: MIN_PART_SIZE,
          },
        );
      }
    });

    const objectPath = store.getResourcePath(bucket, key, "object");
    let size = 0;
    await writeAtomically(objectPath, async (handle) => {
      const out = handle.createWriteStream();
      for (const part of partFiles) {
        await pipeline((await fsp.open(part.file)).createReadStream(), out, { end: false });
        size += part.size;
      }
      out.end();
      await new Promise<void>((resolve, reject) => {
        out.once("close", resolve);
        out.once("error", reject);
      });
    });
    const etag = `${createHash("md5")
      .update(Buffer.concat(partFiles.map((part) => Buffer.from(part.md5, "hex"))))
      .digest("hex")}-${partFiles.length}`;
    await store.putMetadata(bucket, key, JSON.parse(metadataText) as Metadata, etag);
    await fsp.rm(uploadDir, { recursive: true, force: true });
    return { md5: etag, size };
  };
}

/** Writes a sibling temp file and renames it over `target`, so readers see the old or the new object. */
async function writeAtomically(
  target: string,
  write: (handle: FileHandle, temp: string) => Promise<void>,
): Promise<void> {
  const temp = `${target}.${randomBytes(6).toString("hex")}.tmp`;
  let handle: FileHandle | undefined;
  for (let attempt = 0; !handle; attempt++) {
    await fsp.mkdir(path.dirname(target), { recursive: true });
    try {
      handle = await fsp.open(temp, "wx");
    } catch (error) {
      // a concurrent delete may remove the (empty) directory between mkdir and open
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= 3) throw error;
    }
  }
  try {
    await write(handle, temp);
    await handle.close();
    handle = undefined;
    await fsp.rename(temp, target);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await fsp.rm(temp, { force: true });
    throw error;
  }
}

async function md5OfFile(file: string): Promise<string> {
  const hash = createHash("md5");
  for await (const chunk of (await fsp.open(file)).createReadStream()) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers.

/** FIFO mutex per name; several names are taken in sorted order, so two requests never deadlock. */
class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async acquire(names: string[]): Promise<() => void> {
    const releases: (() => void)[] = [];
    for (const name of [...new Set(names)].sort()) releases.push(await this.acquireOne(name));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const release of releases.reverse()) release();
    };
  }

  private async acquireOne(name: string): Promise<() => void> {
    const previous = this.tails.get(name) ?? Promise.resolve();
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => held);
    this.tails.set(name, tail);
    await previous;
    return () => {
      release();
      if (this.tails.get(name) === tail) this.tails.delete(name);
    };
  }
}

function header(ctx: KoaContext, name: string): string | undefined {
  const value = ctx.headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

function single(value: HeaderValue): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function decodeXmlText(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, entity: string) => {
    const lower = entity.toLowerCase();
    if (lower.startsWith("#x")) return String.fromCodePoint(Number.parseInt(lower.slice(2), 16));
    if (lower.startsWith("#")) return String.fromCodePoint(Number.parseInt(lower.slice(1), 10));
    return { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }[lower] ?? _;
  });
}

function isMissingFileError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}
