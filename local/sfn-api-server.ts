// A Step Functions API stand-in for tests and local runs: StartExecution, ListExecutions, DescribeExecution,
// GetExecutionHistory and RedriveExecution over the service's JSON protocol (POST /, X-Amz-Target: AWSStepFunctions.<Operation>,
// AWS JSON 1.0 bodies, timestamps as epoch seconds, errors as {"__type", "message"}) on 127.0.0.1, in front of
// the local engine (runLocalCollection). The operator CLI is tested with the real @aws-sdk/client-sfn
// pointed here (its `endpoint` option or AWS_ENDPOINT_URL_SFN), and its local commands (--data) use it over
// executions kept in a directory (local/execution-store.ts), so several processes share one state machine.
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { SFNClient } from "@aws-sdk/client-sfn";
import { startLoopbackServer } from "../stand-ins/loopback-server";
import type { LocalCollectionResult, RedrivePoint } from "./collection";
import { executionHistoryResponse, type HistoryEvent } from "./execution-history";
import {
  type ExecutionRecord,
  type ExecutionStatus,
  type ExecutionStore,
  memoryExecutionStore,
} from "./execution-store";
import type { JsonValue } from "./state-machine";

/** One execution (or a redrive of it) for the engine to run to its end. */
export interface LocalExecutionRequest {
  name: string;
  input: JsonValue;
  /** Set for a redrive: where the failed execution stopped. */
  redrive: RedrivePoint | undefined;
}

export interface LocalStepFunctionsOptions {
  /** Runs an execution, e.g. runLocalCollection over the caller's simulator and S3 server. */
  execute(request: LocalExecutionRequest): Promise<LocalCollectionResult>;
  stateMachineName?: string;
  region?: string;
  /**
   * Where the executions are kept: by default in this server's memory; directoryExecutionStore keeps them
   * for the API of another process (a later `citrix-collector status` or `redrive`).
   */
  store?: ExecutionStore;
}

export interface LocalStepFunctions {
  readonly endpoint: string;
  readonly region: string;
  readonly stateMachineArn: string;
  /** Every API call answered: the operation and the HTTP status. */
  readonly requests: { target: string; status: number }[];
  /** Resolves once no execution is running. */
  settled(): Promise<void>;
  /** A real SDK client pointed at this server, with dummy credentials (the server only checks a signature is there). */
  client(): SFNClient;
  close(): Promise<void>;
}

/** An AWS error answer: the SDK maps `__type` to its modelled exception class. */
class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const ACCOUNT = "000000000000";
const JSON_1_0 = "application/x-amz-json-1.0";
// AWS keeps failed executions redrivable for 14 days after they stop.
const REDRIVE_WINDOW_MS = 14 * 24 * 3_600_000;
const REDRIVABLE: readonly ExecutionStatus[] = ["FAILED", "TIMED_OUT", "ABORTED"];
// Characters AWS rejects in an execution name, besides whitespace and control characters.
const NAME_FORBIDDEN = /[\s<>{}[\]?*"#%\\^|~`$&,;:/\p{Cc}]/u;

export async function startLocalStepFunctions(
  options: LocalStepFunctionsOptions,
): Promise<LocalStepFunctions> {
  const region = options.region ?? "us-east-1";
  const machineName = options.stateMachineName ?? "citrix-analytics-collector-local";
  const stateMachineArn = `arn:aws:states:${region}:${ACCOUNT}:stateMachine:${machineName}`;
  const executionArnPrefix = `arn:aws:states:${region}:${ACCOUNT}:execution:${machineName}:`;
  const executions = options.store ?? memoryExecutionStore();
  const running = new Set<Promise<void>>();
  const requests: { target: string; status: number }[] = [];

  const seconds = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);

  function run(record: ExecutionRecord, redrive: RedrivePoint | undefined): void {
    const finished = (async () => {
      try {
        const result = await options.execute({
          name: record.name,
          input: JSON.parse(record.input) as JsonValue,
          redrive,
        });
        appendHistory(record, result.history, redrive !== undefined);
        if (result.status === "SUCCEEDED") {
          record.status = "SUCCEEDED";
          record.output = JSON.stringify(result.output ?? null);
        } else {
          record.status = "FAILED";
          record.error = result.error?.name;
          record.cause = result.error?.cause;
          record.redrivePoint = result.redrive;
        }
      } catch (error) {
        Object.assign(record, {
          status: "FAILED",
          error: "States.Runtime",
          cause: error instanceof Error ? error.message : String(error),
          redrivePoint: undefined,
        });
      }
      record.stopDate = Date.now();
      executions.save(record);
    })();
    running.add(finished);
    void finished.finally(() => running.delete(finished));
  }

  /**
   * A run's events join the execution's history. A redrive continues it as AWS does: an ExecutionRedriven
   * event, then the redriven run's events (its own ExecutionStarted left out), numbered on.
   */
  function appendHistory(record: ExecutionRecord, events: HistoryEvent[], redriven: boolean): void {
    if (!redriven) {
      record.history = events;
      return;
    }
    const offset = record.history.length + 1;
    const redrivenEvent: HistoryEvent = {
      timestamp: record.redriveDate ?? Date.now(),
      type: "ExecutionRedriven",
      id: offset,
      previousEventId: record.history.length,
      executionRedrivenEventDetails: { redriveCount: record.redriveCount },
    };
    const continued = events
      .filter((event) => event.type !== "ExecutionStarted")
      .map((event, position) => ({
        ...event,
        id: offset + position + 1,
        // Links to the left-out ExecutionStarted (id 1) now point at ExecutionRedriven.
        previousEventId: event.previousEventId <= 1 ? offset : event.previousEventId + offset - 1,
      }));
    record.history = [...record.history, redrivenEvent, ...continued];
  }

  /** The fields ListExecutions gives per execution; DescribeExecution gives these and more. */
  function listItem(record: ExecutionRecord) {
    return {
      executionArn: record.executionArn,
      stateMachineArn,
      name: record.name,
      status: record.status,
      startDate: seconds(record.startDate),
      stopDate: seconds(record.stopDate),
      redriveCount: record.redriveCount,
      redriveDate: seconds(record.redriveDate),
    };
  }

  function find(executionArn: unknown): ExecutionRecord {
    if (
      typeof executionArn !== "string" ||
      !/^arn:aws[a-z-]*:states:[^:]+:\d{12}:execution:/.test(executionArn)
    ) {
      throw new ApiError("InvalidArn", `Invalid Arn: '${String(executionArn)}'`);
    }
    const record = executionArn.startsWith(executionArnPrefix)
      ? executions.get(executionArn.slice(executionArnPrefix.length))
      : undefined;
    if (!record) throw new ApiError("ExecutionDoesNotExist", `Execution Does Not Exist: '${executionArn}'`);
    return record;
  }

  function ownMachine(arn: unknown): void {
    if (typeof arn !== "string" || !/^arn:aws[a-z-]*:states:[^:]+:\d{12}:stateMachine:/.test(arn)) {
      throw new ApiError("InvalidArn", `Invalid Arn: '${String(arn)}'`);
    }
    if (arn !== stateMachineArn) {
      throw new ApiError("StateMachineDoesNotExist", `State Machine Does Not Exist: '${arn}'`);
    }
  }

  function redriveStatus(record: ExecutionRecord, now: number): { status: string; reason?: string } {
    if (!REDRIVABLE.includes(record.status)) {
      return { status: "NOT_REDRIVABLE", reason: `Execution is ${record.status} and cannot be redriven` };
    }
    if (record.stopDate !== undefined && now - record.stopDate > REDRIVE_WINDOW_MS) {
      return { status: "NOT_REDRIVABLE", reason: "Execution stopped more than 14 days ago" };
    }
    if (!record.redrivePoint) {
      return { status: "NOT_REDRIVABLE", reason: "Execution failed before it entered a state" };
    }
    return { status: "REDRIVABLE" };
  }

  const operations: Record<string, (input: Record<string, unknown>) => object> = {
    StartExecution(input) {
      ownMachine(input.stateMachineArn);
      const name = input.name === undefined ? randomUUID() : input.name;
      if (typeof name !== "string" || name.length < 1 || name.length > 80 || NAME_FORBIDDEN.test(name)) {
        throw new ApiError("InvalidName", `Invalid Name: '${String(name)}'`);
      }
      const executionArn = `${executionArnPrefix}${name}`;
      const raw = input.input === undefined ? "{}" : input.input;
      try {
        JSON.parse(String(raw));
      } catch {
        throw new ApiError("InvalidExecutionInput", "Invalid State Machine Execution Input: not JSON");
      }
      const record: ExecutionRecord = {
        executionArn,
        name,
        status: "RUNNING",
        startDate: Date.now(),
        stopDate: undefined,
        input: String(raw),
        output: undefined,
        error: undefined,
        cause: undefined,
        redrivePoint: undefined,
        redriveCount: 0,
        redriveDate: undefined,
        history: [],
        sequence: executions.all().length,
        pid: process.pid,
      };
      if (!executions.add(record)) {
        // AWS answers a repeated StartExecution of a running execution with the same input as it did the first.
        const existing = executions.get(name);
        if (existing?.status === "RUNNING" && existing.input === record.input) {
          return { executionArn, startDate: seconds(existing.startDate) };
        }
        throw new ApiError("ExecutionAlreadyExists", `Execution Already Exists: '${executionArn}'`);
      }
      run(record, undefined);
      return { executionArn, startDate: seconds(record.startDate) };
    },

    ListExecutions(input) {
      ownMachine(input.stateMachineArn);
      const maxResults =
        typeof input.maxResults === "number" && input.maxResults > 0 ? input.maxResults : 100;
      const start = input.nextToken === undefined ? 0 : Number(input.nextToken);
      if (!Number.isInteger(start) || start < 0) throw new ApiError("InvalidToken", "Invalid Token");
      const listed = executions
        .all()
        .filter((record) => input.statusFilter === undefined || record.status === input.statusFilter)
        .filter(
          (record) =>
            input.redriveFilter === undefined ||
            (input.redriveFilter === "REDRIVEN") === record.redriveCount > 0,
        )
        .sort((a, b) => b.startDate - a.startDate || b.sequence - a.sequence);
      const page = listed.slice(start, start + maxResults);
      return {
        executions: page.map(listItem),
        nextToken: start + maxResults < listed.length ? String(start + maxResults) : undefined,
      };
    },

    DescribeExecution(input) {
      const record = find(input.executionArn);
      const redrive = redriveStatus(record, Date.now());
      return {
        ...listItem(record),
        input: record.input,
        inputDetails: { included: true },
        output: record.output,
        outputDetails: record.output === undefined ? undefined : { included: true },
        error: record.error,
        cause: record.cause,
        redriveStatus: redrive.status,
        redriveStatusReason: redrive.reason,
      };
    },

    GetExecutionHistory(input) {
      const record = find(input.executionArn);
      const maxResults =
        typeof input.maxResults === "number" && input.maxResults > 0 ? Math.min(input.maxResults, 1000) : 100;
      const start = input.nextToken === undefined ? 0 : Number(input.nextToken);
      if (!Number.isInteger(start) || start < 0) throw new ApiError("InvalidToken", "Invalid Token");
      const ordered = input.reverseOrder === true ? [...record.history].reverse() : record.history;
      const page = ordered.slice(start, start + maxResults);
      const withData = input.includeExecutionData !== false;
      return {
        events: executionHistoryResponse(page, (ms) => ms / 1000).events.map((event) =>
          withData ? event : withoutExecutionData(event),
        ),
        nextToken: start + maxResults < ordered.length ? String(start + maxResults) : undefined,
      };
    },

    RedriveExecution(input) {
      const record = find(input.executionArn);
      const now = Date.now();
      const redrive = redriveStatus(record, now);
      if (redrive.status !== "REDRIVABLE") {
        throw new ApiError("ExecutionNotRedrivable", redrive.reason ?? "Execution cannot be redriven");
      }
      const point = record.redrivePoint;
      Object.assign(record, {
        status: "RUNNING",
        stopDate: undefined,
        error: undefined,
        cause: undefined,
        redriveCount: record.redriveCount + 1,
        redriveDate: now,
        pid: process.pid,
      });
      executions.save(record);
      run(record, point);
      return { redriveDate: seconds(now) };
    },
  };

  function answer(res: ServerResponse, target: string, status: number, body: object): void {
    requests.push({ target, status });
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": JSON_1_0,
      "content-length": String(Buffer.byteLength(text)),
      "x-amzn-requestid": randomUUID(),
    });
    res.end(text);
  }

  function handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
    const target = String(req.headers["x-amz-target"] ?? "");
    try {
      if (req.method !== "POST" || req.url !== "/") {
        throw new ApiError("UnknownOperationException", "POST / only", 404);
      }
      if (!String(req.headers.authorization ?? "").startsWith("AWS4-HMAC-SHA256 Credential=")) {
        throw new ApiError("MissingAuthenticationTokenException", "Missing Authentication Token");
      }
      const operation = target.startsWith("AWSStepFunctions.")
        ? operations[target.slice("AWSStepFunctions.".length)]
        : undefined;
      if (!operation) throw new ApiError("UnknownOperationException", `${target} is not supported here`);
      let input: unknown;
      try {
        input = JSON.parse(raw === "" ? "{}" : raw);
      } catch {
        throw new ApiError("SerializationException", "the body is not JSON");
      }
      answer(res, target, 200, operation(input as Record<string, unknown>));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      answer(res, target, error.status, { __type: error.type, message: error.message });
    }
  }

  const { server, endpoint } = await startLoopbackServer(handle);
  let closing: Promise<void> | undefined;

  const settled = async (): Promise<void> => {
    while (running.size > 0) await Promise.all(running);
  };

  return {
    endpoint,
    region,
    stateMachineArn,
    requests,
    settled,
    client: () =>
      new SFNClient({ endpoint, region, credentials: { accessKeyId: "LOCAL", secretAccessKey: "LOCAL" } }),
    close() {
      closing ??= settled().then(
        () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      );
      return closing;
    },
  };
}

/** includeExecutionData false: the events without their input, output, parameters and results. */
function withoutExecutionData(event: Record<string, unknown>): Record<string, unknown> {
  const data = new Set(["input", "inputDetails", "output", "outputDetails", "parameters"]);
  return Object.fromEntries(
    Object.entries(event).map(([key, value]) => [
      key,
      key.endsWith("EventDetails") && typeof value === "object" && value !== null
        ? Object.fromEntries(Object.entries(value).filter(([field]) => !data.has(field)))
        : value,
    ]),
  );
}
