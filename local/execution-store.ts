// Where the local Step Functions API (local/sfn-api-server.ts) keeps its executions: in memory for a test, or
// one JSON file per execution in a directory, so that `run` in one process, `status` in another and `redrive`
// in a third see the same executions, as they would on AWS.
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { RedrivePoint } from "./collection";
import type { HistoryEvent } from "./execution-history";

export type ExecutionStatus = "RUNNING" | "SUCCEEDED" | "FAILED" | "TIMED_OUT" | "ABORTED";

/** What DescribeExecution, ListExecutions, GetExecutionHistory and RedriveExecution need of an execution. */
export interface ExecutionRecord {
  executionArn: string;
  name: string;
  status: ExecutionStatus;
  startDate: number;
  stopDate: number | undefined;
  input: string;
  output: string | undefined;
  error: string | undefined;
  cause: string | undefined;
  redrivePoint: RedrivePoint | undefined;
  redriveCount: number;
  redriveDate: number | undefined;
  /** The history once the engine finished (the local engine hands it over at the end, not as it goes). */
  history: HistoryEvent[];
  /** Breaks ties between executions started in the same millisecond: the order they were added in. */
  sequence: number;
  /** The process running the execution while it is RUNNING: when that process is gone, so is the run. */
  pid: number;
}

export interface ExecutionStore {
  /** Adds a new execution; false when the store holds one of that name (AWS: ExecutionAlreadyExists). */
  add(record: ExecutionRecord): boolean;
  /** Stores the execution's changed fields. */
  save(record: ExecutionRecord): void;
  get(name: string): ExecutionRecord | undefined;
  all(): ExecutionRecord[];
}

/** Executions kept by this process only, as the API's tests use them. */
export function memoryExecutionStore(): ExecutionStore {
  const records = new Map<string, ExecutionRecord>();
  return {
    add(record) {
      if (records.has(record.name)) return false;
      records.set(record.name, record);
      return true;
    },
    save(record) {
      records.set(record.name, record);
    },
    get: (name) => records.get(name),
    all: () => [...records.values()],
  };
}

/**
 * Executions kept as `<directory>/<name>.json`. A name is claimed by creating its file exclusively, so two
 * processes starting the same name cannot both succeed; updates replace the file whole (write, then
 * rename), so a reader in another process never sees half a record. A RUNNING execution whose process is
 * gone (killed, or the laptop slept through it) is read as ABORTED: nothing will ever finish it.
 */
export function directoryExecutionStore(directory: string): ExecutionStore {
  mkdirSync(directory, { recursive: true });
  // Execution names never hold "/" or "\" (Step Functions forbids both), so each is one file in the directory.
  const file = (name: string) => path.join(directory, `${name}.json`);
  const read = (name: string): ExecutionRecord | undefined => {
    let text: string;
    try {
      text = readFileSync(file(name), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    return abortedIfOrphaned(JSON.parse(text) as ExecutionRecord);
  };
  return {
    add(record) {
      try {
        writeFileSync(file(record.name), JSON.stringify(record), { flag: "wx" });
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
        throw error;
      }
    },
    save(record) {
      const temporary = path.join(directory, `.${record.name}.${process.pid}.tmp`);
      writeFileSync(temporary, JSON.stringify(record));
      renameSync(temporary, file(record.name));
    },
    get: read,
    all: () =>
      readdirSync(directory)
        .filter((entry) => entry.endsWith(".json"))
        .map((entry) => read(entry.slice(0, -".json".length)))
        .filter((record) => record !== undefined),
  };
}

function abortedIfOrphaned(record: ExecutionRecord): ExecutionRecord {
  if (record.status !== "RUNNING" || processRuns(record.pid)) return record;
  return {
    ...record,
    status: "ABORTED",
    // When it was noticed: the process left no trace of when it ended.
    stopDate: Date.now(),
    error: "States.Runtime",
    cause: `The local process that ran this execution (pid ${record.pid}) ended before the execution stopped`,
  };
}

function processRuns(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
