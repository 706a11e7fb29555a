import type { Env } from "../config/config";

/**
 * Structured JSON logs, one object per line with `level`, `message`, `timestamp`, `service`, and the
 * execution, entity and hour bound by the caller (page and counts on the paging lines): the lines Powertools
 * for AWS Lambda's Logger wrote, with the same names, written here in a few lines instead of a library
 * loaded by every cold start. Callers never pass secrets or tokens; the Citrix client logs URLs, which carry
 * neither. The level follows POWERTOOLS_LOG_LEVEL (Powertools' name, kept so existing settings still work;
 * default INFO): DEBUG (and TRACE) add the debug lines, one per Citrix API answer; WARN and above drop the
 * INFO lines.
 */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** What the collector logs through: call sites bind fields with `child`; tests hand in a sink of their own. */
export interface Logger {
  /** Detail for finding a problem (each Citrix API answer), written at POWERTOOLS_LOG_LEVEL DEBUG or TRACE. */
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

/** The part of the Lambda context that log lines carry. */
export interface LambdaInvocation {
  awsRequestId?: string;
}

/**
 * Per handler, and so per container: the fields that tie each invocation's log lines to it, named as
 * Powertools' `addContext` names them (`function_request_id`, the id on the platform's START and REPORT
 * lines; `cold_start`, true on the container's first invocation only).
 */
export function invocationLogFields(): (context: LambdaInvocation) => LogFields {
  let coldStart = true;
  return (context) => {
    const fields = { function_request_id: context.awsRequestId, cold_start: coldStart };
    coldStart = false;
    return fields;
  };
}

/** Where finished lines go: stdout in Lambda (CloudWatch Logs), a file or an array in local runs and tests. */
export type LogSink = (line: string) => void;

/**
 * The `service` on every line and the `service` dimension of every metric: serverless.yml sets
 * POWERTOOLS_SERVICE_NAME (Powertools' own variable) to the stack name, so stages in one account stay apart.
 */
export function serviceName(env: Env = process.env): string {
  return env.POWERTOOLS_SERVICE_NAME || "citrix-analytics-collector";
}

const writeToStdout: LogSink = (line) => process.stdout.write(line);

/** Powertools' levels and their order; loadConfig accepts exactly these names. */
const LEVELS = { TRACE: 6, DEBUG: 8, INFO: 12, WARN: 16, ERROR: 20, CRITICAL: 24, SILENT: 28 } as const;
type LevelName = keyof typeof LEVELS;

function levelOf(env: Env): number {
  const name = env.POWERTOOLS_LOG_LEVEL?.trim();
  return name !== undefined && Object.hasOwn(LEVELS, name) ? LEVELS[name as LevelName] : LEVELS.INFO;
}

/**
 * The X-Ray trace id the Lambda runtime puts in _X_AMZN_TRACE_ID for each invocation, so a line can be found
 * from a trace and back.
 */
function traceId(env: Env): string | undefined {
  return env._X_AMZN_TRACE_ID?.split(";")[0]?.replace("Root=", "");
}

/**
 * A logger writing each line to the sink. `env` gives the level (read once) and the trace id (read per line,
 * as the runtime sets it per invocation).
 */
export function createLogger(
  base: LogFields = {},
  sink: LogSink = writeToStdout,
  service = serviceName(),
  env: Env = process.env,
): Logger {
  const threshold = levelOf(env);
  const bound = (persistent: LogFields): Logger => {
    const write = (level: "DEBUG" | "INFO" | "WARN" | "ERROR") => (message: string, fields?: LogFields) => {
      if (LEVELS[level] < threshold) return;
      const line = {
        level,
        message,
        timestamp: new Date().toISOString(),
        service,
        xray_trace_id: traceId(env),
        ...persistent,
        ...fields,
      };
      sink(`${JSON.stringify(line)}\n`);
    };
    return {
      debug: write("DEBUG"),
      info: write("INFO"),
      warn: write("WARN"),
      error: write("ERROR"),
      child: (fields) => bound({ ...persistent, ...fields }),
    };
  };
  return bound(base);
}
