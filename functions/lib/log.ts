import type { LogItem } from "@aws-lambda-powertools/logger";
import { Logger as PowertoolsLogger } from "@aws-lambda-powertools/logger";
import type { ConstructorOptions } from "@aws-lambda-powertools/logger/types";
import type { Env } from "./config";

/**
 * Structured JSON logs through Powertools for AWS Lambda's Logger: one object per line with `level`,
 * `message`, `timestamp`, `service`, and the execution, entity and hour bound by the caller (page and counts
 * on the paging lines). Callers never pass secrets or tokens; the Citrix client logs URLs, which carry
 * neither. The level follows POWERTOOLS_LOG_LEVEL (default INFO).
 */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** The small interface the collector logs through, so call sites do not depend on the library. */
export interface Logger {
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

/**
 * Powertools prints through a Console of its own; this subclass hands each formatted line to a sink instead
 * (its documented extension points: `printLog` and the `createLogger` factory children are made with).
 * In Lambda the sink is stdout, which is what Powertools' own Console writes to.
 */
class SinkLogger extends PowertoolsLogger {
  constructor(
    options: ConstructorOptions,
    private readonly sink: LogSink,
  ) {
    super(options);
  }

  protected override createLogger(options?: ConstructorOptions): PowertoolsLogger {
    return new SinkLogger(options ?? {}, this.sink);
  }

  protected override printLog(logLevel: number, log: LogItem): void {
    // The base constructor may print before this subclass has its sink.
    if (this.sink === undefined) {
      super.printLog(logLevel, log);
      return;
    }
    log.prepareForPrint();
    this.sink(`${JSON.stringify(log.getAttributes(), this.getJsonReplacer())}\n`);
  }
}

function adapt(logger: PowertoolsLogger): Logger {
  return {
    info: (message, fields) => logger.info(message, { ...fields }),
    warn: (message, fields) => logger.warn(message, { ...fields }),
    error: (message, fields) => logger.error(message, { ...fields }),
    child: (fields) => adapt(logger.createChild({ persistentKeys: { ...fields } })),
  };
}

export function createLogger(
  base: LogFields = {},
  sink: LogSink = writeToStdout,
  service = serviceName(),
): Logger {
  return adapt(new SinkLogger({ serviceName: service, persistentKeys: { ...base } }, sink));
}
