import { gunzipSync } from "node:zlib";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../../functions/lib/aws/log";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import { readODataPage } from "../../../functions/lib/citrix/odata-page";
import { Envelope } from "../../../functions/lib/feed/envelope";
import { NdjsonPartWriter, type PartLimits } from "../../../functions/lib/feed/part-writer";
import { type LocalS3, startLocalS3 } from "../../../stand-ins/s3-server";

const BUCKET = "part-writer-test";
const ENVELOPE = new Envelope("sessions", "2026-11-24T08:00:00Z", "2026-11-24T09:00:00.000Z");

let s3: LocalS3;
let client: S3Client;

beforeAll(async () => {
  s3 = await startLocalS3({ buckets: [BUCKET] });
  client = s3.client();
});

afterAll(async () => {
  await s3?.close();
});

/** The NDJSON line the writer makes of `record`, without its "\n". */
function line(record: object): string {
  const page = readODataPage(Buffer.from(JSON.stringify({ value: [record] })));
  const target = Buffer.alloc(ENVELOPE.lineLength(page.records, 0));
  ENVELOPE.writeLine(page.records, 0, target, 0);
  return target.toString("utf8", 0, target.length - 1);
}

let runs = 0;

/** Writes `pages` (records per page) through one writer; returns each part's lines, the writer and its logs. */
async function write(pages: object[][], limits: PartLimits, store = new S3Store(client, BUCKET)) {
  const prefix = `run-${++runs}`;
  const logs: string[] = [];
  const writer = new NdjsonPartWriter(
    store,
    limits,
    (part) => `${prefix}/part-${part}`,
    createLogger({}, (entry) => logs.push(entry)),
  );
  for (const records of pages) {
    await writer.add(ENVELOPE, readODataPage(Buffer.from(JSON.stringify({ value: records }))).records);
  }
  await writer.finish();
  const parts: string[][] = [];
  const contentTypes: string[] = [];
  let storedBytes = 0;
  for (let part = 0; part < writer.sealed; part++) {
    const object = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}/part-${part}` }));
    const stored = Buffer.from(await (object.Body?.transformToByteArray() ?? new Uint8Array()));
    storedBytes += stored.length;
    contentTypes.push(object.ContentType ?? "");
    const text = (limits.gzip ? gunzipSync(stored) : stored).toString("utf8");
    expect(text.endsWith("\n")).toBe(true);
    parts.push(text.slice(0, -1).split("\n"));
  }
  const written = logs
    .map((entry) => JSON.parse(entry) as { message: string; part: number; records: number; bytes: number })
    .filter((entry) => entry.message === "wrote staging part")
    .map(({ part, records, bytes }) => ({ part, records, bytes }));
  return { parts, contentTypes, storedBytes, writer, written };
}

const records = (count: number, from = 0) =>
  Array.from({ length: count }, (_, i) => ({ Id: from + i, x: "y" }));

describe("NdjsonPartWriter", () => {
  it("cuts parts at PART_MAX_RECORDS, across pages, each line once and in order", async () => {
    const { parts, writer, written, storedBytes, contentTypes } = await write([records(3), records(4, 3)], {
      maxRecords: 3,
      maxBytes: 1 << 20,
      gzip: false,
    });
    expect(parts).toEqual([records(3).map(line), records(3, 3).map(line), records(1, 6).map(line)]);
    expect(writer.sealed).toBe(3);
    expect(writer.storedBytes).toBe(storedBytes);
    expect(contentTypes).toEqual(Array(3).fill("application/x-ndjson"));
    expect(written).toEqual(
      parts.map((lines, part) => ({
        part,
        records: lines.length,
        bytes: Buffer.byteLength(`${lines.join("\n")}\n`),
      })),
    );
  });

  it("cuts parts at PART_MAX_BYTES: a part is full when the next line would pass the limit, not before", async () => {
    const lineBytes = Buffer.byteLength(`${line(records(1)[0] as object)}\n`);
    const exact = await write([records(5)], { maxRecords: 100, maxBytes: 2 * lineBytes, gzip: false });
    expect(exact.parts.map((lines) => lines.length)).toEqual([2, 2, 1]);
    const short = await write([records(5)], { maxRecords: 100, maxBytes: 2 * lineBytes - 1, gzip: false });
    expect(short.parts.map((lines) => lines.length)).toEqual([1, 1, 1, 1, 1]);
  });

  it("gives a record longer than PART_MAX_BYTES a part of its own", async () => {
    const big = { Id: 1, text: "x".repeat(5000) };
    const { parts } = await write(
      [
        [big, { Id: 0 }, big, { Id: 2 }],
        [big, big],
      ],
      {
        maxRecords: 100,
        maxBytes: 1000,
        gzip: false,
      },
    );
    // The first line of the hour too: no empty part before it.
    expect(parts).toEqual([
      [line(big)],
      [line({ Id: 0 })],
      [line(big)],
      [line({ Id: 2 })],
      [line(big)],
      [line(big)],
    ]);
  });

  it("keeps every line of many parts intact while it reuses their buffers", async () => {
    // Each part is filled while the previous one uploads, in the buffer of the one before.
    const { parts } = await write([records(40)], { maxRecords: 2, maxBytes: 1 << 20, gzip: false });
    expect(parts.flat()).toEqual(records(40).map(line));
  });

  it("gzips parts when GZIP is on, and counts the stored (compressed) bytes", async () => {
    const { parts, writer, storedBytes, contentTypes, written } = await write([records(500)], {
      maxRecords: 300,
      maxBytes: 1 << 20,
      gzip: true,
    });
    expect(parts).toEqual([records(300).map(line), records(200, 300).map(line)]);
    expect(contentTypes).toEqual(["application/gzip", "application/gzip"]);
    expect(writer.storedBytes).toBe(storedBytes);
    expect(storedBytes).toBeLessThan(Buffer.byteLength(parts.flat().join("\n")) / 4);
    expect(written.map(({ bytes }) => bytes).reduce((a, b) => a + b)).toBe(storedBytes);
  });

  it("writes nothing for an hour without records", async () => {
    const { parts, writer, written } = await write([[], []], { maxRecords: 10, maxBytes: 1000, gzip: false });
    expect(parts).toEqual([]);
    expect(writer.sealed).toBe(0);
    expect(written).toEqual([]);
  });

  it("reports a failed upload at the next part or at finish, never as an unhandled rejection", async () => {
    const nowhere = new S3Store(client, "no-such-bucket");
    await expect(
      write([records(1)], { maxRecords: 10, maxBytes: 1000, gzip: false }, nowhere),
    ).rejects.toThrow(/PutObject run-\d+\/part-0/);
    await expect(
      write([records(3)], { maxRecords: 1, maxBytes: 1000, gzip: false }, nowhere),
    ).rejects.toThrow(/PutObject run-\d+\/part-0/);
  });

  it("leaves no unhandled rejection behind when its caller fails before finish()", async () => {
    // A rejection nobody handles ends a Node process: the invocation would die instead of failing cleanly.
    class WatchedStore extends S3Store {
      settled: Promise<unknown> = Promise.resolve();
      override put(...args: Parameters<S3Store["put"]>) {
        const result = super.put(...args);
        this.settled = result.catch(() => undefined);
        return result;
      }
    }
    const nowhere = new WatchedStore(client, "no-such-bucket");
    const writer = new NdjsonPartWriter(
      nowhere,
      { maxRecords: 1, maxBytes: 1000, gzip: false },
      (part) => `abandoned/part-${part}`,
      createLogger({}, () => undefined),
    );
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      // Part 0 is sealed and uploading when the caller stops, as if its next page had failed.
      await writer.add(ENVELOPE, readODataPage(Buffer.from(JSON.stringify({ value: records(2) }))).records);
      await nowhere.settled;
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
    expect(unhandled).toEqual([]);
    await expect(writer.finish()).rejects.toThrow(/PutObject abandoned\/part-0/);
  });
});
