import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { StateMachine } from "aws-local-stepfunctions";
import { parse } from "yaml";

/**
 * Runs the deployed definition file in aws-local-stepfunctions, binding each Task to the handler of the
 * function its `FunctionName: { Fn::GetAtt: [<function>, Arn] }` names, and emulating what the
 * `arn:aws:states:::lambda:invoke` integration does around it: JSON round-trip of the payload, the
 * `{ Payload }` result shape, the 256 KiB state payload limit, and a Lambda context with a time budget.
 */
export const DEFINITION_PATH = path.join(__dirname, "..", "statemachine", "collector.asl.yml");

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export interface LambdaContext {
  getRemainingTimeInMillis(): number;
  awsRequestId: string;
}
export type LocalHandler = (event: unknown, context: LambdaContext) => Promise<unknown>;

export interface AslState {
  Type: string;
  Resource?: string;
  Parameters?: Record<string, unknown>;
  Retry?: { ErrorEquals: string[] }[];
  Catch?: { ErrorEquals: string[] }[];
  ItemProcessor?: { States: Record<string, AslState> };
  [field: string]: unknown;
}
export interface AslDefinition {
  StartAt: string;
  States: Record<string, AslState>;
  [field: string]: unknown;
}

export function loadDefinition(file = DEFINITION_PATH): AslDefinition {
  return parse(readFileSync(file, "utf8")) as AslDefinition;
}

/** Every Task state, including those inside Map iterations, with the function key it invokes. */
export function taskStates(definition: AslDefinition): { state: string; functionKey: string | undefined }[] {
  const found: { state: string; functionKey: string | undefined }[] = [];
  const walk = (states: Record<string, AslState>) => {
    for (const [name, state] of Object.entries(states)) {
      if (state.Type === "Task") found.push({ state: name, functionKey: functionKeyOf(state) });
      if (state.ItemProcessor) walk(state.ItemProcessor.States);
    }
  };
  walk(definition.States);
  return found;
}

function functionKeyOf(state: AslState): string | undefined {
  const target = state.Parameters?.FunctionName as { "Fn::GetAtt"?: [string, string] } | undefined;
  return target?.["Fn::GetAtt"]?.[0];
}

const STATE_PAYLOAD_LIMIT_BYTES = 256 * 1024;

export class LambdaInvocationError extends Error {
  constructor(
    override readonly name: string,
    message: string,
  ) {
    super(message);
  }
}

export interface LocalExecutionOptions {
  definition?: AslDefinition;
  handlers: Record<string, LocalHandler>;
  executionName: string;
  input?: JsonValue;
  /** Each function's timeout, as serverless.yml sets it: getRemainingTimeInMillis counts down from it. */
  timeoutsMs: Record<string, number>;
  /** Pauses between Retry attempts are shortened to this, so tests do not wait real backoff. */
  retryPauseMs?: number;
  /**
   * Redrive emulation: start at this top-level state with `input` being the input it had in the failed
   * execution. AWS Step Functions redrives a Map by re-running only its failed iterations; here the whole
   * Map re-runs, which re-collects more than AWS would but exercises the same idempotence.
   */
  startAt?: string;
}

export function startLocalExecution(options: LocalExecutionOptions) {
  const loaded = options.definition ?? loadDefinition();
  const definition = options.startAt ? { ...loaded, StartAt: options.startAt } : loaded;
  const tasks = taskStates(definition);
  const taskResourceLocalHandlers: Record<string, (input: JsonValue) => Promise<JsonValue>> = {};
  const retryIntervalOverrides: Record<string, number> = {};
  for (const { state, functionKey } of tasks) {
    const handler = functionKey ? options.handlers[functionKey] : undefined;
    if (!functionKey || !handler)
      throw new Error(`Task ${state} invokes "${functionKey}", which has no local handler`);
    const timeoutMs = options.timeoutsMs[functionKey] ?? 900_000;
    taskResourceLocalHandlers[state] = (input) => invokeLikeLambda(handler, input, timeoutMs);
    if (options.retryPauseMs !== undefined) retryIntervalOverrides[state] = options.retryPauseMs;
  }
  // The file is validated as deployed; a redrive's copy starts elsewhere, which leaves PlanHours unreachable.
  let machine = new StateMachine(loaded as never, { validationOptions: { checkArn: false } });
  if (definition !== loaded)
    machine = new StateMachine(definition as never, { validationOptions: { noValidate: true } });
  return machine.run(options.input ?? {}, {
    overrides: { taskResourceLocalHandlers, retryIntervalOverrides },
    context: {
      Execution: {
        Id: `arn:aws:states:local:000000000000:execution:collector:${options.executionName}`,
        Name: options.executionName,
        Input: options.input ?? {},
      },
    },
  });
}

async function invokeLikeLambda(
  handler: LocalHandler,
  input: JsonValue,
  timeoutMs: number,
): Promise<JsonValue> {
  const { Payload } = input as { Payload: JsonValue };
  const startedAt = Date.now();
  const context: LambdaContext = {
    getRemainingTimeInMillis: () => timeoutMs - (Date.now() - startedAt),
    awsRequestId: randomUUID(),
  };
  let result: unknown;
  try {
    result = await handler(JSON.parse(JSON.stringify(Payload)), context);
  } catch (error) {
    // Lambda reports errorType = error.name, which Step Functions matches as the state's Error.
    const name = error instanceof Error ? error.name : "Error";
    throw new LambdaInvocationError(name, error instanceof Error ? error.message : String(error));
  }
  if (Date.now() - startedAt > timeoutMs) {
    throw new LambdaInvocationError("Sandbox.Timedout", `the handler ran past its ${timeoutMs} ms timeout`);
  }
  const serialised = JSON.stringify(result ?? null);
  if (Buffer.byteLength(serialised) > STATE_PAYLOAD_LIMIT_BYTES) {
    throw new LambdaInvocationError(
      "States.DataLimitExceeded",
      `the handler returned ${serialised.length} bytes`,
    );
  }
  return { Payload: JSON.parse(serialised) as JsonValue, StatusCode: 200 };
}
