import type { AslDefinition, AslState } from "./asl-definition";

/**
 * The execution history AWS Step Functions keeps, rebuilt from aws-local-stepfunctions' own events as they are
 * dispatched: AWS's event types and `…EventDetails` as GetExecutionHistory returns them, numbered and linked
 * by previousEventId, and counted against AWS's quota of 25,000 events. The same place enforces the 256 KiB
 * quota on every state's input and output, so an execution fails here where it would fail on AWS.
 */

export const HISTORY_EVENT_LIMIT = 25_000;
export const STATE_PAYLOAD_LIMIT_BYTES = 256 * 1024;

/** One event as GetExecutionHistory returns it; `timestamp` in epoch milliseconds until it is written out. */
export interface HistoryEvent {
  timestamp: number;
  type: string;
  id: number;
  previousEventId: number;
  [details: string]: unknown;
}

/**
 * An error Step Functions raises itself. Neither Retry nor Catch handles it here (the engine reads these two
 * flags); on AWS, `States.ALL` does not match these either.
 */
export class StatesTerminalError extends Error {
  readonly isRetryable = false;
  readonly isCatchable = false;
  constructor(
    override readonly name: "States.DataLimitExceeded" | "States.Runtime",
    message: string,
  ) {
    super(message);
  }
}

/** The events aws-local-stepfunctions dispatches, as far as this file reads them. */
export interface EngineEvent {
  type: string;
  input?: unknown;
  output?: unknown;
  state?: { name: string; type: string; input: unknown; output?: unknown };
  Error?: string;
  Cause?: unknown;
}

/** The execution itself, or one Map iteration: each has its own chain of previousEventId. */
export interface HistoryFrame {
  iteration: { map: string; index: number } | undefined;
  lastEventId: number;
  /** AWS events this frame added to the history. */
  events: number;
  /** The lambda:invoke attempt in flight, so an attempt ends in the history once. */
  attempt: object | undefined;
  /** States this frame entered whose transition latency was not yet waited (see EngineLatencies). */
  unpacedStates: number;
}

/** What a Task's handler reports about one attempt, in the frame that scheduled it. */
export interface TaskAttempt {
  /** States its frame entered since the last attempt there, its own included: their latency is waited now. */
  unpacedStates: number;
  succeeded(output: unknown): void;
  failed(error: string, cause: string): void;
}

const LAMBDA = { resourceType: "lambda", resource: "invoke" };
/** The execution's own closing events: AWS logs them even as event 25,000. */
const CLOSING = new Set(["ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"]);
/** Events the root logger re-dispatches for Map iterations, already seen when the iteration dispatched them. */
const FORWARDED = /^(MapIteration|ParallelBranch)/;

export class ExecutionHistory {
  readonly events: HistoryEvent[] = [];
  private readonly root: HistoryFrame = {
    iteration: undefined,
    lastEventId: 0,
    events: 0,
    attempt: undefined,
    unpacedStates: 0,
  };
  private readonly frames: HistoryFrame[] = [];
  /** The frame that dispatched last: the engine invokes a Task's handler synchronously right after. */
  private current = this.root;
  private readonly seen = new WeakSet<object>();
  /** Map state name by its ItemProcessor (the definition each iteration's engine runs). */
  private readonly mapByProcessor = new Map<unknown, string>();
  private readonly mapStates = new Map<string, AslState>();
  private readonly iterationsStarted = new WeakMap<object, number>();
  private readonly mapLinks = new Map<string, { started?: number; succeeded?: number; failed?: number }>();

  constructor(
    definition: AslDefinition,
    private readonly region: string,
  ) {
    const walk = (states: Record<string, AslState>) => {
      for (const [name, state] of Object.entries(states)) {
        const processor = state.ItemProcessor ?? (state.Iterator as AslState["ItemProcessor"]);
        if (state.Type !== "Map" || !processor) continue;
        this.mapByProcessor.set(processor, name);
        this.mapStates.set(name, state);
        walk(processor.States);
      }
    };
    walk(definition.States);
  }

  /** AWS events per Map iteration, by item index. */
  iterationEvents(): Record<number, number> {
    return Object.fromEntries(
      this.frames.flatMap((frame) => (frame.iteration ? [[frame.iteration.index, frame.events]] : [])),
    );
  }

  /**
   * The frame one run of the engine's StateMachine records into: the execution, or the next iteration of
   * the Map whose ItemProcessor it runs (the engine starts a Map's iterations in item order).
   */
  frameFor(machine: object, definition: unknown): HistoryFrame {
    const map = this.mapByProcessor.get(definition);
    if (map === undefined) return this.root;
    const index = this.iterationsStarted.get(machine) ?? 0;
    this.iterationsStarted.set(machine, index + 1);
    const frame: HistoryFrame = {
      iteration: { map, index },
      lastEventId: 0,
      events: 0,
      attempt: undefined,
      unpacedStates: 0,
    };
    this.frames.push(frame);
    return frame;
  }

  /**
   * Records one engine event as AWS's events. Throws States.DataLimitExceeded or States.Runtime (history
   * full) where AWS would fail: the engine dispatches StateEntered and StateExited inside its state loop, so
   * the throw fails the state, and the execution, before the next state runs.
   */
  observe(frame: HistoryFrame, event: EngineEvent): void {
    if (frame === this.root && (this.seen.has(event) || FORWARDED.test(event.type))) return;
    this.seen.add(event);
    this.current = frame;
    const iteration = frame.iteration;
    const state = event.state;
    switch (event.type) {
      case "ExecutionStarted":
        if (iteration) {
          const link = this.mapLinks.get(iteration.map)?.started ?? 0;
          this.append(
            frame,
            "MapIterationStarted",
            { mapIterationStartedEventDetails: iterationDetails(iteration) },
            true,
            link,
          );
        } else {
          this.append(frame, "ExecutionStarted", {
            executionStartedEventDetails: { input: json(event.input), inputDetails: { truncated: false } },
          });
        }
        return;
      case "ExecutionSucceeded":
        if (iteration) {
          this.append(frame, "MapIterationSucceeded", {
            mapIterationSucceededEventDetails: iterationDetails(iteration),
          });
          this.link(iteration.map).succeeded = frame.lastEventId;
        } else {
          this.append(frame, "ExecutionSucceeded", {
            executionSucceededEventDetails: {
              output: json(event.output),
              outputDetails: { truncated: false },
            },
          });
        }
        return;
      case "ExecutionFailed":
        if (iteration) {
          this.append(frame, "MapIterationFailed", {
            mapIterationFailedEventDetails: iterationDetails(iteration),
          });
          this.link(iteration.map).failed = frame.lastEventId;
        } else {
          this.append(frame, "ExecutionFailed", {
            executionFailedEventDetails: { error: event.Error, cause: causeText(event.Cause) },
          });
        }
        return;
      case "ExecutionAborted":
      case "ExecutionTimeout":
        if (iteration)
          this.append(frame, "MapIterationAborted", {
            mapIterationAbortedEventDetails: iterationDetails(iteration),
          });
        else if (event.type === "ExecutionAborted") this.append(frame, "ExecutionAborted", {});
        else
          this.append(frame, "ExecutionTimedOut", {
            executionTimedOutEventDetails: { error: "States.Timeout" },
          });
        return;
    }
    if (!state) return;
    switch (event.type) {
      case "StateEntered": {
        frame.unpacedStates++;
        const input = this.payload(state.name, "input", state.input);
        this.append(
          frame,
          `${state.type}StateEntered`,
          { stateEnteredEventDetails: { name: state.name, input, inputDetails: { truncated: false } } },
          true,
        );
        if (state.type === "Map") {
          const length = itemCount(this.mapStates.get(state.name), state.input);
          this.append(frame, "MapStateStarted", { mapStateStartedEventDetails: { length } }, true);
          this.mapLinks.set(state.name, { started: frame.lastEventId });
        }
        return;
      }
      case "StateExited": {
        const output = this.payload(state.name, "output", state.output);
        if (state.type === "Map") {
          this.append(frame, "MapStateSucceeded", {}, true, this.link(state.name).succeeded);
        }
        this.append(
          frame,
          `${state.type}StateExited`,
          { stateExitedEventDetails: { name: state.name, output, outputDetails: { truncated: false } } },
          true,
        );
        return;
      }
      case "StateFailed":
        if (state.type === "Map")
          this.append(frame, "MapStateFailed", {}, false, this.link(state.name).failed);
        if (state.type === "Task" && frame.attempt) {
          // An attempt the handler did not end itself: the engine's TimeoutSeconds ran out, or the result broke a limit.
          frame.attempt = undefined;
          const details = { ...LAMBDA, error: event.Error, cause: causeText(event.Cause) };
          if (event.Error === "States.Timeout")
            this.append(frame, "TaskTimedOut", { taskTimedOutEventDetails: details });
          else this.append(frame, "TaskFailed", { taskFailedEventDetails: details });
        }
        return;
    }
  }

  /**
   * A Task's handler calls this as the engine invokes it (synchronously, so in the frame that just entered or
   * retried the state): TaskScheduled and TaskStarted, and the attempt's end when the handler reports it.
   */
  taskScheduled(state: string, parameters: unknown): TaskAttempt {
    const frame = this.current;
    const serialised = this.payload(state, "parameters", parameters);
    const attempt = {};
    this.append(
      frame,
      "TaskScheduled",
      { taskScheduledEventDetails: { ...LAMBDA, region: this.region, parameters: serialised } },
      true,
    );
    this.append(frame, "TaskStarted", { taskStartedEventDetails: LAMBDA }, true);
    frame.attempt = attempt;
    const unpacedStates = this.takeUnpacedStates(frame);
    const end = (type: string, details: object) => {
      // A late answer after the engine timed the attempt out is not part of the history.
      if (frame.attempt !== attempt) return;
      frame.attempt = undefined;
      this.append(frame, type, details, true);
    };
    return {
      unpacedStates,
      succeeded: (output) =>
        end("TaskSucceeded", {
          taskSucceededEventDetails: { ...LAMBDA, output: json(output), outputDetails: { truncated: false } },
        }),
      failed: (error, cause) => end("TaskFailed", { taskFailedEventDetails: { ...LAMBDA, error, cause } }),
    };
  }

  /** The states `frame` entered whose transition latency is still to be waited; none after this call. */
  takeUnpacedStates(frame: HistoryFrame): number {
    const states = frame.unpacedStates;
    frame.unpacedStates = 0;
    return states;
  }

  /** The payload as the history carries it, after checking it against the 256 KiB state payload quota. */
  private payload(state: string, what: "input" | "output" | "parameters", value: unknown): string {
    const text = json(value);
    const bytes = Buffer.byteLength(text);
    if (bytes > STATE_PAYLOAD_LIMIT_BYTES) {
      throw new StatesTerminalError(
        "States.DataLimitExceeded",
        `The state/task '${state}' ${what === "output" ? "returned a result" : `was given ${what}`} of ${bytes} bytes, exceeding the maximum number of bytes service limit (${STATE_PAYLOAD_LIMIT_BYTES}).`,
      );
    }
    return text;
  }

  private link(map: string): { started?: number; succeeded?: number; failed?: number } {
    const link = this.mapLinks.get(map) ?? {};
    this.mapLinks.set(map, link);
    return link;
  }

  /**
   * Appends one event. At 24,999 events only the execution's closing event still fits: anything else fails
   * the execution with States.Runtime, as AWS does; events that cannot fail it (an iteration's end) are dropped.
   */
  private append(frame: HistoryFrame, type: string, details: object, canFail = false, after?: number): void {
    const closing = frame === this.root && CLOSING.has(type);
    if (!closing && this.events.length >= HISTORY_EVENT_LIMIT - 1) {
      if (!canFail) return;
      throw new StatesTerminalError(
        "States.Runtime",
        `The execution reached the maximum number of history events (${HISTORY_EVENT_LIMIT}).`,
      );
    }
    const id = this.events.length + 1;
    const previousEventId = after ?? frame.lastEventId;
    this.events.push({ timestamp: Date.now(), type, id, previousEventId, ...details });
    frame.lastEventId = id;
    frame.events++;
  }
}

/** How many items a Map state iterates: its ItemsPath (a plain `$.a.b` path) applied to its input. */
function itemCount(state: AslState | undefined, input: unknown): number | undefined {
  const path = typeof state?.ItemsPath === "string" ? state.ItemsPath : "$";
  if (!/^\$(\.[A-Za-z_]\w*)*$/.test(path)) return undefined;
  let value = input;
  for (const key of path.split(".").slice(1)) {
    value = typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined;
  }
  return Array.isArray(value) ? value.length : undefined;
}

function json(value: unknown): string {
  return JSON.stringify(value ?? null);
}

function causeText(cause: unknown): string {
  if (cause === undefined || cause === null) return "";
  return typeof cause === "string" ? cause : cause instanceof Error ? cause.message : JSON.stringify(cause);
}

/** GetExecutionHistory's response for these events, with timestamps as `stamp` writes them. */
export function executionHistoryResponse<Stamp>(
  events: readonly HistoryEvent[],
  stamp: (epochMs: number) => Stamp,
): { events: (Omit<HistoryEvent, "timestamp"> & { timestamp: Stamp })[] } {
  return { events: events.map((event) => ({ ...event, timestamp: stamp(event.timestamp) })) };
}

/** mapIteration…EventDetails: the Map state's name and the item's index. */
function iterationDetails(iteration: { map: string; index: number }): { name: string; index: number } {
  return { name: iteration.map, index: iteration.index };
}
