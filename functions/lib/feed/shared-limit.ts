import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import {
  customerLimit,
  FIRST_PROBE_ROUNDS,
  learnedHint,
  PageWindow,
  runningIterations,
  shareOf,
  startingWindow,
} from "../citrix/page-window";
import type { CollectorConfig } from "../config/config";
import type { CollectInput, PageWindowHint } from "../config/contracts";
import { collectedResultPrefix } from "./keys";
import { readPageWindowHint, sharePageWindow } from "./page-window-hint";

/** How often an iteration sharing a known limit counts those of its run that finished (one S3 LIST). */
const RECOUNT_MS = 2_000;

export interface SharedLimitDeps {
  store: S3Store;
  config: Pick<CollectorConfig, "controlPrefix" | "maxPagesInFlight">;
  now: () => number;
  log: Logger;
}

/** What an entity-hour learned of the customer's limit, before it is stamped with the time it learned it. */
type LearnedLimit = Pick<PageWindowHint, "limit" | "throttled" | "probeRounds">;

/**
 * The Citrix API's limit is the customer's, shared by the iterations paging at once, this one included (see
 * planIterations). This entity-hour's page window starts from what earlier ones learned of it (the page
 * window's hint), and what it learns is shared with the iterations and executions that start later (see
 * mergedHint): written only when it tells more than what was last shared, one write at a time.
 * The Map's last iterations run beside fewer others: while a known limit is shared, this one counts the
 * entity-hours of its run that have finished (at most every RECOUNT_MS, without holding up paging) and takes
 * the larger share they left.
 */
export class SharedLimit {
  private hintWrite: Promise<unknown> = Promise.resolve();
  private readonly startHint: PageWindowHint | undefined;
  private recountAtMs: number;
  private recount: Promise<void> | undefined;

  private constructor(
    private readonly deps: SharedLimitDeps,
    private readonly runId: string,
    /** This iteration's page window: its share of the limit. */
    readonly window: PageWindow,
    private iterations: number,
    private readonly inAll: number,
    private sharedHint: PageWindowHint | undefined,
  ) {
    this.startHint = sharedHint;
    this.recountAtMs = deps.now() + RECOUNT_MS;
  }

  /**
   * The window this invocation starts with: the previous invocation's for this entity-hour, else this
   * iteration's share of the page window's hint (see startingWindow), else a fresh one. The hint is read in
   * either case, so that what this entity-hour learns is compared with it; unreadable, it is ignored.
   */
  static async open(deps: SharedLimitDeps, input: CollectInput): Promise<SharedLimit> {
    const { store, config, now, log } = deps;
    const iterations = input.iterationsAtOnce ?? 1;
    const resumed = input.progress?.window;
    let hint: PageWindowHint | undefined;
    try {
      hint = await readPageWindowHint(store, config.controlPrefix, now());
    } catch (error) {
      log.warn("could not read the shared page window; finding it afresh", { reason: String(error) });
    }
    let window: PageWindow;
    if (resumed || !hint) window = new PageWindow(config.maxPagesInFlight, resumed);
    else {
      const state = startingWindow(hint, iterations);
      log.info("starting from the page window the Citrix API last allowed", {
        ...hint,
        iterations,
        ...state,
      });
      window = new PageWindow(config.maxPagesInFlight, state);
    }
    const inAll = input.iterationsInAll ?? iterations;
    return new SharedLimit(deps, input.runId, window, iterations, inAll, hint);
  }

  /** The $top the API is known to serve in full, from the hint this invocation started with (see PageWalker). */
  get servedTop(): number | undefined {
    return this.startHint?.servedTop;
  }

  /** The window was throttled: the customer's limit, as this iteration's own limit shows it, is shared. */
  throttled(crowded: boolean): void {
    const { limit = 1, probeRounds = FIRST_PROBE_ROUNDS } = this.window.state;
    this.share({ limit: customerLimit(limit, this.iterations, crowded), throttled: true, probeRounds });
  }

  /** Counts the iterations of this run still running, if it is time to (see the class comment). */
  recountIterations(): void {
    const { store, config, now, log } = this.deps;
    if (this.recount || this.iterations <= 1 || !this.sharedHint?.throttled || now() < this.recountAtMs)
      return;
    this.recount = store
      .listKeys(collectedResultPrefix(config.controlPrefix, this.runId))
      .then(
        (finished) => this.takeShareLeftBy(finished.length),
        (error: unknown) => log.warn("could not count the finished entity-hours", { reason: String(error) }),
      )
      .finally(() => {
        this.recount = undefined;
        this.recountAtMs = now() + RECOUNT_MS;
      });
  }

  /**
   * Waits for the recount and the writes of the hint under way. `peakServed` is the most requests the API
   * served at once for this invocation: if it never refused one in an entity-hour that is `done`, that is a
   * floor of the limit, from which later executions start. `servedTop` is the $top the API served a full page
   * of, if it did.
   */
  async settle(done: boolean, peakServed: number, servedTop: number | undefined): Promise<void> {
    await this.recount;
    const served = done && this.window.state.limit === undefined && peakServed > 0;
    this.share(
      served ? { limit: peakServed, throttled: false, probeRounds: FIRST_PROBE_ROUNDS } : undefined,
      servedTop,
    );
    await this.hintWrite;
  }

  private takeShareLeftBy(finished: number): void {
    const running = runningIterations(this.iterations, this.inAll, finished);
    if (running >= this.iterations || !this.sharedHint?.throttled) return;
    this.iterations = running;
    this.window.raiseLimit(shareOf(this.sharedHint.limit, running));
    this.deps.log.info("fewer iterations share the Citrix API's limit; a larger share for this one", {
      iterations: this.iterations,
      ...this.window.state,
    });
  }

  private share(learnedLimit: LearnedLimit | undefined, servedTop?: number): void {
    const { store, config, now, log } = this.deps;
    const nowMs = now();
    const learned = learnedLimit && { ...learnedLimit, at: new Date(nowMs).toISOString() };
    const merged = learnedHint(this.sharedHint, learned, servedTop);
    if (!merged) return;
    this.sharedHint = merged;
    this.hintWrite = this.hintWrite
      .then(() => sharePageWindow(store, config.controlPrefix, nowMs, learned, servedTop))
      .catch((error: unknown) => log.warn("could not share the page window", { reason: String(error) }));
  }
}
