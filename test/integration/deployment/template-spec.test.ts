import { describe, expect, it } from "vitest";
import {
  loadCloudFormationSpec,
  readPackagedTemplate,
  specViolations,
  type Template,
  type TemplateResource,
} from "../../support/cfn-spec";

// Both packaged templates: the defaults (.serverless) and every optional resource on (.serverless-variant).
const PACKAGES = [".serverless", ".serverless-variant"];

describe("the packaged CloudFormation templates against AWS's resource specification", () => {
  const spec = loadCloudFormationSpec();

  it.each(PACKAGES)("%s: every resource type, property, value and reference is valid", (directory) => {
    const template = readPackagedTemplate(directory);
    expect(Object.keys(template.Resources).length).toBeGreaterThan(20);
    expect(specViolations(template, spec)).toEqual([]);
  });

  /** A copy of the default template with `change` applied to resource `id`. */
  const broken = (id: string, change: (resource: TemplateResource) => void): Template => {
    const template = structuredClone(readPackagedTemplate(".serverless"));
    const resource = template.Resources[id];
    if (!resource) throw new Error(`the template has no resource ${id}`);
    change(resource);
    return template;
  };
  const properties = (resource: TemplateResource) => resource.Properties as Record<string, unknown>;

  it.each<[string, Template, string[]]>([
    [
      "a misspelled property",
      broken("CollectorStateMachineLogGroup", (resource) => {
        const { RetentionInDays, ...rest } = properties(resource);
        resource.Properties = { ...rest, RetentionDays: RetentionInDays };
      }),
      [
        "Resources.CollectorStateMachineLogGroup.Properties.RetentionDays: not a property of AWS::Logs::LogGroup",
      ],
    ],
    [
      "a misspelled property of a nested type, which also leaves a required one out",
      broken("PlanRole", (resource) => {
        const [policy] = properties(resource).Policies as Record<string, unknown>[];
        if (!policy) throw new Error("PlanRole has no policy");
        policy.PolicyNme = policy.PolicyName;
        delete policy.PolicyName;
      }),
      [
        "Resources.PlanRole.Properties.Policies[0].PolicyNme: not a property of AWS::IAM::Role.Policy",
        "Resources.PlanRole.Properties.Policies[0]: AWS::IAM::Role.Policy requires PolicyName",
      ],
    ],
    [
      "a missing required property",
      broken("CollectorStepFunctionsSchedulerSchedule1", (resource) => {
        delete properties(resource).ScheduleExpression;
      }),
      [
        "Resources.CollectorStepFunctionsSchedulerSchedule1.Properties: AWS::Scheduler::Schedule requires ScheduleExpression",
      ],
    ],
    [
      "a value of the wrong kind",
      broken("LagAlarm", (resource) => {
        properties(resource).Threshold = "six";
        properties(resource).AlarmActions = { Ref: "AlarmTopic" };
      }),
      [
        'Resources.LagAlarm.Properties.Threshold: expected number, got string "six"',
        "Resources.LagAlarm.Properties.AlarmActions: Ref gives a string, expected list",
      ],
    ],
    [
      "an intrinsic function whose result does not fit",
      broken("PlanRole", (resource) => {
        properties(resource).ManagedPolicyArns = { "Fn::Join": ["", ["arn:aws:iam::aws:policy/", "X"]] };
      }),
      ["Resources.PlanRole.Properties.ManagedPolicyArns: Fn::Join gives a string, expected list"],
    ],
    [
      "a misspelled intrinsic function",
      broken("LagAlarm", (resource) => {
        properties(resource).AlarmName = { "Fn::Jion": ["-", ["a", "b"]] };
      }),
      ["Resources.LagAlarm.Properties.AlarmName: Fn::Jion is not an intrinsic function"],
    ],
    [
      "a resource type that does not exist",
      broken("CollectorStateMachineLogGroup", (resource) => {
        resource.Type = "AWS::Logs::LogGrup";
      }),
      [
        "Resources.CollectorStateMachineLogGroup.Type: AWS::Logs::LogGrup is not a CloudFormation resource type",
      ],
    ],
    [
      "references to an attribute, a resource and a condition that do not exist",
      broken("AlarmEmailSubscription", (resource) => {
        resource.Condition = "HasAlarmMail";
        properties(resource).TopicArn = { "Fn::GetAtt": ["AlarmTopic", "Arn"] };
        // biome-ignore lint/suspicious/noTemplateCurlyInString: an Fn::Sub placeholder, not JavaScript's
        properties(resource).Endpoint = { "Fn::Sub": "${AlarmTopc}" };
      }),
      [
        "Resources.AlarmEmailSubscription.Condition: no condition HasAlarmMail",
        "Resources.AlarmEmailSubscription.Properties.TopicArn.Fn::GetAtt: AWS::SNS::Topic has no attribute Arn",
        "Resources.AlarmEmailSubscription.Properties.Endpoint.Fn::Sub: Ref to AlarmTopc, which the template does not define",
      ],
    ],
  ])("reports %s", (_, template, problems) => {
    expect(specViolations(template, spec)).toEqual(problems);
  });
});
