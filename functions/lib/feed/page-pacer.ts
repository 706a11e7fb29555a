import type { Logger } from "../aws/log";
import type { CitrixClient, RequestPacing } from "../citrix/citrix-client";
import { CitrixUnavailableError } from "../config/errors";
import type { SharedLimit } from "./shared-limit";

/** A page request as the pacer tracks it, from the moment it is created until its page arrives or it is dropped. */
export class PacedRequest {
  /** While the API serves it (it counts against the window). */
  sending = false;
  /** The Retry-After its client backoff waits out before it is sent again (see RequestPacing.ready). */
  waitedForMs = 0;

  constructor(
    /** When its last attempt went out: its page's latency counts from there. */
    public sentAtMs: number,
  ) {}
}

export interface PagePacerDeps {
  citrix: CitrixClient;
  now: () => number;
  log: Logger;
}

/**
 * Paces the page requests of one invocation. How many the API serves at once is the window's call (see
 * PageWindow, whose limit is this iteration's share of the customer's, see SharedLimit): a request waits for
 * room in it before every attempt, retries included, and a Retry-After holds back all of them.
 */
export class PagePacer {
  /** Requests the API serves now. */
  private sending = 0;
  private roomWaiters: (() => void)[] = [];
  /** The latest time a Retry-After asked the window's requests to wait until. */
  private notBeforeMs = 0;
  /** The latest such time some request of the window has waited out. */
  private waitedForMs = 0;
  private mostServedAtOnce = 0;

  constructor(
    private readonly deps: PagePacerDeps,
    private readonly limit: SharedLimit,
    /** No request is sent after this: a Retry-After that reaches it ends the request. */
    private readonly deadlineMs: number,
  ) {}

  /** The most requests the API served at once for this invocation: what it allows, if it never refuses. */
  get peakServed(): number {
    return this.mostServedAtOnce;
  }

  /** How many requests the window allows at once. */
  get allowed(): number {
    return this.limit.window.allowed;
  }

  /** The pacing CitrixClient.getPage applies to `request`'s attempts. */
  pacing(request: PacedRequest): RequestPacing {
    return {
      ready: (signal) => this.ready(request, signal),
      pushedBack: (status, retryAfterMs) => this.pushedBack(request, status, retryAfterMs),
    };
  }

  /** The window learns from a page when it arrives, not when its turn to be written comes. */
  arrived(request: PacedRequest, full: boolean): void {
    this.limit.window.completed({ full, latencyMs: this.deps.now() - request.sentAtMs });
    this.mostServedAtOnce = Math.max(this.mostServedAtOnce, this.sending);
    this.stopped(request);
  }

  /** `request` no longer counts against the window (it failed, was dropped, or waits to be sent again). */
  stopped(request: PacedRequest): void {
    if (!request.sending) return;
    request.sending = false;
    this.sending--;
    const woken = this.roomWaiters;
    this.roomWaiters = [];
    for (const wake of woken) wake();
  }

  private async ready(request: PacedRequest, signal: AbortSignal | undefined): Promise<void> {
    const { citrix, now } = this.deps;
    this.stopped(request);
    // A Retry-After some request of the window has waited out (here, or this one in the client's own
    // backoff, which has just ended) is not waited again, whatever the clock says (a test's clock may
    // stand still while pauses are skipped); only a later one is.
    this.waitedForMs = Math.max(this.waitedForMs, request.waitedForMs);
    for (;;) {
      signal?.throwIfAborted();
      const notBeforeMs = this.notBeforeMs;
      if (notBeforeMs > this.waitedForMs && notBeforeMs > now()) {
        if (notBeforeMs >= this.deadlineMs) {
          throw new CitrixUnavailableError(
            `the Citrix API asked to wait until ${new Date(notBeforeMs).toISOString()}, past this invocation's time budget`,
            { retryAtMs: notBeforeMs },
          );
        }
        await citrix.pause(notBeforeMs - now(), signal);
        this.waitedForMs = Math.max(this.waitedForMs, notBeforeMs);
      } else if (this.sending >= this.limit.window.allowed) {
        await untilAborted(new Promise<void>((resolve) => this.roomWaiters.push(resolve)), signal);
      } else break;
    }
    request.sending = true;
    this.sending++;
    request.sentAtMs = now();
  }

  private pushedBack(
    request: PacedRequest,
    status: number | undefined,
    retryAfterMs: number | undefined,
  ): boolean {
    const { now, log } = this.deps;
    if (retryAfterMs !== undefined) this.notBeforeMs = Math.max(this.notBeforeMs, now() + retryAfterMs);
    this.stopped(request);
    // A throttle is the window's to space out (see PageWindow): the request goes again when one of its
    // own others finishes. Alone, or for an unwell API, it gets the client's backoff.
    const throttle = status === 429;
    // The API's answer counts the others still being served (this one has stopped sending).
    const crowded = this.limit.window.pushedBack(throttle ? "throttled" : "failed", this.sending);
    if (throttle) this.limit.throttled(crowded);
    log.info("the Citrix API pushed back; fewer page requests in flight", {
      status,
      ...this.limit.window.state,
    });
    const paced = throttle && this.sending > 0;
    // Otherwise the client's backoff waits at least the Retry-After, for this request.
    if (!paced && retryAfterMs !== undefined) request.waitedForMs = now() + retryAfterMs;
    return paced;
  }
}

/** `promise`, or the signal's reason once it is aborted. */
function untilAborted(promise: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    promise.then(() => {
      signal.removeEventListener("abort", abort);
      resolve();
    });
  });
}
