import { randomUUID } from "node:crypto";
import { type RunOptions, StateMachine } from "aws-local-stepfunctions";
import { type AslDefinition, loadDefinition, taskStates } from "./asl-definition";
import { twinExecutionArn } from "./deployed-roles";
import {
  type EngineEvent,
  ExecutionHistory,
  STATE_PAYLOAD_LIMIT_BYTES,
  StatesTerminalError,
  type TaskAttempt,
} from "./execution-history";

// What the engine runs, for the callers that load and inspect it before they run it.
export { type AslDefinition, type AslState, loadDefinition, taskStates } from "./asl-definition";

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export interface LambdaContext {
  getRemainingTimeInMillis(): number;
  awsRequestId: string;
}
export type LocalHandler = (event: unknown, context: LambdaContext) => Promise<unknown>;

/** Lambda's synchronous invocation response quota: 6 MB, as Lambda counts it. */
export const LAMBDA_RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024 + 100;

/**
 * A failed lambda:invoke as Step Functions reports it: Error is the runtime's errorType, Cause the runtime's
 * JSON error object as a string (the engine reports an error's `cause` as the Cause).
 */
export class LambdaInvocationError extends Error {
  constructor(
    override readonly name: string,
    cause: string,
  ) {
    super(cause, { cause });
  }
}

/** The Cause of a failed lambda:invoke: what the Node.js runtime reports for an error the handler threw. */
export function lambdaErrorCause(error: unknown): string {
  const errorType = error instanceof Error ? error.name : "Error";
  const errorMessage = error instanceof Error ? error.message : String(error);
  const trace = error instanceof Error && error.stack ? error.stack.split("\n") : [];
  return JSON.stringify({ errorType, errorMessage, trace });
}

export interface LocalExecutionOptions {
  definition?: AslDefinition;
  /** The function key of each FunctionName ARN a packaged definition names (see packagedDefinition). */
  functionKeys?: Record<string, string>;
  handlers: Record<string, LocalHandler>;
  executionName: string;
  input?: JsonValue;
  /** Each function's timeout, as serverless.yml sets it: getRemainingTimeInMillis counts down from it. */
  timeoutsMs: Record<string, number>;
  /** Pauses between Retry attempts are shortened to this, so tests do not wait real backoff. */
  retryPauseMs?: number;
  /**
   * The caller checked this definition already (checkDefinition), as AWS does once when it is deployed, not
   * per execution: the benchmark, whose every execution is a fresh process.
   */
  definitionChecked?: boolean;
  /**
   * Redrive emulation: start at this top-level state with `input` being the input it had in the failed
   * execution. AWS Step Functions redrives a Map by re-running only its failed iterations; here the whole
   * Map re-runs, which re-collects more than AWS would but exercises the same idempotence.
   */
  startAt?: string;
  /** The region the history's TaskScheduled events name. */
  region?: string;
  /** Latencies AWS adds that the engine has none of (the benchmark's --aws-overheads); none by default. */
  latencies?: EngineLatencies;
}

/**
 * What a deployed execution waits for besides its handlers: each state entered, and each Lambda invocation,
 * warm (an idle container of the function is reused) or cold (a new one is started: provisioning and the
 * runtime's start, before the handler's module loads, which the local run counts itself). A frame (the
 * execution, or one Map iteration) runs its states one after another, so the latency of the states it entered
 * is waited all at once before its next Task is invoked, or when it ends: the same wall time as state by state.
 */
export interface EngineLatencies {
  stateTransitionMs: number;
  warmInvokeMs: number;
  coldInvokeMs: number;
}

/** Definitions asl-validator accepted in this process: each check compiles its JSON schemas anew (~0.3 s). */
const checkedDefinitions = new Set<string>();

/** Throws unless asl-validator (as the engine runs it) accepts `definition`; once per process per definition. */
export function checkDefinition(definition: AslDefinition): void {
  const text = JSON.stringify(definition);
  if (checkedDefinitions.has(text)) return;
  new StateMachine(definition as never, { validationOptions: { checkArn: false } });
  checkedDefinitions.add(text);
}

/**
 * Runs the deployed definition file in aws-local-stepfunctions, binding each Task to the handler of the
 * function its `FunctionName: { Fn::GetAtt: [<function>, Arn] }` names, and emulating what the
 * `arn:aws:states:::lambda:invoke` integration does around it: JSON round-trip of the payload, the
 * `{ Payload }` result shape, the runtime's error shape, Lambda's 6 MB response quota, and a Lambda context
 * with a time budget. Every execution keeps an AWS-shaped history (local/execution-history.ts), which also
 * enforces the 256 KiB state payload quota and the 25,000-event history quota on every state.
 */
export function startLocalExecution(options: LocalExecutionOptions) {
  const loaded = options.definition ?? loadDefinition();
  const definition = options.startAt ? { ...loaded, StartAt: options.startAt } : loaded;
  const history = new ExecutionHistory(definition, options.region ?? "us-east-1");
  const tasks = taskStates(definition, options.functionKeys);
  const taskResourceLocalHandlers: Record<string, (input: JsonValue) => Promise<JsonValue>> = {};
  const retryIntervalOverrides: Record<string, number> = {};
  const containers = options.latencies && new LambdaContainers(options.latencies);
  for (const { state, functionKey } of tasks) {
    const handler = functionKey ? options.handlers[functionKey] : undefined;
    if (!functionKey || !handler)
      throw new Error(`Task ${state} invokes "${functionKey}", which has no local handler`);
    const timeoutMs = options.timeoutsMs[functionKey] ?? 900_000;
    taskResourceLocalHandlers[state] = (input) => {
      // Synchronously, as the engine invokes it: the history takes the frame that just entered the state.
      const attempt = history.taskScheduled(state, input);
      if (!containers) return invokeLikeLambda(handler, input, timeoutMs, attempt);
      return containers.invoke(functionKey, attempt.unpacedStates, () =>
        invokeLikeLambda(handler, input, timeoutMs, attempt),
      );
    };
    if (options.retryPauseMs !== undefined) retryIntervalOverrides[state] = options.retryPauseMs;
  }
  installHistoryTap();
  // The file is validated as deployed; a redrive's copy starts elsewhere, which leaves PlanHours unreachable.
  if (!options.definitionChecked) checkDefinition(loaded);
  const machine = new StateMachine(definition as never, { validationOptions: { noValidate: true } });
  const execution = machine.run(options.input ?? {}, {
    overrides: { taskResourceLocalHandlers, retryIntervalOverrides },
    context: {
      Execution: {
        // The ARN the deployed state machine gives it: Plan's DescribeExecution grant names that machine.
        Id: twinExecutionArn(options.executionName),
        Name: options.executionName,
        Input: options.input ?? {},
      },
    },
    [HISTORY_TAP]: history,
    [LATENCIES_TAP]: options.latencies,
  } as RunOptions);
  return { ...execution, history };
}

/**
 * The run option that carries an execution's history. The engine hands its run options on to every Map
 * iteration it starts, so each nested engine finds the same history there.
 */
const HISTORY_TAP = "citrixCollectorHistory";
/** The run option that carries the execution's EngineLatencies, handed on the same way. */
const LATENCIES_TAP = "citrixCollectorLatencies";

/** Each function's containers, idle or busy, as Lambda keeps them warm between invocations. */
class LambdaContainers {
  private readonly idle = new Map<string, number>();

  constructor(private readonly latencies: EngineLatencies) {}

  /**
   * Waits the latency of the `states` its frame entered, then the invocation's own (warm or cold), then runs it
   * in a container.
   */
  async invoke<T>(functionKey: string, states: number, run: () => Promise<T>): Promise<T> {
    const idle = this.idle.get(functionKey) ?? 0;
    this.idle.set(functionKey, Math.max(0, idle - 1));
    const { stateTransitionMs, warmInvokeMs, coldInvokeMs } = this.latencies;
    await pause(states * stateTransitionMs + (idle > 0 ? warmInvokeMs : coldInvokeMs));
    try {
      return await run();
    } finally {
      this.idle.set(functionKey, (this.idle.get(functionKey) ?? 0) + 1);
    }
  }
}

function pause(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

interface EngineInternals {
  execute(
    this: object & { definition: unknown },
    input: unknown,
    options: {
      runOptions?: Record<string, unknown>;
      eventLogger: { dispatch(event: EngineEvent): void };
    },
    cleanup: () => void,
  ): Promise<unknown>;
}

let tapInstalled = false;

/**
 * aws-local-stepfunctions has no hook that runs between a state's end and the next state's start (its
 * eventLogs are read asynchronously, after the next state began). Its StateMachine.execute, which each
 * execution and each Map iteration runs with its own event logger, is wrapped once so that every event is
 * shown to the execution's ExecutionHistory synchronously as it is dispatched, and a limit the history
 * finds broken fails the state in place. Executions without a history in their run options are untouched.
 */
function installHistoryTap(): void {
  if (tapInstalled) return;
  tapInstalled = true;
  const engine = StateMachine.prototype as unknown as EngineInternals;
  const execute = engine.execute;
  engine.execute = function (input, options, cleanup) {
    const history = options.runOptions?.[HISTORY_TAP];
    if (!(history instanceof ExecutionHistory)) return execute.call(this, input, options, cleanup);
    const logger = options.eventLogger;
    const dispatch = logger.dispatch.bind(logger);
    const frame = history.frameFor(this, this.definition);
    logger.dispatch = (event) => {
      history.observe(frame, event);
      dispatch(event);
    };
    const result = execute.call(this, input, options, cleanup);
    const latencies = options.runOptions?.[LATENCIES_TAP] as EngineLatencies | undefined;
    if (!latencies) return result;
    // The states entered since the frame's last Task (the Choice and Pass at an iteration's end, say).
    return result.then(async (output) => {
      await pause(history.takeUnpacedStates(frame) * latencies.stateTransitionMs);
      return output;
    });
  };
}

async function invokeLikeLambda(
  handler: LocalHandler,
  input: JsonValue,
  timeoutMs: number,
  attempt: TaskAttempt,
): Promise<JsonValue> {
  const { Payload } = input as { Payload: JsonValue };
  const startedAt = Date.now();
  const context: LambdaContext = {
    getRemainingTimeInMillis: () => timeoutMs - (Date.now() - startedAt),
    awsRequestId: randomUUID(),
  };
  const fail = (errorType: string, cause: string) => {
    attempt.failed(errorType, cause);
    return new LambdaInvocationError(errorType, cause);
  };
  let result: unknown;
  try {
    result = await handler(JSON.parse(JSON.stringify(Payload)), context);
  } catch (error) {
    // Lambda reports errorType = error.name, which Step Functions matches as the state's Error.
    throw fail(error instanceof Error ? error.name : "Error", lambdaErrorCause(error));
  }
  if (Date.now() - startedAt > timeoutMs) {
    const errorMessage = `RequestId: ${context.awsRequestId} Error: Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`;
    throw fail("Sandbox.Timedout", JSON.stringify({ errorType: "Sandbox.Timedout", errorMessage }));
  }
  const serialised = JSON.stringify(result ?? null);
  if (Buffer.byteLength(serialised) > LAMBDA_RESPONSE_LIMIT_BYTES) {
    const errorMessage = `Response payload size exceeded maximum allowed payload size (${LAMBDA_RESPONSE_LIMIT_BYTES} bytes).`;
    throw fail(
      "Function.ResponseSizeTooLarge",
      JSON.stringify({ errorType: "Function.ResponseSizeTooLarge", errorMessage }),
    );
  }
  const output = {
    ExecutedVersion: "$LATEST",
    Payload: JSON.parse(serialised) as JsonValue,
    StatusCode: 200,
  };
  const bytes = Buffer.byteLength(JSON.stringify(output));
  if (bytes > STATE_PAYLOAD_LIMIT_BYTES) {
    const error = new StatesTerminalError(
      "States.DataLimitExceeded",
      `The state/task 'arn:aws:states:::lambda:invoke' returned a result of ${bytes} bytes, exceeding the maximum number of bytes service limit (${STATE_PAYLOAD_LIMIT_BYTES}).`,
    );
    attempt.failed(error.name, error.message);
    throw error;
  }
  attempt.succeeded(output);
  return output;
}
