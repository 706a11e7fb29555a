import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalS3, startLocalS3 } from "../../../stand-ins/s3-server";

const BUCKET = "collector-test";
const OTHER_BUCKET = "other";
const MiB = 1024 * 1024;

let s3: LocalS3;
let client: S3Client;

beforeAll(async () => {
  s3 = await startLocalS3({ buckets: [BUCKET, OTHER_BUCKET] });
  client = s3.client();
});

afterAll(async () => {
  await s3?.close();
});

let counter = 0;
function uniqueKey(name: string): string {
  counter += 1;
  return `t${counter}/${name}`;
}

async function put(
  key: string,
  body: string | Uint8Array,
  extra: { IfNoneMatch?: string; IfMatch?: string } = {},
) {
  return client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ...extra }));
}

async function getText(key: string, bucket = BUCKET): Promise<{ body: string; etag: string | undefined }> {
  const result = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return { body: (await result.Body?.transformToString("utf-8")) ?? "", etag: result.ETag };
}

async function rejection(promise: Promise<unknown>): Promise<S3ServiceException> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(S3ServiceException);
    return error as S3ServiceException;
  }
  throw new Error("expected the request to fail");
}

async function expectS3Error(promise: Promise<unknown>, name: string, status: number): Promise<void> {
  const error = await rejection(promise);
  expect({ name: error.name, status: error.$metadata.httpStatusCode }).toEqual({ name, status });
}

function md5Hex(data: Uint8Array | string): string {
  return createHash("md5").update(data).digest("hex");
}

describe("startLocalS3", () => {
  it("listens on 127.0.0.1 and removes its own temp directory on close", async () => {
    const other = await startLocalS3({ buckets: ["b"] });
    expect(other.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(existsSync(other.directory)).toBe(true);
    const c = other.client();
    await c.send(new PutObjectCommand({ Bucket: "b", Key: "k", Body: "x" }));
    // any access key id is accepted (SigV4 signatures are not verified), not only s3rver's own
    const foreign = new S3Client({
      endpoint: other.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "AKIAEXAMPLE", secretAccessKey: "secret" },
      maxAttempts: 1,
    });
    await foreign.send(new PutObjectCommand({ Bucket: "b", Key: "k2", Body: "y" }));
    foreign.destroy();
    await other.close();
    expect(existsSync(other.directory)).toBe(false);
    await other.close(); // idempotent
  });
});

describe("PutObject If-None-Match: * (create-only)", () => {
  it("creates once, then answers 412 PreconditionFailed and keeps the first content", async () => {
    const key = uniqueKey("manifest.json");
    const first = await put(key, "first", { IfNoneMatch: "*" });
    expect(first.ETag).toBe(`"${md5Hex("first")}"`);
    await expectS3Error(put(key, "second", { IfNoneMatch: "*" }), "PreconditionFailed", 412);
    expect((await getText(key)).body).toBe("first");
  });

  it("answers with an S3-style XML error body", async () => {
    const key = uniqueKey("raw.txt");
    await put(key, "exists");
    // s3rver lets unsigned requests through, which makes the raw response easy to look at.
    const response = await fetch(`${s3.endpoint}/${BUCKET}/${key}`, {
      method: "PUT",
      headers: { "If-None-Match": "*" },
      body: "again",
    });
    expect(response.status).toBe(412);
    expect(response.headers.get("content-type")).toContain("application/xml");
    const xml = await response.text();
    expect(xml).toContain("<Error>");
    expect(xml).toContain("<Code>PreconditionFailed</Code>");
    expect(xml).toContain("<Message>At least one of the pre-conditions you specified did not hold</Message>");
    expect(xml).toContain("<Condition>If-None-Match</Condition>");
    expect((await getText(key)).body).toBe("exists");
  });

  it("lets exactly one of 20 concurrent create-only writes win", async () => {
    const key = uniqueKey("race.json");
    const bodies = Array.from({ length: 20 }, (_, i) => `writer-${i}`);
    const results = await Promise.allSettled(bodies.map((body) => put(key, body, { IfNoneMatch: "*" })));
    const winners = results.flatMap((result, i) => (result.status === "fulfilled" ? [i] : []));
    expect(winners).toHaveLength(1);
    for (const result of results) {
      if (result.status === "rejected") {
        const error = result.reason as S3ServiceException;
        expect(error.name).toBe("PreconditionFailed");
        expect(error.$metadata.httpStatusCode).toBe(412);
      }
    }
    const winner = winners[0] ?? -1;
    const stored = await getText(key);
    expect(stored.body).toBe(bodies[winner]);
    const won = results[winner];
    expect(won?.status === "fulfilled" ? won.value.ETag : undefined).toBe(stored.etag);
  });

  it("rejects If-None-Match values other than * as S3 does (501 NotImplemented)", async () => {
    const key = uniqueKey("inm.txt");
    await expectS3Error(put(key, "x", { IfNoneMatch: '"abc"' }), "NotImplemented", 501);
  });
});

describe("PutObject If-Match (optimistic update)", () => {
  it("writes with the current ETag, refuses a stale one, and answers 404 for a missing key", async () => {
    const key = uniqueKey("watermark.json");
    const v1 = await put(key, '{"v":1}');
    const read = await getText(key);
    expect(read.etag).toBe(v1.ETag);

    const v2 = await put(key, '{"v":2}', { IfMatch: read.etag });
    expect(v2.ETag).toBe(`"${md5Hex('{"v":2}')}"`);

    await expectS3Error(put(key, '{"v":3}', { IfMatch: read.etag }), "PreconditionFailed", 412);
    expect((await getText(key)).body).toBe('{"v":2}');

    await expectS3Error(put(uniqueKey("missing.json"), "x", { IfMatch: read.etag }), "NoSuchKey", 404);
  });

  it("accepts the ETag unquoted", async () => {
    const key = uniqueKey("unquoted.txt");
    const v1 = await put(key, "one");
    const unquoted = (v1.ETag ?? "").replace(/"/g, "");
    await put(key, "two", { IfMatch: unquoted });
    expect((await getText(key)).body).toBe("two");
  });

  it("serializes read-modify-write cycles: of concurrent updates from one ETag exactly one wins", async () => {
    const key = uniqueKey("counter.json");
    const base = await put(key, "0");
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => put(key, `update-${i}`, { IfMatch: base.ETag })),
    );
    expect(results.filter((result) => result.status === "fulfilled")).toHaveLength(1);
  });

  it("still overwrites unconditionally", async () => {
    const key = uniqueKey("plain.txt");
    await put(key, "a");
    await put(key, "b");
    expect((await getText(key)).body).toBe("b");
  });
});

describe("ETags", () => {
  it("GetObject and HeadObject return the ETag PutObject returned", async () => {
    const key = uniqueKey("etag.bin");
    const body = randomBytes(1000);
    const written = await put(key, body);
    expect(written.ETag).toBe(`"${md5Hex(body)}"`);
    expect((await getText(key)).etag).toBe(written.ETag);
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(head.ETag).toBe(written.ETag);
    expect(head.ContentLength).toBe(1000);
  });

  it("objects written by CopyObject report the same ETag everywhere", async () => {
    const source = uniqueKey("src.txt");
    const destination = uniqueKey("dst.txt");
    const written = await put(source, "copy me");
    await put(destination, "old destination content");
    const copied = await client.send(
      new CopyObjectCommand({
        Bucket: BUCKET,
        Key: destination,
        CopySource: `${BUCKET}/${source}`,
        MetadataDirective: "REPLACE",
        ContentType: "text/plain",
      }),
    );
    expect(copied.CopyObjectResult?.ETag).toBe(written.ETag);
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: destination }));
    expect(head.ETag).toBe(written.ETag);
    expect(head.ContentType).toBe("text/plain");
    expect(await getText(destination)).toEqual({ body: "copy me", etag: written.ETag });
  });
});

describe("CopyObject", () => {
  it("answers 412 for If-None-Match: * on an existing destination and copies to a new one", async () => {
    const source = uniqueKey("staging/part-00000.ndjson");
    const existing = uniqueKey("feed/part-00000.ndjson");
    const fresh = uniqueKey("feed/part-00001.ndjson");
    await put(source, "new");
    await put(existing, "published");
    await expectS3Error(
      client.send(
        new CopyObjectCommand({
          Bucket: BUCKET,
          Key: existing,
          CopySource: `${BUCKET}/${source}`,
          IfNoneMatch: "*",
        }),
      ),
      "PreconditionFailed",
      412,
    );
    expect((await getText(existing)).body).toBe("published");
    await client.send(
      new CopyObjectCommand({
        Bucket: BUCKET,
        Key: fresh,
        CopySource: `${BUCKET}/${source}`,
        IfNoneMatch: "*",
      }),
    );
    expect((await getText(fresh)).body).toBe("new");
  });

  it("enforces If-Match on the destination and x-amz-copy-source-if-match on the source", async () => {
    const source = uniqueKey("s.txt");
    const destination = uniqueKey("d.txt");
    const src = await put(source, "source");
    await put(destination, "destination");
    await expectS3Error(
      client.send(
        new CopyObjectCommand({
          Bucket: BUCKET,
          Key: destination,
          CopySource: `${BUCKET}/${source}`,
          IfMatch: src.ETag,
        }),
      ),
      "PreconditionFailed",
      412,
    );
    await expectS3Error(
      client.send(
        new CopyObjectCommand({
          Bucket: BUCKET,
          Key: uniqueKey("x.txt"),
          CopySource: `${BUCKET}/${source}`,
          CopySourceIfMatch: '"0123456789abcdef0123456789abcdef"',
        }),
      ),
      "PreconditionFailed",
      412,
    );
    await expectS3Error(
      client.send(
        new CopyObjectCommand({
          Bucket: BUCKET,
          Key: uniqueKey("never-written.txt"),
          CopySource: `${BUCKET}/${source}`,
          IfMatch: src.ETag,
        }),
      ),
      "NoSuchKey",
      404,
    );
  });

  it("finds sources whose keys needed percent-encoding (Hive-style '=' keys, as the collector encodes them)", async () => {
    const source = uniqueKey("staging/year=2026/month=11/day=24/hour=08/part+1 (a).ndjson");
    const destination = uniqueKey("feed/year=2026/month=11/day=24/hour=08/part-00000.ndjson");
    await put(source, "hive");
    const copySource = `${BUCKET}/${source.split("/").map(encodeURIComponent).join("/")}`;
    await client.send(new CopyObjectCommand({ Bucket: BUCKET, Key: destination, CopySource: copySource }));
    expect((await getText(destination)).body).toBe("hive");
  });

  it("copies across buckets", async () => {
    const key = uniqueKey("cross.txt");
    await put(key, "across");
    await client.send(
      new CopyObjectCommand({ Bucket: OTHER_BUCKET, Key: key, CopySource: `${BUCKET}/${key}` }),
    );
    expect((await getText(key, OTHER_BUCKET)).body).toBe("across");
  });
});

describe("multipart upload", () => {
  async function multipart(key: string, parts: Buffer[], complete: { IfNoneMatch?: string } = {}) {
    const created = await client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const uploadId = created.UploadId ?? "";
    const uploaded = await Promise.all(
      parts.map(async (body, i) => {
        const result = await client.send(
          new UploadPartCommand({
            Bucket: BUCKET,
            Key: key,
            UploadId: uploadId,
            PartNumber: i + 1,
            Body: body,
          }),
        );
        return { ETag: result.ETag, PartNumber: i + 1 };
      }),
    );
    const completion = client.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: uploaded },
        ...complete,
      }),
    );
    return { uploadId, completion };
  }

  it("assembles 3 parts of 5 MiB that read back intact with an S3-style ETag", async () => {
    const key = uniqueKey("big.ndjson");
    const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(5 * MiB)];
    const { completion } = await multipart(key, parts);
    const completed = await completion;
    const expectedEtag = `"${md5Hex(Buffer.concat(parts.map((part) => Buffer.from(md5Hex(part), "hex"))))}-3"`;
    expect(completed.ETag).toBe(expectedEtag);

    const result = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    const bytes = Buffer.from((await result.Body?.transformToByteArray()) ?? []);
    expect(bytes.length).toBe(15 * MiB);
    expect(bytes.equals(Buffer.concat(parts))).toBe(true);
    expect(result.ETag).toBe(expectedEtag);
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(head.ETag).toBe(expectedEtag);
  });

  it("answers 412 to Complete with If-None-Match: * when the key exists, and the upload can be aborted", async () => {
    const key = uniqueKey("exists.ndjson");
    await put(key, "already here");
    const { uploadId, completion } = await multipart(key, [randomBytes(5 * MiB), Buffer.from("tail")], {
      IfNoneMatch: "*",
    });
    await expectS3Error(completion, "PreconditionFailed", 412);
    expect((await getText(key)).body).toBe("already here");
    await client.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId }));
    await expectS3Error(
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"x"' }] },
        }),
      ),
      "NoSuchUpload",
      404,
    );
  });

  it("rejects parts under 5 MiB that are not the last (EntityTooSmall)", async () => {
    const { completion } = await multipart(uniqueKey("small.bin"), [Buffer.from("a"), Buffer.from("b")]);
    await expectS3Error(completion, "EntityTooSmall", 400);
  });
});

describe("ListObjectsV2", () => {
  async function listAll(prefix: string, extra: { MaxKeys?: number; Delimiter?: string } = {}) {
    const pages: ListObjectsV2CommandOutput[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token, ...extra }),
      );
      pages.push(page);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return pages;
  }

  it("paginates with MaxKeys and continuation tokens, in S3 key order", async () => {
    const prefix = uniqueKey("list/");
    // "a-c" < "a/b" in S3 (byte) order, although a directory walk meets "a/" first.
    const names = ["a/b", "a-c", "a.d", "b", "c/d/e", "c0", "z"];
    for (const name of names) await put(`${prefix}${name}`, name);
    const pages = await listAll(prefix, { MaxKeys: 3 });
    expect(pages.map((page) => page.KeyCount)).toEqual([3, 3, 1]);
    expect(pages.map((page) => page.IsTruncated)).toEqual([true, true, false]);
    const keys = pages.flatMap((page) => (page.Contents ?? []).map((object) => object.Key));
    expect(keys).toEqual([...names].sort().map((name) => `${prefix}${name}`));
    const first = pages[0]?.Contents?.[0];
    expect(first?.Size).toBe(3);
    expect(first?.ETag).toBe(`"${md5Hex("a-c")}"`);
  });

  it("lists common prefixes across pages without repeating them", async () => {
    const prefix = uniqueKey("tree/");
    for (const name of ["x/1", "x/2", "y/1", "y/2", "z", "zz/1"]) await put(`${prefix}${name}`, name);
    const pages = await listAll(prefix, { MaxKeys: 2, Delimiter: "/" });
    // Common prefixes count towards MaxKeys, as on S3: x/ y/ | z zz/
    expect(pages.map((page) => page.KeyCount)).toEqual([2, 2]);
    expect(pages.flatMap((page) => (page.CommonPrefixes ?? []).map((p) => p.Prefix))).toEqual([
      `${prefix}x/`,
      `${prefix}y/`,
      `${prefix}zz/`,
    ]);
    expect(pages.flatMap((page) => (page.Contents ?? []).map((o) => o.Key))).toEqual([`${prefix}z`]);
  });

  it("returns everything in one page below 1000 keys", async () => {
    const prefix = uniqueKey("one-page/");
    await Promise.all(
      Array.from({ length: 25 }, (_, i) => put(`${prefix}${String(i).padStart(3, "0")}`, "x")),
    );
    const pages = await listAll(prefix);
    expect(pages).toHaveLength(1);
    expect(pages[0]?.KeyCount).toBe(25);
    expect(pages[0]?.IsTruncated).toBe(false);
  });
});

describe("deletes", () => {
  it("DeleteObjects removes many keys sharing directories", async () => {
    const prefix = uniqueKey("staging/run-1/");
    const keys = Array.from({ length: 30 }, (_, i) => `${prefix}entity/hour=0${i % 3}/part-${i}.ndjson`);
    await Promise.all(keys.map((key) => put(key, "x")));
    const result = await client.send(
      new DeleteObjectsCommand({
        Bucket: BUCKET,
        Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
      }),
    );
    expect(result.Errors ?? []).toEqual([]);
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
    expect(listed.KeyCount).toBe(0);
  });

  it("DeleteObject honours If-Match", async () => {
    const key = uniqueKey("delete-me.txt");
    const written = await put(key, "v1");
    await expectS3Error(
      client.send(
        new DeleteObjectCommand({ Bucket: BUCKET, Key: key, IfMatch: '"0123456789abcdef0123456789abcdef"' }),
      ),
      "PreconditionFailed",
      412,
    );
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key, IfMatch: written.ETag }));
    await expectS3Error(client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key })), "NoSuchKey", 404);
  });
});

describe("request bodies and checksums", () => {
  it("decodes aws-chunked streaming uploads (the SDK's default for stream bodies)", async () => {
    const key = uniqueKey("stream.ndjson");
    const lines = Array.from({ length: 100 }, (_, i) => `${JSON.stringify({ i })}\n`);
    const expected = lines.join("");
    await client.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: key,
        Body: Readable.from(lines.map((line) => Buffer.from(line))),
        ContentLength: Buffer.byteLength(expected),
        ContentType: "application/x-ndjson",
      }),
    );
    const result = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(await result.Body?.transformToString("utf-8")).toBe(expected);
    expect(result.ContentEncoding).toBeUndefined();
    expect(result.ContentType).toBe("application/x-ndjson");
    expect(result.ETag).toBe(`"${md5Hex(expected)}"`);
  });

  it("rejects a body whose checksum does not match (BadDigest)", async () => {
    const key = uniqueKey("corrupt.txt");
    await expectS3Error(
      client.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "payload", ChecksumCRC32: "AAAAAA==" }),
      ),
      "BadDigest",
      400,
    );
    await expectS3Error(client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })), "NotFound", 404);
  });

  it("answers GetObject If-Match with 412 when the ETag is stale", async () => {
    const key = uniqueKey("read-cond.txt");
    await put(key, "v1");
    await expectS3Error(
      client.send(
        new GetObjectCommand({ Bucket: BUCKET, Key: key, IfMatch: '"0123456789abcdef0123456789abcdef"' }),
      ),
      "PreconditionFailed",
      412,
    );
  });
});
