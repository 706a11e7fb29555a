import type { Logger } from "../aws/log";
import type { S3Store } from "../aws/s3-store";
import {
  customerLimit,
  FIRST_PROBE_ROUNDS,
  learnedHint,
  type MapItem,
  PageWindow,
  runningIterations,
  shareOf,
  startingWindow,
} from "../citrix/page-window";
import type { CollectorConfig } from "../config/config";
import type { CollectInput, PageWindowHint } from "../config/contracts";
import { collectedResultPrefix, runFinishedPrefix } from "./keys";
import { readPageWindowHint, sharePageWindow } from "./page-window-hint";

/** How often an iteration sharing a known limit counts the Map items of its execution that finished (one S3 LIST). */
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
 * items of its execution's Map that have finished (at most every RECOUNT_MS, without holding up paging) and
 * takes the larger share they left. One is opened per invocation: the entity-hours of a run share it in turn.
 */
export class SharedLimit {
  private hintWrite: Promise<unknown> = Promise.resolve();
  private sharedHint: PageWindowHint | undefined;
  private current: PageWindow;
  /** Whether the window is the one request sent before the hint is read (see open). */
  private provisional: boolean;
  private recountAtMs: number;
  private recount: Promise<void> | undefined;
  private iterations: number;
  private readonly inAll: number;
  /** Its item in the Map, when its input says (see shareOf); a share without it gets none of the remainder. */
  private readonly item: MapItem | undefined;
  private readonly runId: string;
  /** Whether the Map's items are runs (see planRuns): then those finished are counted by their marks. */
  private readonly runs: boolean;
  /** Settles once the hint is read and the window it gives is in place; never rejects. */
  readonly ready: Promise<void>;

  /**
   * The window this invocation pages with: the previous invocation's for this entity-hour, else this
   * iteration's share of the page window's hint (see startingWindow), else a fresh one. The hint is read in
   * either case, so that what this entity-hour learns is compared with it; unreadable, it is ignored.
   * Until it is read (`ready`), a fresh entity-hour's window is one request: the first request goes out
   * meanwhile, and it goes out alone in any case (pages are guessed ahead only after a full page, see
   * PageWalker.guessesAhead), so no request slot waits for the hint.
   */
  static open(deps: SharedLimitDeps, input: CollectInput): SharedLimit {
    return new SharedLimit(deps, input);
  }

  private constructor(
    private deps: SharedLimitDeps,
    input: CollectInput,
  ) {
    const resumed = input.progress?.window;
    this.runId = input.runId;
    this.runs = input.rest !== undefined;
    this.iterations = input.iterationsAtOnce ?? 1;
    this.inAll = input.iterationsInAll ?? this.iterations;
    this.item = input.itemIndex === undefined ? undefined : { index: input.itemIndex, inAll: this.inAll };
    this.provisional = resumed === undefined;
    this.current = new PageWindow(deps.config.maxPagesInFlight, resumed ?? { size: 1 });
    this.recountAtMs = deps.now() + RECOUNT_MS;
    this.ready = this.readHint(resumed === undefined);
  }

  /** This iteration's page window: its share of the limit. */
  get window(): PageWindow {
    return this.current;
  }

  /** The $top the API is known to serve in full, from the hint or an entity-hour before (see PageWalker). */
  get servedTop(): number | undefined {
    return this.sharedHint?.servedTop;
  }

  /**
   * The run goes on to its next entity-hour, whose lines go to `log`. Under a limit the API enforced, it
   * starts at its share, as a fresh entity-hour would (see startingWindow): the window an entity-hour ends with
   * may be part way to a probe above the limit, and carried on, every run would probe more often than once per
   * probeRounds windows of an entity-hour, and be refused more. Otherwise the window carries on growing.
   */
  nextEntityHour(log: Logger): void {
    this.deps = { ...this.deps, log };
    const hint = this.sharedHint;
    if (!hint?.throttled) return;
    this.current = new PageWindow(
      this.deps.config.maxPagesInFlight,
      startingWindow(hint, this.iterations, this.item),
    );
  }

  /** Where its lines go from now on: the log of the entity-hour of the run being collected. */
  logTo(log: Logger): void {
    this.deps = { ...this.deps, log };
  }

  /** The window was throttled: the customer's limit, as this iteration's own limit shows it, is shared. */
  throttled(crowded: boolean): void {
    // One request refused before the hint was read says nothing of a share the iteration does not know yet.
    if (this.provisional) return;
    const { limit = 1, probeRounds = FIRST_PROBE_ROUNDS } = this.window.state;
    this.share({ limit: customerLimit(limit, this.iterations, crowded), throttled: true, probeRounds });
  }

  /** Counts the iterations of this run still running, if it is time to (see the class comment). */
  recountIterations(): void {
    const { store, config, now, log } = this.deps;
    if (this.recount || this.iterations <= 1 || !this.sharedHint?.throttled || now() < this.recountAtMs)
      return;
    // An execution planned before runs existed has an item per entity-hour, finished once its result is written.
    const finishedPrefix = this.runs ? runFinishedPrefix : collectedResultPrefix;
    this.recount = store
      .listKeys(finishedPrefix(config.controlPrefix, this.runId))
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
   * Waits for the hint's read and the recount, and shares what the entity-hour learned. `peakServed` is the
   * most requests the API served at once for this invocation: if it never refused one in an entity-hour that
   * is `done`, that is a floor of the limit, from which later executions start. `servedTop` is the $top the API
   * served a full page of, if it did. It runs while the run's next entity-hour pages: `log` is the settled
   * entity-hour's. The write of the hint goes on until `shared`.
   */
  async settle(done: boolean, peakServed: number, servedTop: number | undefined, log: Logger): Promise<void> {
    await this.ready;
    await this.recount;
    const served = done && this.window.state.limit === undefined && peakServed > 0;
    this.share(
      served ? { limit: peakServed, throttled: false, probeRounds: FIRST_PROBE_ROUNDS } : undefined,
      servedTop,
      log,
    );
  }

  /** Settles once the writes of the hint under way are done (or failed, which is logged); never rejects. */
  get shared(): Promise<unknown> {
    return this.hintWrite;
  }

  private async readHint(fresh: boolean): Promise<void> {
    const { store, config, now, log } = this.deps;
    let hint: PageWindowHint | undefined;
    try {
      hint = await readPageWindowHint(store, config.controlPrefix, now());
    } catch (error) {
      log.warn("could not read the shared page window; finding it afresh", { reason: String(error) });
    }
    this.sharedHint = hint;
    if (!fresh) return;
    if (hint) {
      const state = startingWindow(hint, this.iterations, this.item);
      log.info("starting from the page window the Citrix API last allowed", {
        ...hint,
        iterations: this.iterations,
        ...state,
      });
      this.current = new PageWindow(config.maxPagesInFlight, state);
    } else this.current = new PageWindow(config.maxPagesInFlight);
    this.provisional = false;
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

  private share(learnedLimit: LearnedLimit | undefined, servedTop?: number, log = this.deps.log): void {
    const { store, config, now } = this.deps;
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
