import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  type ExecutionListItem,
  type ExecutionStatus,
  type HistoryEvent,
  paginateGetExecutionHistory,
  paginateListExecutions,
  type SFNClient,
} from "@aws-sdk/client-sfn";
import { type FailedState, failedStateIn } from "../local/failure";
import type { CliContext, StateMachine } from "./context";

/** Statuses RedriveExecution accepts, for 14 days after the execution stopped. */
export const REDRIVABLE_STATUSES: readonly ExecutionStatus[] = ["FAILED", "TIMED_OUT", "ABORTED"];
export const REDRIVE_WINDOW_MS = 14 * 24 * 3_600_000;

export interface ExecutionSummary {
  name: string;
  executionArn: string;
  status: string;
  startDate: Date | undefined;
  stopDate: Date | undefined;
  redriveCount: number;
  /** Failed, timed out or aborted within the redrive window. */
  redrivable: boolean;
  /** Only for redrivable executions: the error and cause the console shows. */
  error?: string;
  cause?: string;
  /** Only for redrivable executions, when the history shows it: the state that failed. */
  failedState?: FailedState;
}

const summary = (item: ExecutionListItem): ExecutionSummary => ({
  name: item.name ?? "",
  executionArn: item.executionArn ?? "",
  status: item.status ?? "",
  startDate: item.startDate,
  stopDate: item.stopDate,
  redriveCount: item.redriveCount ?? 0,
  redrivable: false,
});

const newestFirst = (a: ExecutionSummary, b: ExecutionSummary) =>
  (b.startDate?.getTime() ?? 0) - (a.startDate?.getTime() ?? 0);

/**
 * Executions that failed, timed out or were aborted and stopped within the redrive window, newest first.
 * ListExecutions lists newest first, so paging stops at the first one started before the window.
 */
export async function redrivableExecutions(
  sfn: SFNClient,
  machine: StateMachine,
  now: number,
): Promise<ExecutionSummary[]> {
  const since = now - REDRIVE_WINDOW_MS;
  const found: ExecutionSummary[] = [];
  for (const statusFilter of REDRIVABLE_STATUSES) {
    const pages = paginateListExecutions(
      { client: sfn, pageSize: 100 },
      { stateMachineArn: machine.arn, statusFilter },
    );
    listing: for await (const page of pages) {
      for (const item of page.executions ?? []) {
        if ((item.startDate?.getTime() ?? 0) < since && (item.stopDate?.getTime() ?? 0) < since)
          break listing;
        if ((item.stopDate?.getTime() ?? now) >= since) found.push({ ...summary(item), redrivable: true });
      }
    }
  }
  return found.sort(newestFirst);
}

/** The `limit` newest executions plus every redrivable failure, failed ones first, each group newest first. */
export async function recentExecutions(
  sfn: SFNClient,
  machine: StateMachine,
  limit: number,
  now: number,
): Promise<ExecutionSummary[]> {
  const [recent, failed] = await Promise.all([
    paginateListExecutions({ client: sfn, pageSize: limit }, { stateMachineArn: machine.arn })
      .next()
      .then((page) => (page.value?.executions ?? []).slice(0, limit).map(summary)),
    redrivableExecutions(sfn, machine, now),
  ]);
  const failedArns = new Set(failed.map((execution) => execution.executionArn));
  const rest = recent.filter((execution) => !failedArns.has(execution.executionArn));
  const described = await Promise.all(
    failed.map(async (execution) => {
      const [details, failedState] = await Promise.all([
        sfn.send(new DescribeExecutionCommand({ executionArn: execution.executionArn })),
        failingState(sfn, execution.executionArn),
      ]);
      return { ...execution, error: details.error, cause: details.cause, failedState };
    }),
  );
  return [...described, ...rest.sort(newestFirst)];
}

/** How far back from the end `failingState` reads: the failure is among the last events. */
const HISTORY_EVENTS_READ = 1000;

/** The state a failed execution stopped in, from the last events of its history. */
export async function failingState(sfn: SFNClient, executionArn: string): Promise<FailedState | undefined> {
  const events: HistoryEvent[] = [];
  const pages = paginateGetExecutionHistory(
    { client: sfn, pageSize: 200 },
    { executionArn, reverseOrder: true, includeExecutionData: false },
  );
  for await (const page of pages) {
    events.push(...(page.events ?? []));
    if (events.length >= HISTORY_EVENTS_READ) break;
  }
  return failedStateIn(events);
}

/** Polls DescribeExecution until the execution stops, backing off from 0.25 s to 5 s between calls. */
export async function waitForExecution(
  ctx: CliContext,
  sfn: SFNClient,
  executionArn: string,
): Promise<DescribeExecutionCommandOutput> {
  for (let pauseMs = 250; ; pauseMs = Math.min(5_000, pauseMs * 2)) {
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (described.status !== "RUNNING" && described.status !== "PENDING_REDRIVE") return described;
    await ctx.sleep(pauseMs);
  }
}
