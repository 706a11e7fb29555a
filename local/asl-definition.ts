import path from "node:path";
import { readYamlFile } from "./yaml-file";

/**
 * The state machine's definition as the local engine and the execution history read it. Its own module, so
 * that the engine (state-machine.ts) and the history it keeps (execution-history.ts) both depend on it and
 * not on each other.
 */
const DEFINITION_PATH = path.join(__dirname, "..", "statemachine", "collector.asl.yml");

export interface AslState {
  Type: string;
  Resource?: string;
  Parameters?: Record<string, unknown>;
  Retry?: { ErrorEquals: string[] }[];
  Catch?: { ErrorEquals: string[] }[];
  ItemProcessor?: { StartAt?: string; States: Record<string, AslState>; [field: string]: unknown };
  [field: string]: unknown;
}
export interface AslDefinition {
  StartAt: string;
  States: Record<string, AslState>;
  [field: string]: unknown;
}

export function loadDefinition(file = DEFINITION_PATH): AslDefinition {
  return readYamlFile(file) as AslDefinition;
}

/** Every Task state, including those inside Map iterations, with the function key it invokes. */
export function taskStates(
  definition: AslDefinition,
  functionKeys: Record<string, string> = {},
): { state: string; functionKey: string | undefined }[] {
  const found: { state: string; functionKey: string | undefined }[] = [];
  const walk = (states: Record<string, AslState>) => {
    for (const [name, state] of Object.entries(states)) {
      if (state.Type === "Task") found.push({ state: name, functionKey: functionKeyOf(state, functionKeys) });
      if (state.ItemProcessor) walk(state.ItemProcessor.States);
    }
  };
  walk(definition.States);
  return found;
}

/** The function a Task invokes: `Fn::GetAtt [<key>, Arn]` in the file, a function's ARN once packaged. */
function functionKeyOf(state: AslState, functionKeys: Record<string, string>): string | undefined {
  const target = state.Parameters?.FunctionName as string | { "Fn::GetAtt"?: [string, string] } | undefined;
  return typeof target === "string" ? functionKeys[target] : target?.["Fn::GetAtt"]?.[0];
}
