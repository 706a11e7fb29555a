import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../functions/lib/aws/log";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import type { CollectInput, PageWindowHint } from "../../../functions/lib/config/contracts";
import {
  collectedResultPrefix,
  pageWindowHintKey,
  runFinishedKey,
  runFinishedPrefix,
} from "../../../functions/lib/feed/keys";
import { SharedLimit } from "../../../functions/lib/feed/shared-limit";
import { type LocalS3, startLocalS3 } from "../../../stand-ins/s3-server";
import { pageWindowHint } from "../../support/stand";

// SharedLimit on its own, against the local S3: what the collector's tests reach only through whole runs
// (docs/testing.md: the recount's guards and the floor an entity-hour shares).
const BUCKET = "shared-limit-test";
const CONTROL = "_control";
const RUN = "run-1";
const HOUR = "2026-11-24T08:00:00Z";
const START = Date.parse("2026-11-24T09:20:00Z");

let s3: LocalS3;
let store: S3Store;
beforeAll(async () => {
  s3 = await startLocalS3({ buckets: [BUCKET] });
  store = new S3Store(s3.client(), BUCKET);
});
afterAll(async () => {
  await s3.close();
});

let nowMs = START;
let listings: string[] = [];
let logs: Record<string, unknown>[] = [];
beforeEach(async () => {
  await store.deleteKeys(await store.listKeys(""));
  nowMs = START;
  listings = [];
  logs = [];
});

/** The store SharedLimit is given: it counts the listings (the recounts) and can be made to fail them. */
function countingStore(failListings = false): S3Store {
  const counted = new S3Store(store.client, BUCKET);
  const list = counted.listKeys.bind(counted);
  counted.listKeys = async (prefix, startAfter) => {
    listings.push(prefix);
    if (failListings) throw new Error("listing refused");
    return list(prefix, startAfter);
  };
  return counted;
}

function open(input: Partial<CollectInput> = {}, limitStore: S3Store = countingStore()): SharedLimit {
  return SharedLimit.open(
    {
      store: limitStore,
      config: { controlPrefix: CONTROL, maxPagesInFlight: 32 },
      now: () => nowMs,
      log: createLogger({}, (line) => {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }),
    },
    { runId: RUN, entity: "sessions", hourUtc: HOUR, rest: [], ...input },
  );
}

const storeHint = (fields: Partial<PageWindowHint>) =>
  store.put(pageWindowHintKey(CONTROL), pageWindowHint(START, fields), "application/json");
const storedHint = async () =>
  JSON.parse((await store.getText(pageWindowHintKey(CONTROL)))?.body ?? "null") as PageWindowHint | null;
const finishRuns = (...items: number[]) =>
  Promise.all(items.map((item) => store.put(runFinishedKey(CONTROL, RUN, item), "{}", "application/json")));
/** Lets the recount under way (if any) settle. */
const settled = (limit: SharedLimit) =>
  limit.settle(
    false,
    0,
    undefined,
    createLogger({}, () => {}),
  );

describe("SharedLimit", () => {
  it("starts a fresh entity-hour at one request until the hint is read, then at its share of the hint", async () => {
    await storeHint({ limit: 6, throttled: true });
    const limit = open({ iterationsAtOnce: 3, iterationsInAll: 3, itemIndex: 0 });
    expect(limit.window.state).toEqual({ size: 1 });
    await limit.ready;
    expect(limit.window.state).toMatchObject({ size: 2, limit: 2 });
  });

  it("gives the remainder of the limit by the item's index, and none to an item that does not say", async () => {
    await storeHint({ limit: 7, throttled: true });
    const shares = async (input: Partial<CollectInput>) => {
      const limit = open({ iterationsAtOnce: 3, ...input });
      await limit.ready;
      return limit.window.state.limit;
    };
    // 7 among 3: 2 each, and one more for the first item, when all three run at once from the start.
    expect(await shares({ iterationsInAll: 3, itemIndex: 0 })).toBe(3);
    expect(await shares({ iterationsInAll: 3, itemIndex: 2 })).toBe(2);
    expect(await shares({ itemIndex: 0 })).toBe(3);
    expect(await shares({})).toBe(2);
    // More items than run at once: the iterations running are not the first items, so nobody gets it.
    expect(await shares({ iterationsInAll: 5, itemIndex: 0 })).toBe(2);
  });

  it("shares the most requests served at once as a floor only for a finished entity-hour under no known limit", async () => {
    const floor = async (done: boolean, peakServed: number, throttledHint = false) => {
      await store.deleteKeys(await store.listKeys(""));
      if (throttledHint) await storeHint({ limit: 2, throttled: true });
      const limit = open();
      await limit.settle(
        done,
        peakServed,
        undefined,
        createLogger({}, () => {}),
      );
      await limit.shared;
      return (await storedHint())?.limit;
    };
    expect(await floor(true, 5)).toBe(5);
    expect(await floor(false, 5)).toBeUndefined();
    expect(await floor(true, 0)).toBeUndefined();
    // A limit the API enforced is what the window keeps; what it served under it is no floor.
    expect(await floor(true, 1, true)).toBe(2);
  });

  it("keeps what the hint says when an entity-hour learned nothing new", async () => {
    await storeHint({ limit: 3, throttled: true, servedTop: 1000 });
    const limit = open();
    await limit.settle(
      true,
      1,
      undefined,
      createLogger({}, () => {}),
    );
    await limit.shared;
    expect(limit.servedTop).toBe(1000);
    expect(await storedHint()).toMatchObject({ limit: 3, throttled: true, servedTop: 1000 });
  });

  it("recounts the finished runs only when the limit is known and shared, and every RECOUNT_MS at most", async () => {
    // Nothing shared (one iteration at a time, or no limit the API enforced): never.
    await storeHint({ limit: 4, throttled: false });
    const unthrottled = open({ iterationsAtOnce: 4, iterationsInAll: 4 });
    await unthrottled.ready;
    nowMs += 10_000;
    unthrottled.recountIterations();
    await storeHint({ limit: 4, throttled: true });
    const alone = open({ iterationsAtOnce: 1, iterationsInAll: 4 });
    await alone.ready;
    nowMs += 10_000;
    alone.recountIterations();
    expect(listings).toEqual([]);

    await store.deleteKeys([pageWindowHintKey(CONTROL)]);
    const unknown = open({ iterationsAtOnce: 4, iterationsInAll: 4 });
    await unknown.ready;
    nowMs += 10_000;
    unknown.recountIterations();
    expect(listings).toEqual([]);

    await storeHint({ limit: 4, throttled: true });
    nowMs = START;
    const shared = open({ iterationsAtOnce: 4, iterationsInAll: 4, itemIndex: 0 });
    await shared.ready;
    nowMs += 1_999;
    shared.recountIterations();
    expect(listings).toEqual([]);
    nowMs += 1;
    shared.recountIterations();
    // One recount at a time.
    shared.recountIterations();
    expect(listings).toEqual([runFinishedPrefix(CONTROL, RUN)]);
    await settled(shared);
    shared.recountIterations();
    expect(listings).toHaveLength(1);
    nowMs += 2_000;
    shared.recountIterations();
    expect(listings).toHaveLength(2);
  });

  it("takes the share the finished runs left, and recounts again after a listing that failed, which it logs", async () => {
    await storeHint({ limit: 4, throttled: true });
    const limit = open({ iterationsAtOnce: 4, iterationsInAll: 4, itemIndex: 3 });
    await limit.ready;
    expect(limit.window.state.limit).toBe(1);
    await finishRuns(0, 1);
    nowMs += 2_000;
    limit.recountIterations();
    await settled(limit);
    // Two of four ran to the end: the other two share the limit of 4.
    expect(limit.window.state.limit).toBe(2);
    expect(logs.filter((line) => line.message?.toString().startsWith("fewer iterations share"))).toEqual([
      expect.objectContaining({ iterations: 2 }),
    ]);

    const failing = open({ iterationsAtOnce: 4, iterationsInAll: 4, itemIndex: 3 }, countingStore(true));
    await failing.ready;
    nowMs += 2_000;
    failing.recountIterations();
    await settled(failing);
    expect(logs.filter((line) => line.message === "could not count the finished entity-hours")).toEqual([
      expect.objectContaining({ level: "WARN", reason: "Error: listing refused" }),
    ]);
    nowMs += 2_000;
    failing.recountIterations();
    expect(listings.filter((prefix) => prefix === runFinishedPrefix(CONTROL, RUN))).toHaveLength(3);
  });

  it("counts the items still to start: two of four finished leave two running beside this one's", async () => {
    await storeHint({ limit: 4, throttled: true });
    const limit = open({ iterationsAtOnce: 2, iterationsInAll: 4, itemIndex: 1 });
    await limit.ready;
    await finishRuns(0, 2);
    nowMs += 2_000;
    limit.recountIterations();
    await settled(limit);
    // Items 1 and 3 still run two at a time: the share stays 4 / 2.
    expect(limit.window.state.limit).toBe(2);
    await finishRuns(3);
    nowMs += 2_000;
    limit.recountIterations();
    await settled(limit);
    expect(limit.window.state.limit).toBe(4);
  });

  it("finds the limit afresh when the hint cannot be read, and says why", async () => {
    await storeHint({ limit: 2, throttled: true });
    const unreadable = new S3Store(store.client, BUCKET);
    unreadable.getText = async () => {
      throw new Error("read refused");
    };
    const limit = open({ iterationsAtOnce: 2 }, unreadable);
    await limit.ready;
    expect(limit.window.state).toEqual({ size: 4, growing: true });
    expect(
      logs.filter((line) => line.message === "could not read the shared page window; finding it afresh"),
    ).toEqual([expect.objectContaining({ level: "WARN", reason: "Error: read refused" })]);
  });

  it("counts the items of an execution planned before runs by their results", async () => {
    await storeHint({ limit: 2, throttled: true });
    const limit = open({ iterationsAtOnce: 2, iterationsInAll: 2, rest: undefined });
    await limit.ready;
    nowMs += 2_000;
    limit.recountIterations();
    await settled(limit);
    expect(listings).toEqual([collectedResultPrefix(CONTROL, RUN)]);
  });
});
