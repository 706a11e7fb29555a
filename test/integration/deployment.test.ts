import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { COLLECTOR_ERRORS } from "../../functions/lib/errors";
import { deployedFunctions } from "../../local/collection";
import { type AslDefinition, type AslState, loadDefinition, taskStates } from "../../local/state-machine";

// Error names Step Functions and the Lambda integration raise themselves.
const SERVICE_ERRORS = new Set([
  "States.ALL",
  "States.Timeout",
  "States.TaskFailed",
  "Lambda.ServiceException",
  "Lambda.AWSLambdaException",
  "Lambda.SdkClientException",
  "Lambda.TooManyRequestsException",
  "Sandbox.Timedout",
]);

function everyState(definition: { States: Record<string, AslState> }): [string, AslState][] {
  return Object.entries(definition.States).flatMap(([name, state]) => [
    [name, state] as [string, AslState],
    ...(state.ItemProcessor ? everyState(state.ItemProcessor) : []),
  ]);
}

describe("the state machine definition file", () => {
  const definition: AslDefinition = loadDefinition();
  const thrown = new Set<string>(COLLECTOR_ERRORS.map((ErrorClass) => new ErrorClass("probe").name));

  it("only names errors in Retry and Catch that the code or the service can raise", () => {
    const named = everyState(definition).flatMap(([name, state]) =>
      [...(state.Retry ?? []), ...(state.Catch ?? [])].flatMap((rule) =>
        rule.ErrorEquals.map((error) => ({ state: name, error })),
      ),
    );
    expect(named.length).toBeGreaterThan(0);
    const unknown = named.filter(({ error }) => !thrown.has(error) && !SERVICE_ERRORS.has(error));
    expect(unknown).toEqual([]);
  });

  it("retries exactly the retryable errors and never a fatal one", () => {
    const retried = new Set(
      everyState(definition).flatMap(([, state]) => (state.Retry ?? []).flatMap((rule) => rule.ErrorEquals)),
    );
    for (const ErrorClass of COLLECTOR_ERRORS) {
      const error = new ErrorClass("probe");
      expect({ name: error.name, retried: retried.has(error.name) }).toEqual({
        name: error.name,
        retried: error.retryable,
      });
    }
    expect(retried.has("States.ALL")).toBe(false);
  });

  it("points every Task at a function serverless.yml deploys", () => {
    const functions = deployedFunctions();
    const tasks = taskStates(definition);
    expect(tasks.map((task) => task.state).sort()).toEqual(["CollectPage", "PlanHours", "PublishAndAdvance"]);
    for (const task of tasks) expect(Object.keys(functions)).toContain(task.functionKey);
  });
});

describe("the packaged CloudFormation template (npx serverless package)", () => {
  const templatePath = path.join(
    __dirname,
    "..",
    "..",
    ".serverless",
    "cloudformation-template-update-stack.json",
  );
  type Resource = { Type: string; Properties: Record<string, unknown> };
  type Statement = { Effect: string; Action: string | string[]; Resource: unknown };
  type Policy = { PolicyName: string; PolicyDocument: { Statement: Statement[] } };
  const template = JSON.parse(readFileSync(templatePath, "utf8")) as {
    Resources: Record<string, Resource>;
    Conditions?: Record<string, unknown>;
  };
  const resource = (id: string): Resource => {
    const found = template.Resources[id];
    if (!found) throw new Error(`the template has no resource ${id}`);
    return found;
  };
  /** Evaluates the condition functions the template uses, as CloudFormation does at deploy time. */
  const holds = (condition: unknown): boolean => {
    const { "Fn::Not": not, "Fn::Equals": equals } = condition as {
      "Fn::Not"?: [unknown];
      "Fn::Equals"?: [unknown, unknown];
    };
    if (not) return !holds(not[0]);
    if (equals) return equals[0] === equals[1];
    throw new Error(`unsupported condition ${JSON.stringify(condition)}`);
  };
  /** A role's policies as deployed: an Fn::If entry resolves to its branch, AWS::NoValue to nothing. */
  const policies = (roleId: string): Policy[] =>
    (resource(roleId).Properties.Policies as (Policy | { "Fn::If": [string, unknown, unknown] })[]).flatMap(
      (entry) => {
        if (!("Fn::If" in entry)) return [entry];
        const [name, whenTrue, whenFalse] = entry["Fn::If"];
        const chosen = holds(template.Conditions?.[name]) ? whenTrue : whenFalse;
        return JSON.stringify(chosen) === '{"Ref":"AWS::NoValue"}' ? [] : [chosen as Policy];
      },
    );
  const statements = (roleId: string) =>
    policies(roleId).flatMap((policy) => policy.PolicyDocument.Statement);
  const allows = (statement: Statement, prefix: string) =>
    [statement.Action].flat().some((action) => action.startsWith(prefix));
  const ofType = (type: string) =>
    Object.entries(template.Resources).filter(([, resource]) => resource.Type === type);

  it("holds the state machine built from the definition file, with each Task wired to its Lambda's ARN", () => {
    const [machine] = ofType("AWS::StepFunctions::StateMachine");
    if (!machine) throw new Error("the template has no AWS::StepFunctions::StateMachine");
    const [body, substitutions] = (
      machine[1].Properties.DefinitionString as { "Fn::Sub": [string, Record<string, unknown>] }
    )["Fn::Sub"];
    const deployed = JSON.parse(
      body.replace(/"\$\{(\w+)\}"/g, (_, name: string) => JSON.stringify(substitutions[name])),
    );
    const local = loadDefinition();
    for (const { state, functionKey } of taskStates(local)) {
      const deployedState = everyState(deployed).find(([name]) => name === state)?.[1];
      const logicalId = `${functionKey?.[0]?.toUpperCase()}${functionKey?.slice(1)}LambdaFunction`;
      expect(deployedState?.Parameters?.FunctionName).toEqual({ "Fn::GetAtt": [logicalId, "Arn"] });
      expect(template.Resources[logicalId]?.Type).toBe("AWS::Lambda::Function");
    }
    // Apart from the ARNs, the deployed definition is the file the local engine runs.
    const stripArns = (value: unknown): unknown =>
      JSON.parse(JSON.stringify(value).replace(/"FunctionName":\{[^}]*\}/g, '"FunctionName":0'));
    expect(stripArns(deployed)).toEqual(stripArns(local));
  });

  it("starts the state machine hourly from an EventBridge Scheduler schedule", () => {
    const schedules = ofType("AWS::Scheduler::Schedule");
    expect(schedules).toHaveLength(1);
    expect(schedules[0]?.[1].Properties.ScheduleExpression).toBe("rate(1 hour)");
  });

  it("deploys the three functions on Node.js 22 with the SPEC's environment", () => {
    const functions = ofType("AWS::Lambda::Function");
    expect(functions.map(([id]) => id).sort()).toEqual([
      "CollectLambdaFunction",
      "CommitLambdaFunction",
      "PlanLambdaFunction",
    ]);
    for (const [, fn] of functions) {
      expect(fn.Properties.Runtime).toBe("nodejs22.x");
      const variables = (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      for (const name of [
        "S3_BUCKET",
        "S3_PREFIX",
        "STATE_KEY",
        "API_BASE",
        "ENTITIES",
        "TOP_N",
        "LOOKBACK_MINUTES",
        "CITRIX_SECRET_ARN",
      ]) {
        expect(Object.keys(variables)).toContain(name);
      }
    }
  });

  it("scopes each function's S3 access to the keys it touches", () => {
    const collect = statements("CollectRole").filter((statement) => allows(statement, "s3:"));
    expect(collect).toEqual([
      {
        Effect: "Allow",
        Action: "s3:PutObject",
        Resource: "arn:aws:s3:::citrix-analytics-logs/_citrix_collector/citrix_analytics/staging/*",
      },
    ]);
    // Only Commit may write into the feed prefix, and nothing may touch the whole bucket's objects.
    for (const role of ["PlanRole", "CollectRole", "CommitRole"]) {
      for (const statement of statements(role))
        expect(JSON.stringify(statement.Resource)).not.toContain("citrix-analytics-logs/*");
    }
    const feedWriters = ["PlanRole", "CollectRole", "CommitRole"].filter((role) =>
      statements(role).some(
        (s) =>
          [s.Action].flat().includes("s3:PutObject") &&
          JSON.stringify(s.Resource).includes("logs/citrix_analytics/"),
      ),
    );
    expect(feedWriters).toEqual(["CommitRole"]);
  });

  it("lets only the collect function read CITRIX_SECRET_ARN, and only when one was set at deploy time", () => {
    const variables = resource("CollectLambdaFunction").Properties.Environment as {
      Variables: Record<string, unknown>;
    };
    const arn = variables.Variables.CITRIX_SECRET_ARN;
    // Empty unless CITRIX_SECRET_ARN was set where `serverless package` ran.
    expect(arn === "" || /^arn:aws[a-z-]*:secretsmanager:/.test(String(arn))).toBe(true);
    // The grant exists exactly when that ARN is not empty...
    expect(template.Conditions?.HasCitrixSecret).toEqual({ "Fn::Not": [{ "Fn::Equals": [arn, ""] }] });
    const readers = ["PlanRole", "CollectRole", "CommitRole"].filter((role) =>
      statements(role).some((statement) => allows(statement, "secretsmanager:")),
    );
    expect(readers).toEqual(arn === "" ? [] : ["CollectRole"]);
    // ...and names that one secret, for reading only, whichever way the condition goes.
    const conditional = (resource("CollectRole").Properties.Policies as Record<string, unknown>[]).filter(
      (entry) => "Fn::If" in entry,
    );
    expect(conditional).toEqual([
      {
        "Fn::If": [
          "HasCitrixSecret",
          {
            PolicyName: "read-citrix-secret",
            PolicyDocument: {
              Version: "2012-10-17",
              Statement: [{ Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: arn }],
            },
          },
          { Ref: "AWS::NoValue" },
        ],
      },
    ]);
    for (const role of ["PlanRole", "CommitRole"]) {
      expect(JSON.stringify(resource(role).Properties.Policies)).not.toContain("secretsmanager");
    }
  });
});

describe("the toolchain", () => {
  it("runs on Node.js 22, the major the Lambdas run on (installed by package.json's node@22)", () => {
    expect(process.versions.node.split(".")[0]).toBe("22");
  });
});
