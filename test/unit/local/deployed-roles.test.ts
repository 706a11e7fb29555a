import { describe, expect, it } from "vitest";
import {
  type CloudFormationTemplate,
  type DeployedSettings,
  resolveTemplateValue,
  TWIN_SETTINGS,
  templateFunctions,
} from "../../../local/deployed-roles";

const settings: DeployedSettings = {
  bucket: "my-bucket",
  feedPrefix: "feed",
  controlPrefix: "control",
  stateKey: "control/state.json",
  seedStateKey: undefined,
  kmsKeyArn: undefined,
  citrixSecretArn: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:citrix-AbCdEf",
};

/** A template as `serverless package` writes it, with the twin's placeholders in it. */
const template: CloudFormationTemplate = {
  Conditions: {
    HasKmsKey: { "Fn::Not": [{ "Fn::Equals": [TWIN_SETTINGS.KMS_KEY_ARN, ""] }] },
    HasCitrixSecret: { "Fn::Not": [{ "Fn::Equals": [TWIN_SETTINGS.CITRIX_SECRET_ARN, ""] }] },
    Both: { "Fn::And": [{ Condition: "HasKmsKey" }, { Condition: "HasCitrixSecret" }] },
  },
  Resources: {
    PlanLambdaFunction: {
      Type: "AWS::Lambda::Function",
      Properties: {
        FunctionName: "svc-prod-plan",
        Handler: "functions/plan/handler.handler",
        Timeout: 60,
        Code: { S3Key: "serverless/svc/prod/1/plan.zip" },
        Role: { "Fn::GetAtt": ["PlanRole", "Arn"] },
        Environment: {
          Variables: { S3_BUCKET: TWIN_SETTINGS.S3_BUCKET, STATE_KEY: TWIN_SETTINGS.STATE_KEY },
        },
      },
    },
    PlanRole: {
      Type: "AWS::IAM::Role",
      Properties: {
        ManagedPolicyArns: ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
        Policies: [
          {
            PolicyName: "state",
            PolicyDocument: {
              Statement: [
                {
                  Effect: "Allow",
                  Action: "s3:GetObject",
                  Resource: {
                    "Fn::Sub": `arn:\${AWS::Partition}:s3:::${TWIN_SETTINGS.S3_BUCKET}/${TWIN_SETTINGS.STATE_KEY}`,
                  },
                },
                {
                  Effect: "Allow",
                  Action: "s3:GetObject",
                  Resource: {
                    "Fn::Join": [
                      "",
                      ["arn:aws:s3:::", TWIN_SETTINGS.S3_BUCKET, `/${TWIN_SETTINGS.SEED_STATE_KEY}`],
                    ],
                  },
                },
              ],
            },
          },
          {
            "Fn::If": [
              "HasKmsKey",
              { PolicyName: "kms", PolicyDocument: { Statement: [] } },
              { Ref: "AWS::NoValue" },
            ],
          },
          {
            "Fn::If": [
              "HasCitrixSecret",
              { PolicyName: "secret", PolicyDocument: { Statement: [] } },
              { Ref: "AWS::NoValue" },
            ],
          },
        ],
      },
    },
  },
};

describe("resolving the packaged template with a run's settings", () => {
  it("puts each setting in its placeholder's place and evaluates conditions as CloudFormation does", () => {
    const plan = templateFunctions(template, settings).plan;
    expect(plan).toMatchObject({
      key: "plan",
      functionName: "svc-prod-plan",
      role: "PlanRole",
      handler: "functions/plan/handler.handler",
      timeoutSeconds: 60,
      bundle: "plan.zip",
      environment: { S3_BUCKET: "my-bucket", STATE_KEY: "control/state.json" },
    });
    // No KMS key: its policy is gone (AWS::NoValue); a secret: its policy is there; the managed one too.
    expect(plan?.policies.map((policy) => policy.name)).toEqual([
      "state",
      "secret",
      "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    ]);
    // Fn::Sub with a pseudo parameter, Fn::Join, and the seed state key defaulting to the state key.
    expect(plan?.policies[0]?.document.Statement).toEqual([
      { Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::my-bucket/control/state.json" },
      { Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::my-bucket/control/state.json" },
    ]);
  });

  it("replaces placeholders in one pass, so a value that looks like another placeholder is kept", () => {
    const tricky = { ...settings, bucket: TWIN_SETTINGS.S3_PREFIX };
    expect(
      resolveTemplateValue(template, tricky, `${TWIN_SETTINGS.S3_BUCKET}/${TWIN_SETTINGS.S3_PREFIX}`),
    ).toBe(`${TWIN_SETTINGS.S3_PREFIX}/feed`);
  });

  it("evaluates Condition references inside conditions, and GetAtt Arn by resource type", () => {
    expect(resolveTemplateValue(template, settings, { "Fn::If": ["Both", "yes", "no"] })).toBe("no");
    expect(
      resolveTemplateValue(
        template,
        { ...settings, kmsKeyArn: "arn:aws:kms:eu-west-1:1:key/k" },
        {
          "Fn::If": ["Both", "yes", "no"],
        },
      ),
    ).toBe("yes");
    expect(resolveTemplateValue(template, settings, { "Fn::GetAtt": ["PlanLambdaFunction", "Arn"] })).toBe(
      "arn:aws:lambda:us-east-1:123456789012:function:svc-prod-plan",
    );
    expect(
      resolveTemplateValue(template, settings, { "Fn::Sub": [`\${A}-\${PlanRole.Arn}`, { A: "x" }] }),
    ).toBe("x-arn:aws:iam::123456789012:role/PlanRole");
  });

  it("refuses what it cannot resolve, rather than guessing", () => {
    expect(() => resolveTemplateValue(template, settings, { Ref: "Missing" })).toThrow(/does not define/);
    expect(() => resolveTemplateValue(template, settings, { "Fn::ImportValue": "x" })).toThrow(
      /cannot resolve/,
    );
  });
});
