import aslValidator from "asl-validator";
import { describe, expect, it } from "vitest";
import { loadDefinition } from "../../../local/state-machine";
import { readPackagedTemplate } from "../../support/cfn-spec";

/** The definition with every function reference (Fn::GetAtt, or a packaged `${…}` placeholder) a dummy ARN. */
function withDummyArns(text: string, placeholder: RegExp): unknown {
  return JSON.parse(
    text.replace(placeholder, (_, name: string) =>
      JSON.stringify(`arn:aws:lambda:us-east-1:123456789012:function:${name}`),
    ),
  );
}

function fileDefinition(): unknown {
  return withDummyArns(JSON.stringify(loadDefinition()), /\{"Fn::GetAtt":\["(\w+)","Arn"\]\}/g);
}

/** The definition as `serverless package` compiled it: an Fn::Sub whose placeholders name the functions. */
function packagedDefinition(directory: string): unknown {
  const machine = Object.values(readPackagedTemplate(directory).Resources).find(
    (resource) => resource.Type === "AWS::StepFunctions::StateMachine",
  );
  const definition = machine?.Properties?.DefinitionString as { "Fn::Sub": [string, unknown] } | undefined;
  if (!definition) throw new Error(`${directory} holds no AWS::StepFunctions::StateMachine definition`);
  const [body] = definition["Fn::Sub"];
  return withDummyArns(body, /"\$\{(\w+)\}"/g);
}

/** Each problem asl-validator finds, as "CODE: message". */
function problems(definition: unknown): string[] {
  return aslValidator(definition).errors.map((error) => `${error["Error code"]}: ${error.Message}`);
}

describe("the state machine definition against asl-validator (Amazon States Language)", () => {
  it("accepts the definition file", () => {
    expect(problems(fileDefinition())).toEqual([]);
  });

  it.each([".serverless", ".serverless-variant"])("accepts the definition packaged in %s", (directory) => {
    const definition = packagedDefinition(directory) as { States: Record<string, unknown> };
    expect(Object.keys(definition.States)).toContain("PlanHours");
    expect(problems(definition)).toEqual([]);
  });

  it("rejects a transition to a state that does not exist, and a misspelled field", () => {
    const definition = fileDefinition() as { States: Record<string, Record<string, unknown>> };
    const [first] = Object.values(definition.States);
    if (!first) throw new Error("the definition has no states");
    first.Next = "NoSuchState";
    expect(problems(definition)).toContain(
      "MISSING_TRANSITION_TARGET: Missing 'StartAt'|'Next'|'Default' target: NoSuchState",
    );
    first.Nxt = first.Next;
    delete first.Next;
    expect(problems(definition)).toEqual([expect.stringMatching(/^SCHEMA_VALIDATION_FAILED: /)]);
  });
});
