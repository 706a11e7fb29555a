/**
 * Structured JSON logs, one object per line, carrying the execution, entity and hour bound by the caller.
 * Callers never pass secrets or tokens; the Citrix client logs URLs, which carry neither.
 */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type LogSink = (line: string) => void;

export function createLogger(
  base: LogFields = {},
  sink: LogSink = (line) => process.stdout.write(line),
): Logger {
  const emit = (level: string, message: string, fields?: LogFields) =>
    sink(`${JSON.stringify({ level, time: new Date().toISOString(), message, ...base, ...fields })}\n`);
  return {
    info: (message, fields) => emit("info", message, fields),
    warn: (message, fields) => emit("warn", message, fields),
    error: (message, fields) => emit("error", message, fields),
    child: (fields) => createLogger({ ...base, ...fields }, sink),
  };
}
