import type { S3Store } from "../aws/s3-store";
import { learnedHint } from "../citrix/page-window";
import { type PageWindowHint, pageWindowHintSchema } from "../config/contracts";
import { pageWindowHintKey } from "./keys";

/** A hint older than this is found afresh: the tenant, its limits and our settings change. */
const PAGE_WINDOW_HINT_TTL_MS = 24 * 3_600_000;

/**
 * The page window's hint (pageWindowHintKey), if it was learned in the past day. It is advice: a missing,
 * unreadable or older one is none. Storage failures are thrown.
 */
export async function readPageWindowHint(
  store: S3Store,
  controlPrefix: string,
  nowMs: number,
): Promise<PageWindowHint | undefined> {
  const stored = await store.getText(pageWindowHintKey(controlPrefix));
  if (!stored) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(stored.body);
  } catch {
    return undefined;
  }
  const parsed = pageWindowHintSchema.safeParse(body);
  return parsed.success && nowMs - Date.parse(parsed.data.at) < PAGE_WINDOW_HINT_TTL_MS
    ? parsed.data
    : undefined;
}

/**
 * Adds what an entity-hour learned to the stored hint (see learnedHint), reading it again just before: the
 * iterations beside this one write it too.
 */
export async function sharePageWindow(
  store: S3Store,
  controlPrefix: string,
  nowMs: number,
  learned: PageWindowHint | undefined,
  servedTop: number | undefined,
): Promise<void> {
  const current = await readPageWindowHint(store, controlPrefix, nowMs);
  const merged = learnedHint(current, learned, servedTop);
  if (merged) await store.put(pageWindowHintKey(controlPrefix), JSON.stringify(merged), "application/json");
}
