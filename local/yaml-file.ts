import { readFileSync } from "node:fs";
import { parse } from "yaml";

/** Parsed texts by their text: a process runs many executions of the same serverless.yml and definition. */
const parsed = new Map<string, unknown>();

/**
 * A YAML file's content, parsed once per distinct text (parsing took a few percent of the fault
 * schedules' CPU). Each caller gets its own copy, which it may change.
 */
export function readYamlFile(file: string): unknown {
  const text = readFileSync(file, "utf8");
  if (!parsed.has(text)) parsed.set(text, parse(text));
  return structuredClone(parsed.get(text));
}
