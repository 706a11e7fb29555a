import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import { InvalidInputError } from "../../../functions/lib/config/errors";
import { publishedMarkerKey } from "../../../functions/lib/feed/keys";
import {
  advanceWatermark,
  publishedHoursAfter,
  readWatermark,
  recoverWatermark,
} from "../../../functions/lib/feed/watermark";
import { type LocalS3, startLocalS3 } from "../../../stand-ins/s3-server";

const BUCKET = "watermark-test";
const CONTROL = "_control";
const STATE = `${CONTROL}/state.json`;
const SEED = "citrix_analytics/state.json";
const LAYOUT = { stateKey: STATE, controlPrefix: CONTROL };
const H = (hour: number) => `2026-11-24T${String(hour).padStart(2, "0")}:00:00Z`;

let s3: LocalS3;
let store: S3Store;
beforeAll(async () => {
  s3 = await startLocalS3({ buckets: [BUCKET] });
  store = new S3Store(s3.client(), BUCKET);
});
afterAll(async () => {
  await s3.close();
});
beforeEach(async () => {
  await store.deleteKeys(await store.listKeys(""));
});

const state = (body: string, key = STATE) => store.put(key, body, "application/json");
const publish = (hour: number, watermark: string | null = null) =>
  store.put(
    publishedMarkerKey(CONTROL, H(hour)),
    JSON.stringify({ manifest: "m", by: "b", at: "t", watermark }),
    "application/json",
  );
const stored = async () =>
  JSON.parse((await store.getText(STATE))?.body ?? "null") as Record<string, unknown>;

describe("readWatermark", () => {
  it("reads the state file with its ETag, in the seed's formats too", async () => {
    const { etag } = (await state('{"last_hour_utc":"2026-11-24T08:00:00+00:00"}')) as { etag: string };
    expect(await readWatermark(store, STATE)).toEqual({ hourUtc: H(8), etag });
    await state('{"last_hour_utc":"2026-11-24T09:00:00.000000Z"}');
    expect((await readWatermark(store, STATE)).hourUtc).toBe(H(9));
  });

  it("falls back to the seed's state file, which is never written (no ETag)", async () => {
    await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}', SEED);
    expect(await readWatermark(store, STATE, SEED)).toEqual({ hourUtc: H(7), etag: null });
    expect(await readWatermark(store, STATE)).toEqual({ hourUtc: null, etag: null });
    await state('{"last_hour_utc":"2026-11-24T08:00:00Z"}');
    expect((await readWatermark(store, STATE, SEED)).hourUtc).toBe(H(8));
  });

  it("is empty when neither file exists, a seed key included", async () => {
    expect(await readWatermark(store, STATE, SEED)).toEqual({ hourUtc: null, etag: null });
  });

  it.each(["{}", '{"last_hour_utc":null}', "null", "42", "[]", '"text"'])(
    "reads %s as no watermark yet",
    async (body) => {
      await state(body);
      expect((await readWatermark(store, STATE)).hourUtc).toBeNull();
    },
  );

  it.each([
    ["not json", "is not JSON"],
    ['{"last_hour_utc":"2026-11-24T08:30:00Z"}', '"2026-11-24T08:30:00Z", which is not a whole UTC hour'],
    ['{"last_hour_utc":1732435200}', "1732435200, which is not a whole UTC hour"],
  ])("refuses %s by name, saying where and why", async (body, why) => {
    await state(body, SEED);
    const error = await readWatermark(store, STATE, SEED).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toContain(`state file s3://${BUCKET}/${SEED}`);
    expect((error as Error).message).toContain(why);
  });
});

describe("publishedHoursAfter", () => {
  it("lists the hours with a marker, all or only those after an hour, oldest first", async () => {
    for (const hour of [10, 8, 9, 12]) await publish(hour);
    await store.put(`${CONTROL}/published/not-a-marker`, "{}", "application/json");
    expect(await publishedHoursAfter(store, CONTROL, null)).toEqual([H(8), H(9), H(10), H(12)]);
    expect(await publishedHoursAfter(store, CONTROL, H(9))).toEqual([H(10), H(12)]);
    expect(await publishedHoursAfter(store, CONTROL, H(12))).toEqual([]);
  });
});

describe("recoverWatermark", () => {
  it("is undefined when nothing was ever published", async () => {
    expect(await recoverWatermark(store, CONTROL)).toBeUndefined();
  });

  it("continues from the newest marker's watermark over the contiguous hours after it, not past a gap", async () => {
    await publish(8, H(7));
    await publish(10, H(7));
    expect(await recoverWatermark(store, CONTROL)).toBe(H(8));
    await publish(9, H(7));
    expect(await recoverWatermark(store, CONTROL)).toBe(H(10));
  });

  it("starts from the watermark the newest marker records, not from the oldest marker", async () => {
    await publish(5, H(4));
    await publish(8, H(7));
    await publish(10, H(7));
    expect(await recoverWatermark(store, CONTROL)).toBe(H(8));
  });

  it("without any recorded watermark, continues over the run that starts at the oldest marker", async () => {
    await publish(8, null);
    await publish(10, null);
    expect(await recoverWatermark(store, CONTROL)).toBe(H(8));
  });

  it("without a usable watermark in the newest marker, trusts the run from the oldest marker", async () => {
    await publish(8, H(7));
    await publish(9, null);
    await publish(11, null);
    expect(await recoverWatermark(store, CONTROL)).toBe(H(9));
    await store.put(publishedMarkerKey(CONTROL, H(11)), "not json", "application/json");
    expect(await recoverWatermark(store, CONTROL)).toBe(H(9));
    await store.put(publishedMarkerKey(CONTROL, H(11)), '{"watermark":"yesterday"}', "application/json");
    expect(await recoverWatermark(store, CONTROL)).toBe(H(9));
  });
});

describe("advanceWatermark", () => {
  it("moves over contiguous published hours, writing the seed's field, never past a gap", async () => {
    const { etag } = (await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}')) as { etag: string };
    for (const hour of [8, 9, 11]) await publish(hour);
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag }, "run-1")).toBe(H(9));
    expect(await stored()).toMatchObject({ last_hour_utc: H(9), execution: "run-1" });
  });

  it("leaves a stored watermark alone when nothing after it is published", async () => {
    const { etag } = (await state('{"last_hour_utc":"2026-11-24T07:00:00Z"}')) as { etag: string };
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag }, "run-1")).toBe(H(7));
    expect((await store.getText(STATE))?.etag).toBe(etag);
  });

  it("stores a watermark known but not stored yet (a first run's start, a recovered one), create-only", async () => {
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag: null }, "run-1")).toBe(H(7));
    expect(await stored()).toMatchObject({ last_hour_utc: H(7) });
  });

  it("never creates one from nothing", async () => {
    await publish(8);
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: null, etag: null }, "backfill-1")).toBeNull();
    expect(await store.getText(STATE)).toBeUndefined();
  });

  it("re-reads after losing a write and never moves it backwards", async () => {
    await state('{"last_hour_utc":"2026-11-24T10:00:00Z"}');
    await publish(8);
    // Planned from 07:00 without a state file; another execution has since stored 10:00.
    expect(await advanceWatermark(store, LAYOUT, { hourUtc: H(7), etag: null }, "late-1")).toBe(H(10));
    expect(await stored()).toMatchObject({ last_hour_utc: H(10) });
  });
});
