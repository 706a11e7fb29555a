import { describe, expect, it } from "vitest";
import { ALARM_METRICS, METRICS_NAMESPACE } from "../../../functions/lib/aws/metrics";
import { loadConfig } from "../../../functions/lib/config/config";
import { COLLECTOR_ERRORS } from "../../../functions/lib/config/errors";
import { deployedFunctions } from "../../../local/collection";
import { type AslDefinition, type AslState, loadDefinition, taskStates } from "../../../local/state-machine";
import { readPackagedTemplate } from "../../support/cfn-spec";
import {
  LOCAL_ONLY,
  readmeConfigurationVariables,
  readmeDeploySettings,
  SET_BY_DEPLOYMENT,
  serverlessEnvironmentVariables,
  settingsReadBy,
} from "../../support/settings";

const FUNCTION_KEYS = ["plan", "collect", "commit"] as const;
type FunctionKey = (typeof FUNCTION_KEYS)[number];

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
  // An out-of-memory or timed-out function, and a lost invoke, as AWS's retry recommendation names them.
  "Lambda.Unknown",
  "Lambda.ClientExecutionTimeoutException",
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
  type Resource = { Type: string; Properties: Record<string, unknown> };
  type Statement = { Effect: string; Action: string | string[]; Resource: unknown };
  type Policy = { PolicyName: string; PolicyDocument: { Statement: Statement[] } };
  const template = packagedTemplate(".serverless");
  const bucket = packagedBucket(template);
  const resource = (id: string): Resource => {
    const found = template.Resources[id];
    if (!found) throw new Error(`the template has no resource ${id}`);
    return found;
  };
  /** A role's policies as deployed: an Fn::If entry resolves to its branch, AWS::NoValue to nothing. */
  const policies = (roleId: string): Policy[] =>
    deployedValue(template, resource(roleId).Properties.Policies) as Policy[];
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
    // Apart from the ARNs, the deployed definition is the file the local engine runs. The plugin's validator
    // (stepFunctions.validate) writes the default query language into every state; it means the same.
    const stripArns = (value: unknown): unknown =>
      JSON.parse(
        JSON.stringify(value)
          .replace(/"FunctionName":\{[^}]*\}/g, '"FunctionName":0')
          .replaceAll(',"QueryLanguage":"JSONPath"', ""),
      );
    expect(stripArns(deployed)).toEqual(stripArns(local));
  });

  it("starts the state machine from a named schedule at minute 16 of every hour, UTC (LOOKBACK_MINUTES 75 + 1)", () => {
    const schedules = ofType("AWS::Scheduler::Schedule");
    expect(schedules).toHaveLength(1);
    const [machineId] = ofType("AWS::StepFunctions::StateMachine")[0] ?? [];
    expect(schedules[0]?.[1].Properties).toMatchObject({
      Name: "citrix-analytics-collector-prod",
      Description:
        "Starts the Citrix Analytics collector at minute 16 of every hour (UTC), one minute after " +
        "LOOKBACK_MINUTES (75) makes the next hour due",
      ScheduleExpression: "cron(16 * * * ? *)",
      ScheduleExpressionTimezone: "UTC",
      State: "ENABLED",
      FlexibleTimeWindow: { Mode: "OFF" },
      Target: { Arn: { Ref: machineId }, Input: "{}" },
    });
    expect(variablesOf("plan").LOOKBACK_MINUTES).toBe("75");
  });

  it("traces nothing unless TRACING=true", () => {
    for (const [, fn] of ofType("AWS::Lambda::Function")) expect(fn.Properties.TracingConfig).toBeUndefined();
    const [, machine] = ofType("AWS::StepFunctions::StateMachine")[0] ?? [];
    expect(machine?.Properties.TracingConfiguration).toEqual({ Enabled: false });
    for (const role of ["PlanRole", "CollectRole", "CommitRole"]) {
      expect(statements(role).filter((statement) => allows(statement, "xray:"))).toEqual([]);
    }
  });

  const variablesOf = (functionKey: FunctionKey): Record<string, string> =>
    (
      resource(`${functionKey[0]?.toUpperCase()}${functionKey.slice(1)}LambdaFunction`).Properties
        .Environment as {
        Variables: Record<string, string>;
      }
    ).Variables;

  it("deploys the three functions on Node.js 22", () => {
    const functions = ofType("AWS::Lambda::Function");
    expect(functions.map(([id]) => id).sort()).toEqual([
      "CollectLambdaFunction",
      "CommitLambdaFunction",
      "PlanLambdaFunction",
    ]);
    for (const [, fn] of functions) expect(fn.Properties.Runtime).toBe("nodejs22.x");
  });

  it("gives each function exactly the settings its code reads (the Citrix ones to collect only)", () => {
    for (const functionKey of FUNCTION_KEYS) {
      const settings = Object.keys(variablesOf(functionKey)).filter(
        (name) => !SET_BY_DEPLOYMENT.includes(name),
      );
      expect({ functionKey, settings: settings.sort() }).toEqual({
        functionKey,
        settings: settingsReadBy(functionKey),
      });
    }
    for (const functionKey of ["plan", "commit"] as const) {
      expect(
        Object.keys(variablesOf(functionKey)).filter((name) => /^CITRIX_|^API_BASE$|^TOKEN_URL$/.test(name)),
      ).toEqual([]);
    }
  });

  it("matches the README's configuration table both ways", () => {
    const table = readmeConfigurationVariables();
    expect(table.length).toBeGreaterThan(20);
    const deployed = new Set(FUNCTION_KEYS.flatMap((functionKey) => Object.keys(variablesOf(functionKey))));
    // Every documented setting reaches a function...
    expect(table.filter((name) => !deployed.has(name) && !LOCAL_ONLY.includes(name))).toEqual([]);
    // ...and every variable a function gets is documented, apart from what serverless.yml sets itself.
    expect(
      [...deployed].filter((name) => !table.includes(name) && !SET_BY_DEPLOYMENT.includes(name)),
    ).toEqual([]);
  });

  it("lists every other variable serverless.yml reads in the README's deploy-time settings, and no more", () => {
    const configuration = readmeConfigurationVariables();
    const deployTime = serverlessEnvironmentVariables().filter((name) => !configuration.includes(name));
    expect(deployTime).toEqual(expect.arrayContaining(["CREATE_BUCKET", "TRACING"]));
    expect(readmeDeploySettings().sort()).toEqual(deployTime.sort());
  });

  it("deploys the configuration's own defaults when nothing is set", () => {
    const defaults = loadConfig({
      S3_BUCKET: bucket,
      CITRIX_SECRET_ARN: packagedSecretArn(template),
    });
    const { citrix: _collectOnly, ...defaultsWithoutCitrix } = defaults;
    for (const functionKey of FUNCTION_KEYS) {
      const variables = variablesOf(functionKey);
      if (functionKey === "collect") expect(loadConfig(variables)).toEqual(defaults);
      // serverless.yml defaults SEED_STATE_KEY to the state key (so the IAM grant names one object): the same read.
      else if (functionKey === "plan") {
        expect(loadConfig(variables, { citrix: false })).toEqual({
          ...defaultsWithoutCitrix,
          seedStateKey: defaults.stateKey,
        });
      } else expect(loadConfig(variables, { citrix: false })).toEqual(defaultsWithoutCitrix);
      // Logs at INFO, metrics on, only the alarms' metrics (each metric is billed by the month).
      expect(variables).toMatchObject({
        POWERTOOLS_LOG_LEVEL: "INFO",
        POWERTOOLS_METRICS_DISABLED: "false",
        DETAILED_METRICS: "false",
      });
    }
  });

  it("scopes each function's S3 access to the keys it touches", () => {
    const collect = statements("CollectRole").filter((statement) => allows(statement, "s3:"));
    expect(collect).toEqual([
      {
        Effect: "Allow",
        Action: "s3:PutObject",
        Resource: `arn:aws:s3:::${bucket}/_citrix_collector/citrix_analytics/staging/*`,
      },
      {
        Effect: "Allow",
        Action: ["s3:GetObject", "s3:PutObject"],
        Resource: `arn:aws:s3:::${bucket}/_citrix_collector/citrix_analytics/page-window.json`,
      },
      {
        Effect: "Allow",
        Action: "s3:ListBucket",
        Resource: `arn:aws:s3:::${bucket}`,
        Condition: { StringLike: { "s3:prefix": "_citrix_collector/citrix_analytics/staging/*" } },
      },
      {
        Effect: "Allow",
        Action: "s3:ListBucket",
        Resource: `arn:aws:s3:::${bucket}`,
        Condition: { StringLike: { "s3:prefix": "_citrix_collector/citrix_analytics/page-window.json" } },
      },
    ]);
    // Plan reads the page window's hint (how many iterations the API allows at once), and writes nothing there.
    const hintReaders = statements("PlanRole").filter((statement) =>
      JSON.stringify(statement.Resource).includes("page-window.json"),
    );
    expect(hintReaders.map((statement) => statement.Action)).toEqual(["s3:GetObject"]);
    // Only Commit may write into the feed prefix, and nothing may touch the whole bucket's objects.
    for (const role of ["PlanRole", "CollectRole", "CommitRole"]) {
      for (const statement of statements(role))
        expect(JSON.stringify(statement.Resource)).not.toContain(`${bucket}/*`);
    }
    const feedWriters = ["PlanRole", "CollectRole", "CommitRole"].filter((role) =>
      statements(role).some(
        (s) =>
          [s.Action].flat().includes("s3:PutObject") &&
          JSON.stringify(s.Resource).includes(`${bucket}/citrix_analytics/`),
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
      (entry) => JSON.stringify(entry).startsWith('{"Fn::If":["HasCitrixSecret"'),
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

type Template = {
  Resources: Record<
    string,
    { Type: string; Condition?: string; DeletionPolicy?: string; Properties: Record<string, unknown> }
  >;
  Conditions?: Record<string, unknown>;
  Outputs?: Record<string, { Value: unknown }>;
};
type PolicyStatement = {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, string>>;
};

function packagedTemplate(directory: string): Template {
  return readPackagedTemplate(directory) as unknown as Template;
}

/** A setting a template was packaged with, as one function's environment holds it (required: there is no default). */
function packagedSetting(template: Template, resource: string, name: string): string {
  const environment = template.Resources[resource]?.Properties.Environment as
    | { Variables: Record<string, string> }
    | undefined;
  const value = environment?.Variables[name];
  if (!value) throw new Error(`the packaged ${resource} has no ${name}`);
  return value;
}

/** The Citrix secret a template was packaged with (CITRIX_SECRET_ARN in package.json's scripts, or any). */
function packagedSecretArn(template: Template): string {
  return packagedSetting(template, "CollectLambdaFunction", "CITRIX_SECRET_ARN");
}

/** The bucket a template was packaged for (S3_BUCKET in package.json's scripts; there is no default). */
function packagedBucket(template: Template): string {
  return packagedSetting(template, "PlanLambdaFunction", "S3_BUCKET");
}

/**
 * What CloudFormation deploys from a value, as far as the template alone decides it: conditions (Fn::Not,
 * Fn::Equals of literals), Fn::If, AWS::NoValue dropped, AWS::Partition as `partition` (in Ref and Fn::Sub),
 * Fn::Join of literal strings. Other Refs, and Fn::Sub of anything else, stay as they are.
 */
function deployedValue(template: Template, value: unknown, partition = "aws"): unknown {
  // Evaluates the condition functions the template uses, as CloudFormation does at deploy time.
  const holds = (condition: unknown): boolean => {
    const { "Fn::Not": not, "Fn::Equals": equals } = condition as {
      "Fn::Not"?: [unknown];
      "Fn::Equals"?: [unknown, unknown];
    };
    if (not) return !holds(not[0]);
    if (equals) return equals[0] === equals[1];
    throw new Error(`unsupported condition ${JSON.stringify(condition)}`);
  };
  const noValue = (item: unknown) => JSON.stringify(item) === '{"Ref":"AWS::NoValue"}';
  const walk = (item: unknown): unknown => {
    if (Array.isArray(item)) return item.map(walk).filter((entry) => !noValue(entry));
    if (typeof item !== "object" || item === null) return item;
    const record = item as Record<string, unknown>;
    if ("Fn::If" in record) {
      const [name, whenTrue, whenFalse] = record["Fn::If"] as [string, unknown, unknown];
      return walk(holds(template.Conditions?.[name]) ? whenTrue : whenFalse);
    }
    if (record.Ref === "AWS::Partition") return partition;
    if (typeof record["Fn::Sub"] === "string") {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: an Fn::Sub placeholder, not JavaScript's
      const text = record["Fn::Sub"].replaceAll("${AWS::Partition}", partition);
      return text.includes("${") ? { "Fn::Sub": text } : text;
    }
    if ("Fn::Join" in record) {
      const [separator, parts] = record["Fn::Join"] as [string, unknown[]];
      const resolved = parts.map(walk);
      return resolved.every((part) => typeof part === "string")
        ? resolved.join(separator)
        : { "Fn::Join": [separator, resolved] };
    }
    return Object.fromEntries(
      Object.entries(record)
        .map(([key, entry]) => [key, walk(entry)] as const)
        .filter(([, entry]) => !noValue(entry)),
    );
  };
  return walk(value);
}

function deployedResource(template: Template, id: string, partition = "aws") {
  const found = template.Resources[id];
  if (!found) throw new Error(`the template has no resource ${id}`);
  const deployed =
    !found.Condition || deployedValue(template, { "Fn::If": [found.Condition, true, false] }) === true;
  return {
    ...found,
    deployed,
    Properties: deployedValue(template, found.Properties, partition) as Record<string, unknown>,
  };
}

function roleStatements(template: Template, roleId: string, partition = "aws"): PolicyStatement[] {
  const policies = deployedResource(template, roleId, partition).Properties.Policies as {
    PolicyDocument: { Statement: PolicyStatement[] };
  }[];
  return policies.flatMap((policy) => policy.PolicyDocument.Statement);
}

const ROLES = ["PlanRole", "CollectRole", "CommitRole"];
const FEED_READ_ACTIONS = ["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"];

describe("operations in the packaged template (npx serverless package)", () => {
  const template = packagedTemplate(".serverless");
  const bucket = packagedBucket(template);
  const output = (name: string) => deployedValue(template, template.Outputs?.[name]?.Value);

  it("alarms on any failed execution and on lag above LAG_ALARM_HOURS, both to the alarm topic", () => {
    const [machineId, machine] =
      Object.entries(template.Resources).find(([, r]) => r.Type === "AWS::StepFunctions::StateMachine") ?? [];
    expect(machineId).toBeDefined();
    const machineArn = output("StateMachineArn") as { "Fn::Join": [string, unknown[]] };
    expect(machineArn["Fn::Join"][1].at(-1)).toBe(`:stateMachine:${machine?.Properties.StateMachineName}`);
    const toTopic = [{ Ref: "AlarmTopic" }];
    expect(deployedResource(template, "AlarmTopic").Type).toBe("AWS::SNS::Topic");

    expect(deployedResource(template, "ExecutionsFailedAlarm").Properties).toMatchObject({
      Namespace: "AWS/States",
      MetricName: "ExecutionsFailed",
      Dimensions: [{ Name: "StateMachineArn", Value: machineArn }],
      Statistic: "Sum",
      Threshold: 1,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
      TreatMissingData: "notBreaching",
      AlarmActions: toTopic,
    });

    // The lag alarm reads the metric Plan publishes, under the service name every function is given.
    const lag = deployedResource(template, "LagAlarm").Properties;
    const services = ["PlanLambdaFunction", "CollectLambdaFunction", "CommitLambdaFunction"].map(
      (id) =>
        (deployedResource(template, id).Properties.Environment as { Variables: Record<string, unknown> })
          .Variables.POWERTOOLS_SERVICE_NAME,
    );
    expect(new Set(services)).toEqual(new Set([machine?.Properties.StateMachineName]));
    // The alarms on the collector's own metrics read exactly those published without DETAILED_METRICS.
    const alarmMetrics = Object.values(template.Resources)
      .filter((r) => r.Type === "AWS::CloudWatch::Alarm" && r.Properties?.Namespace === METRICS_NAMESPACE)
      .map((r) => r.Properties?.MetricName);
    expect(alarmMetrics.sort()).toEqual([...ALARM_METRICS].sort());
    expect(lag).toMatchObject({
      Namespace: METRICS_NAMESPACE,
      MetricName: "LagHours",
      Dimensions: [{ Name: "service", Value: services[0] }],
      Statistic: "Maximum",
      Period: 3600,
      ComparisonOperator: "GreaterThanThreshold",
      TreatMissingData: "missing",
      AlarmActions: toTopic,
      OKActions: toTopic,
      InsufficientDataActions: toTopic,
    });
    expect(Number(lag.Threshold)).toBe(3);
    expect(deployedResource(template, "AlarmEmailSubscription").deployed).toBe(false);
  });

  it("keeps every log group, the functions' and the state machine's, for 30 days", () => {
    const groups = Object.entries(template.Resources).filter(([, r]) => r.Type === "AWS::Logs::LogGroup");
    expect(groups.map(([id]) => id).sort()).toEqual([
      "CollectLogGroup",
      "CollectorStateMachineLogGroup",
      "CommitLogGroup",
      "PlanLogGroup",
    ]);
    for (const [, group] of groups) expect(group.Properties.RetentionInDays).toBe(30);
  });

  it("gives each function a role of its own, allowed S3 on named keys (and the secret) and nothing else", () => {
    const roles = ["PlanLambdaFunction", "CollectLambdaFunction", "CommitLambdaFunction"].map(
      (id) => deployedResource(template, id).Properties.Role,
    );
    expect(roles).toEqual(ROLES.map((role) => ({ "Fn::GetAtt": [role, "Arn"] })));
    for (const role of ROLES) {
      expect(deployedResource(template, role).Properties.ManagedPolicyArns).toEqual([
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
      ]);
      for (const statement of roleStatements(template, role)) {
        expect(statement.Effect).toBe("Allow");
        expect(statement.Resource).not.toBe("*");
        // EMF metrics are log lines: no cloudwatch:PutMetricData, no KMS without a KMS_KEY_ARN. Plan may
        // ask about other executions of this state machine only.
        for (const action of [statement.Action].flat()) {
          expect(action).toMatch(/^(s3|secretsmanager):|^states:DescribeExecution$/);
          if (action.startsWith("states:")) {
            expect(role).toBe("PlanRole");
            expect(JSON.stringify(statement.Resource)).toContain(
              ":execution:citrix-analytics-collector-prod:*",
            );
          }
        }
      }
    }
  });

  it("outputs the SecOps feed reader's policy, read-only on the feed prefix, also as a managed policy", () => {
    const json = output("SecOpsFeedReaderPolicyJson");
    expect(typeof json).toBe("string");
    const policy = JSON.parse(json as string) as { Statement: PolicyStatement[] };
    expect(policy).toEqual(deployedResource(template, "SecOpsFeedReaderPolicy").Properties.PolicyDocument);
    expect(policy.Statement.flatMap((statement) => [statement.Action].flat()).sort()).toEqual(
      FEED_READ_ACTIONS,
    );
    expect(policy.Statement.find((statement) => statement.Action === "s3:GetObject")?.Resource).toBe(
      `arn:aws:s3:::${bucket}/citrix_analytics/*`,
    );
    expect(policy.Statement.find((statement) => statement.Action === "s3:ListBucket")?.Condition).toEqual({
      StringLike: { "s3:prefix": "citrix_analytics/*" },
    });
    expect(output("SecOpsFeedReaderPolicyArn")).toEqual({ Ref: "SecOpsFeedReaderPolicy" });
    expect(output("AlarmTopicArn")).toEqual({ Ref: "AlarmTopic" });
  });

  const stateMachine = () => {
    const [id, machine] =
      Object.entries(template.Resources).find(([, r]) => r.Type === "AWS::StepFunctions::StateMachine") ?? [];
    if (!id || !machine) throw new Error("the template has no AWS::StepFunctions::StateMachine");
    return { id, name: String(machine.Properties.StateMachineName), properties: machine.Properties };
  };
  const schedule = () => {
    const [id] =
      Object.entries(template.Resources).find(([, r]) => r.Type === "AWS::Scheduler::Schedule") ?? [];
    if (!id) throw new Error("the template has no AWS::Scheduler::Schedule");
    return deployedResource(template, id).Properties as {
      GroupName: unknown;
      Target: { RoleArn: { "Fn::GetAtt": [string, string] } };
    };
  };
  const roleOf = (arn: unknown) => (arn as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0];

  it("alarms on timed-out and aborted executions and on the schedule's failures, each saying what to do", () => {
    const toTopic = [{ Ref: "AlarmTopic" }];
    const machineArn = output("StateMachineArn");
    for (const [id, metric] of [
      ["ExecutionsTimedOutAlarm", "ExecutionsTimedOut"],
      ["ExecutionsAbortedAlarm", "ExecutionsAborted"],
    ] as const) {
      const alarm = deployedResource(template, id).Properties;
      expect(alarm).toMatchObject({
        Namespace: "AWS/States",
        MetricName: metric,
        Dimensions: [{ Name: "StateMachineArn", Value: machineArn }],
        Statistic: "Sum",
        Threshold: 1,
        ComparisonOperator: "GreaterThanOrEqualToThreshold",
        TreatMissingData: "notBreaching",
        AlarmActions: toTopic,
      });
      expect(alarm.AlarmDescription).toContain("citrix-collector redrive --all-failed");
    }
    // Every way an execution can end other than SUCCEEDED raises an alarm.
    const executionMetrics = Object.values(template.Resources)
      .filter((r) => r.Type === "AWS::CloudWatch::Alarm" && r.Properties.Namespace === "AWS/States")
      .map((r) => r.Properties.MetricName);
    expect(executionMetrics.sort()).toEqual(["ExecutionsAborted", "ExecutionsFailed", "ExecutionsTimedOut"]);

    // The schedule's own group: its metrics are this collector's schedule only.
    const { GroupName } = schedule();
    expect(GroupName).toEqual({ Ref: "ScheduleGroup" });
    expect(deployedResource(template, "ScheduleGroup")).toMatchObject({
      Type: "AWS::Scheduler::ScheduleGroup",
      Properties: { Name: stateMachine().name },
    });
    for (const [id, metric] of [
      ["ScheduleTargetErrorsAlarm", "TargetErrorCount"],
      ["ScheduleInvocationsDroppedAlarm", "InvocationDroppedCount"],
    ] as const) {
      const alarm = deployedResource(template, id).Properties;
      expect(alarm).toMatchObject({
        Namespace: "AWS/Scheduler",
        MetricName: metric,
        Dimensions: [{ Name: "ScheduleGroup", Value: GroupName }],
        Statistic: "Sum",
        Threshold: 1,
        ComparisonOperator: "GreaterThanOrEqualToThreshold",
        TreatMissingData: "notBreaching",
        AlarmActions: toTopic,
      });
      expect(alarm.AlarmDescription).toMatch(/CloudTrail/);
    }
  });

  it("lets Step Functions and EventBridge Scheduler assume their roles for this stack's state machine and schedule only", () => {
    const machine = stateMachine();
    const machineRole = roleOf(machine.properties.RoleArn);
    const inThisAccount = { "aws:SourceAccount": { Ref: "AWS::AccountId" } };
    const machineArn = `arn:aws:states:\${AWS::Region}:\${AWS::AccountId}:stateMachine:${machine.name}`;
    expect(deployedResource(template, machineRole).Properties.AssumeRolePolicyDocument).toEqual({
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Allow",
          Principal: { Service: "states.amazonaws.com" },
          Action: "sts:AssumeRole",
          // The state machine, and its versions and aliases.
          Condition: {
            StringEquals: inThisAccount,
            ArnLike: { "aws:SourceArn": [{ "Fn::Sub": machineArn }, { "Fn::Sub": `${machineArn}:*` }] },
          },
        },
      ],
    });
    // EventBridge Scheduler names the schedule's group in aws:SourceArn, not the schedule.
    const { GroupName, Target } = schedule();
    expect(deployedResource(template, roleOf(Target.RoleArn)).Properties.AssumeRolePolicyDocument).toEqual({
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Allow",
          Principal: { Service: "scheduler.amazonaws.com" },
          Action: "sts:AssumeRole",
          Condition: {
            StringEquals: {
              ...inThisAccount,
              "aws:SourceArn": { "Fn::GetAtt": [(GroupName as { Ref: string }).Ref, "Arn"] },
            },
          },
        },
      ],
    });
    // No other role a service assumes (one the plugin would generate again, say) lacks those conditions.
    const unconditioned = Object.entries(template.Resources)
      .filter(([, r]) => r.Type === "AWS::IAM::Role")
      .flatMap(([id, r]) =>
        (r.Properties.AssumeRolePolicyDocument as { Statement: Record<string, unknown>[] }).Statement.map(
          (statement) => ({ id, statement: JSON.stringify(statement) }),
        ),
      )
      .filter(({ statement }) => !statement.includes('"lambda.amazonaws.com"'))
      .filter(
        ({ statement }) => !statement.includes("aws:SourceAccount") || !statement.includes("aws:SourceArn"),
      );
    expect(unconditioned).toEqual([]);
  });

  it("lets the state machine invoke the three functions, deliver its logs, and trace only with TRACING=true", () => {
    const machine = stateMachine();
    const functions = ["PlanLambdaFunction", "CollectLambdaFunction", "CommitLambdaFunction"];
    expect(roleStatements(template, roleOf(machine.properties.RoleArn))).toEqual([
      {
        Effect: "Allow",
        Action: "lambda:InvokeFunction",
        // Each function, and its versions and aliases.
        Resource: functions.flatMap((id) => [
          { "Fn::GetAtt": [id, "Arn"] },
          { "Fn::Sub": `\${${id}.Arn}:*` },
        ]),
      },
      {
        Effect: "Allow",
        Action: [
          "logs:CreateLogDelivery",
          "logs:GetLogDelivery",
          "logs:UpdateLogDelivery",
          "logs:DeleteLogDelivery",
          "logs:ListLogDeliveries",
          "logs:PutResourcePolicy",
          "logs:DescribeResourcePolicies",
          "logs:DescribeLogGroups",
        ],
        Resource: "*",
      },
    ]);
    // The schedule may start this state machine, nothing else.
    expect(roleStatements(template, roleOf(schedule().Target.RoleArn))).toEqual([
      { Effect: "Allow", Action: "states:StartExecution", Resource: output("StateMachineArn") },
    ]);
  });

  it("lets each function list only the prefixes it lists and the keys it reads that may be missing", () => {
    const bucket = `arn:aws:s3:::${packagedBucket(template)}`;
    const control = "_citrix_collector/citrix_analytics";
    const listable = (role: string) =>
      roleStatements(template, role)
        .filter((statement) => [statement.Action].flat().includes("s3:ListBucket"))
        .flatMap((statement) => {
          // Never the whole bucket: each listing is limited by prefix.
          expect({
            role,
            resource: statement.Resource,
            limits: Object.keys(statement.Condition ?? {}),
          }).toEqual({
            role,
            resource: bucket,
            limits: ["StringLike"],
          });
          return [statement.Condition?.StringLike?.["s3:prefix"] ?? []].flat();
        });
    expect(new Set(listable("PlanRole"))).toEqual(
      new Set([
        `${control}/published/*`,
        `${control}/leases/*`,
        `${control}/state.json`,
        `${control}/page-window.json`,
        `${control}/first-hour.json`,
        `${control}/manifests/*`,
      ]),
    );
    expect(new Set(listable("CommitRole"))).toEqual(
      new Set([
        `${control}/published/*`,
        `${control}/staging/*`,
        `${control}/manifests/*`,
        "citrix_analytics/*",
        `${control}/state.json`,
      ]),
    );
    expect(new Set(listable("CollectRole"))).toEqual(
      new Set([`${control}/staging/*`, `${control}/page-window.json`]),
    );
    // Every key a function may read it may list, so a key that is not there yet reads as missing, not as denied
    // (S3 answers 403 for a missing key without s3:ListBucket on it, and the store then lists that key).
    const covers = (prefix: string, key: string) =>
      prefix.endsWith("*") ? key.startsWith(prefix.slice(0, -1)) : key === prefix;
    for (const role of ROLES) {
      const readable = roleStatements(template, role)
        .filter((statement) => [statement.Action].flat().includes("s3:GetObject"))
        .flatMap((statement) => [statement.Resource].flat())
        .map((arn) => String(arn).slice(`${bucket}/`.length));
      expect(readable.length).toBeGreaterThan(0);
      const prefixes = listable(role);
      expect({
        role,
        unlisted: readable.filter((key) => !prefixes.some((prefix) => covers(prefix, key))),
      }).toEqual({
        role,
        unlisted: [],
      });
    }
  });

  it("names the partition in every ARN it builds, so it deploys unchanged in AWS China and GovCloud", () => {
    // The template's own text, apart from the settings' ARNs (the packaged secret) and the definition file's
    // service integrations, never spells out the commercial partition.
    const { id: machineId } = stateMachine();
    const { [machineId]: _definition, ...resources } = template.Resources;
    const hardCoded = JSON.stringify({ ...template, Resources: resources })
      .replaceAll(packagedSecretArn(template), "")
      .match(/arn:aws:[^"]*/g);
    expect(hardCoded).toEqual(null);
    // Deployed in aws-cn, every S3 ARN of the roles, the bucket policy, the reader policy and its JSON is there.
    const partition = "aws-cn";
    const documents = [
      ...[...ROLES, "StateMachineRole", "ScheduleRole"].map((role) =>
        roleStatements(template, role, partition),
      ),
      deployedResource(template, "CollectorBucketPolicy", partition).Properties.PolicyDocument,
      deployedResource(template, "SecOpsFeedReaderPolicy", partition).Properties.PolicyDocument,
    ];
    const json = deployedValue(template, template.Outputs?.SecOpsFeedReaderPolicyJson?.Value, partition);
    expect(JSON.parse(json as string)).toEqual(documents.at(-1));
    const s3Arns = JSON.stringify([documents, json]).match(/arn:[\w-]*:s3:::/g) ?? [];
    expect(s3Arns.length).toBeGreaterThan(20);
    expect(new Set(s3Arns)).toEqual(new Set(["arn:aws-cn:s3:::"]));
  });

  it("creates no bucket unless CREATE_BUCKET=true", () => {
    expect(deployedResource(template, "CollectorBucket").deployed).toBe(false);
    expect(deployedResource(template, "CollectorBucketPolicy").deployed).toBe(false);
  });
});

describe("the template packaged with CREATE_BUCKET, KMS_KEY_ARN, ALARM_EMAIL, LAG_ALARM_HOURS, TRACING and LOOKBACK_MINUTES (npm run package:variant)", () => {
  const template = packagedTemplate(".serverless-variant");
  const bucketName = packagedBucket(template);
  const KEY = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
  const viaS3 = { StringLike: { "kms:ViaService": "s3.*.amazonaws.com" } };

  it("creates the bucket encrypted with the key, private, owner-enforced, TLS-only and kept on removal", () => {
    const bucket = deployedResource(template, "CollectorBucket");
    expect(bucket.deployed).toBe(true);
    expect(bucket.DeletionPolicy).toBe("Retain");
    expect(bucket.Properties).toMatchObject({
      BucketName: bucketName,
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            ServerSideEncryptionByDefault: { SSEAlgorithm: "aws:kms", KMSMasterKeyID: KEY },
            BucketKeyEnabled: true,
          },
        ],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }] },
    });
    const policy = deployedResource(template, "CollectorBucketPolicy");
    expect(policy.deployed).toBe(true);
    expect(policy.Properties).toEqual({
      Bucket: { Ref: "CollectorBucket" },
      PolicyDocument: {
        Version: "2012-10-17",
        Statement: [
          {
            Sid: "DenyInsecureTransport",
            Effect: "Deny",
            Principal: "*",
            Action: "s3:*",
            Resource: [`arn:aws:s3:::${bucketName}`, `arn:aws:s3:::${bucketName}/*`],
            Condition: { Bool: { "aws:SecureTransport": "false" } },
          },
        ],
      },
    });
  });

  it("lets each function and the SecOps reader use the key through S3 only, for what each does", () => {
    const kms = (statements: PolicyStatement[]) =>
      statements.filter((statement) => [statement.Action].flat().some((action) => action.startsWith("kms:")));
    for (const role of ROLES) {
      expect(kms(roleStatements(template, role))).toEqual([
        { Effect: "Allow", Action: ["kms:GenerateDataKey", "kms:Decrypt"], Resource: KEY, Condition: viaS3 },
      ]);
    }
    const reader = JSON.parse(
      deployedValue(template, template.Outputs?.SecOpsFeedReaderPolicyJson?.Value) as string,
    ) as { Statement: PolicyStatement[] };
    expect(reader).toEqual(deployedResource(template, "SecOpsFeedReaderPolicy").Properties.PolicyDocument);
    expect(kms(reader.Statement)).toEqual([
      { Sid: "DecryptFeedObjects", Effect: "Allow", Action: "kms:Decrypt", Resource: KEY, Condition: viaS3 },
    ]);
  });

  it("lets every role that may write to the bucket generate data keys, and every one that may read it decrypt", () => {
    // SSE-KMS: S3 asks KMS for a data key on each write and for its decryption on each read, as the caller.
    const objectsOfBucket = `arn:aws:s3:::${packagedBucket(template)}/`;
    const policies = Object.entries(template.Resources).flatMap(([id, { Type }]) => {
      const { deployed, Properties } = deployedResource(template, id);
      if (!deployed) return [];
      if (Type === "AWS::IAM::Role") return [{ id, statements: roleStatements(template, id) }];
      if (Type === "AWS::IAM::ManagedPolicy") {
        return [
          { id, statements: (Properties.PolicyDocument as { Statement: PolicyStatement[] }).Statement },
        ];
      }
      return [];
    });
    const mayOnObjects = (statements: PolicyStatement[], action: string) =>
      statements.some(
        (statement) =>
          statement.Effect === "Allow" &&
          [statement.Action].flat().includes(action) &&
          [statement.Resource].flat().some((arn) => String(arn).startsWith(objectsOfBucket)),
      );
    const mayUseKey = (statements: PolicyStatement[], action: string) =>
      statements.some(
        (statement) =>
          statement.Effect === "Allow" &&
          [statement.Action].flat().includes(action) &&
          statement.Resource === KEY &&
          JSON.stringify(statement.Condition) === JSON.stringify(viaS3),
      );
    const writers = policies.filter(({ statements }) => mayOnObjects(statements, "s3:PutObject"));
    const readers = policies.filter(({ statements }) => mayOnObjects(statements, "s3:GetObject"));
    expect(writers.map(({ id }) => id).sort()).toEqual(["CollectRole", "CommitRole", "PlanRole"]);
    expect(readers.map(({ id }) => id).sort()).toEqual([
      "CollectRole",
      "CommitRole",
      "PlanRole",
      "SecOpsFeedReaderPolicy",
    ]);
    for (const { id, statements } of writers) {
      expect({ id, generatesDataKeys: mayUseKey(statements, "kms:GenerateDataKey") }).toEqual({
        id,
        generatesDataKeys: true,
      });
    }
    for (const { id, statements } of readers) {
      expect({ id, decrypts: mayUseKey(statements, "kms:Decrypt") }).toEqual({ id, decrypts: true });
    }
  });

  it("subscribes ALARM_EMAIL to the alarm topic and alarms at LAG_ALARM_HOURS", () => {
    const subscription = deployedResource(template, "AlarmEmailSubscription");
    expect(subscription.deployed).toBe(true);
    expect(subscription.Properties).toEqual({
      TopicArn: { Ref: "AlarmTopic" },
      Protocol: "email",
      Endpoint: "soc@example.com",
    });
    expect(Number(deployedResource(template, "LagAlarm").Properties.Threshold)).toBe(6);
  });

  const ofType = (type: string) =>
    Object.keys(template.Resources).filter((id) => template.Resources[id]?.Type === type);

  it("with LOOKBACK_MINUTES=119 fires at minute 0, when the hour that fell due at minute 59 is a minute old", () => {
    const [scheduleId] = ofType("AWS::Scheduler::Schedule");
    expect(deployedResource(template, scheduleId ?? "").Properties).toMatchObject({
      ScheduleExpression: "cron(0 * * * ? *)",
      Description:
        "Starts the Citrix Analytics collector at minute 0 of every hour (UTC), one minute after " +
        "LOOKBACK_MINUTES (119) makes the next hour due",
    });
    const plan = deployedResource(template, "PlanLambdaFunction").Properties.Environment as {
      Variables: Record<string, string>;
    };
    expect(plan.Variables.LOOKBACK_MINUTES).toBe("119");
  });

  it("traces the state machine and every function with TRACING=true, each role allowed to send traces", () => {
    const [machineId] = ofType("AWS::StepFunctions::StateMachine");
    const machine = deployedResource(template, machineId ?? "");
    expect(machine.Properties.TracingConfiguration).toEqual({ Enabled: true });
    // The plugin's role for the state machine: what Step Functions needs to send its traces.
    const machineRole = (machine.Properties.RoleArn as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0];
    const machineActions = roleStatements(template, machineRole).flatMap((statement) =>
      [statement.Action].flat().filter((action) => action.startsWith("xray:")),
    );
    expect(machineActions.sort()).toEqual([
      "xray:GetSamplingRules",
      "xray:GetSamplingTargets",
      "xray:PutTelemetryRecords",
      "xray:PutTraceSegments",
    ]);
    for (const [functionId, role] of [
      ["PlanLambdaFunction", "PlanRole"],
      ["CollectLambdaFunction", "CollectRole"],
      ["CommitLambdaFunction", "CommitRole"],
    ] as const) {
      expect(deployedResource(template, functionId).Properties.TracingConfig).toEqual({ Mode: "Active" });
      expect(
        roleStatements(template, role).filter((statement) =>
          [statement.Action].flat().some((action) => action.startsWith("xray:")),
        ),
      ).toEqual([
        { Effect: "Allow", Action: ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], Resource: "*" },
      ]);
    }
  });
});

describe("the toolchain", () => {
  it("runs on Node.js 22, the major the Lambdas run on (installed by package.json's node@22)", () => {
    expect(process.versions.node.split(".")[0]).toBe("22");
  });
});
