import { describe, expect, it } from "vitest";
import { mapConcurrently } from "../../../functions/lib/feed/concurrency";

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("mapConcurrently", () => {
  it("keeps at most `limit` tasks running and returns results in item order", async () => {
    let running = 0;
    let most = 0;
    const results = await mapConcurrently([5, 1, 4, 2, 3, 0], 3, async (ms, index) => {
      running++;
      most = Math.max(most, running);
      await tick(ms);
      running--;
      return `${index}:${ms}`;
    });
    expect(results).toEqual(["0:5", "1:1", "2:4", "3:2", "4:3", "5:0"]);
    expect(most).toBe(3);
  });

  it("starts nothing after a failure, lets running tasks settle, then rejects with the first failure", async () => {
    const started: number[] = [];
    const settled: number[] = [];
    const outcome = mapConcurrently([0, 1, 2, 3, 4], 2, async (item) => {
      started.push(item);
      await tick(item === 1 ? 1 : 10);
      settled.push(item);
      if (item === 1) throw new Error("one failed");
      if (item === 0) throw new Error("zero failed later");
      return item;
    });
    await expect(outcome).rejects.toThrow("one failed");
    // 1 failed while 0 still ran: 0 was let finish, 2 to 4 never started.
    expect(started).toEqual([0, 1]);
    expect(settled).toEqual([1, 0]);
  });

  it("handles no items and a limit above the item count", async () => {
    expect(await mapConcurrently([], 4, async () => 1)).toEqual([]);
    expect(await mapConcurrently([1, 2], 10, async (n) => n * 2)).toEqual([2, 4]);
  });
});
