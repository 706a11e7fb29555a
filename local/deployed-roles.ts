import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import path from "node:path";
import type { Env } from "../functions/lib/config/config";
import { escapeRegExp, type IdentityPolicy, registerPrincipal } from "../stand-ins/access-control";

// The local twin of IAM: each function's role exactly as `serverless package` writes it into the
// CloudFormation template, evaluated by an IAM policy simulator (@cloud-copilot/iam-simulate) for every request
// the function makes to the stand-ins. The template is packaged once with the placeholder settings below
// (TWIN_SETTINGS); a local run puts its own bucket, prefixes, keys and ARNs in their place and resolves the
// template's conditions and intrinsic functions as CloudFormation would, so the roles are the ones a deploy
// with the run's settings would create.

const ROOT = path.join(__dirname, "..");

/** The account, region and partition the local twin deploys into (CloudFormation's pseudo parameters). */
export const TWIN_ACCOUNT = "123456789012";
export const TWIN_REGION = "us-east-1";
export const TWIN_PARTITION = "aws";

/** The state machine serverless.yml deploys (service and default stage), and an execution's ARN in it. */
export const TWIN_STATE_MACHINE_NAME = "citrix-analytics-collector-prod";

export function twinExecutionArn(executionName: string): string {
  return `arn:${TWIN_PARTITION}:states:${TWIN_REGION}:${TWIN_ACCOUNT}:execution:${TWIN_STATE_MACHINE_NAME}:${executionName}`;
}

/**
 * The settings the twin's template is packaged with: valid values, each unique in the template, which a local
 * run replaces with its own (see placeholderValues). KMS and the secret are set so their conditional policies
 * are in the template; an empty replacement turns them off as an empty setting does at deploy time.
 */
export const TWIN_SETTINGS = {
  S3_BUCKET: "twin-bucket-5e7a",
  S3_PREFIX: "twin-feed-5e7a",
  CONTROL_PREFIX: "twin-control-5e7a",
  STATE_KEY: "twin-statekey-5e7a.json",
  SEED_STATE_KEY: "twin-seedkey-5e7a.json",
  KMS_KEY_ARN: `arn:aws:kms:${TWIN_REGION}:${TWIN_ACCOUNT}:key/5e7a5e7a-5e7a-4e7a-8e7a-5e7a5e7a5e7a`,
  CITRIX_SECRET_ARN: `arn:aws:secretsmanager:${TWIN_REGION}:${TWIN_ACCOUNT}:secret:twin-citrix-5e7a-AbCdEf`,
} as const;

/** The local run's own settings, in the placeholders' places. */
export interface DeployedSettings {
  bucket: string;
  feedPrefix: string;
  controlPrefix: string;
  stateKey: string;
  /** The seed how-to's state file; serverless.yml defaults it to the state key. */
  seedStateKey: string | undefined;
  /** The bucket's SSE-KMS key, if any. */
  kmsKeyArn: string | undefined;
  citrixSecretArn: string | undefined;
}

/** Where the twin's package is kept: `.local-twin/<hash of what it is built from>/`. */
const TWIN_DIRECTORY = path.join(ROOT, ".local-twin");

/** The files a package is built from: a change to any of them makes a new one. */
function packageInputs(): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory() ? walk(path.join(dir, entry.name)) : [path.join(dir, entry.name)],
    );
  return [
    path.join(ROOT, "serverless.yml"),
    path.join(ROOT, "package-lock.json"),
    ...walk(path.join(ROOT, "serverless")),
    ...walk(path.join(ROOT, "statemachine")),
    ...walk(path.join(ROOT, "functions")),
  ].sort();
}

function packageHash(): string {
  const hash = createHash("sha256");
  for (const file of packageInputs()) hash.update(path.relative(ROOT, file)).update(readFileSync(file));
  return hash.digest("hex").slice(0, 16);
}

/**
 * The directory holding the twin's package (the template and the three bundles), packaged now if the sources
 * changed since (about 5 s). Several processes may ask at once: one packages, under a lock, the others wait.
 */
export function twinPackageDirectory(): string {
  const directory = path.join(TWIN_DIRECTORY, packageHash());
  if (existsSync(path.join(directory, TEMPLATE_FILE))) return directory;
  mkdirSync(TWIN_DIRECTORY, { recursive: true });
  const lock = path.join(TWIN_DIRECTORY, ".lock");
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than any packaging run was left by a killed process.
      const since = statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now();
      if (Date.now() - since > 180_000) rmSync(lock, { force: true, recursive: true });
      if (existsSync(path.join(directory, TEMPLATE_FILE))) return directory;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${lock}: remove it if no package runs`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  try {
    if (existsSync(path.join(directory, TEMPLATE_FILE))) return directory;
    const building = `${directory}.building`;
    // In a copy of the service (see copyService): a deployer's .env must not reach the twin either.
    const service = `${directory}.service`;
    for (const stale of [building, service]) rmSync(stale, { recursive: true, force: true });
    copyService(service);
    const packaged = spawnSync(
      process.execPath,
      [require.resolve("serverless/bin/serverless.js"), "package", "--package", building],
      {
        cwd: service,
        encoding: "utf8",
        // A deployer's shell holding the twin's settings and nothing else of the collector's.
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          ...TWIN_SETTINGS,
          SLS_TELEMETRY_DISABLED: "1",
          SLS_NOTIFICATIONS_MODE: "off",
        },
      },
    );
    rmSync(service, { recursive: true, force: true });
    if (packaged.status !== 0) {
      throw new Error(
        `serverless package (the local twin's template) failed:\n${packaged.stdout}${packaged.stderr}`,
      );
    }
    renameSync(building, directory);
    // Packages of sources that have changed since are not needed any more.
    for (const old of readdirSync(TWIN_DIRECTORY)) {
      if (/^[0-9a-f]{16}(\.building|\.service)?$/.test(old) && path.join(TWIN_DIRECTORY, old) !== directory)
        rmSync(path.join(TWIN_DIRECTORY, old), { recursive: true, force: true });
    }
    return directory;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * A copy of the service in `target`, to run `serverless package` in: every run deletes the service's own
 * .serverless/ (which the deployment tests read) and reads a deployer's .env where it runs.
 */
export function copyService(target: string): void {
  for (const entry of [
    "serverless.yml",
    "package.json",
    "tsconfig.json",
    "functions",
    "serverless",
    "statemachine",
  ])
    cpSync(path.join(ROOT, entry), path.join(target, entry), { recursive: true });
  symlinkSync(path.join(ROOT, "node_modules"), path.join(target, "node_modules"));
}

const TEMPLATE_FILE = "cloudformation-template-update-stack.json";

export interface CloudFormationTemplate {
  Conditions?: Record<string, unknown>;
  Resources: Record<string, { Type: string; Properties?: Record<string, unknown>; Condition?: string }>;
}

export function readTemplate(directory: string): CloudFormationTemplate {
  return JSON.parse(readFileSync(path.join(directory, TEMPLATE_FILE), "utf8")) as CloudFormationTemplate;
}

/** The placeholders of TWIN_SETTINGS and what a local run with `settings` puts in their place. */
export function placeholderValues(settings: DeployedSettings): Map<string, string> {
  return new Map([
    [TWIN_SETTINGS.S3_BUCKET, settings.bucket],
    [TWIN_SETTINGS.S3_PREFIX, settings.feedPrefix],
    [TWIN_SETTINGS.CONTROL_PREFIX, settings.controlPrefix],
    [TWIN_SETTINGS.STATE_KEY, settings.stateKey],
    [TWIN_SETTINGS.SEED_STATE_KEY, settings.seedStateKey ?? settings.stateKey],
    [TWIN_SETTINGS.KMS_KEY_ARN, settings.kmsKeyArn ?? ""],
    [TWIN_SETTINGS.CITRIX_SECRET_ARN, settings.citrixSecretArn ?? ""],
  ]);
}

/**
 * The settings of a local run's environment that the template depends on, with serverless.yml's defaults. Not
 * validated (loadConfig's layout is, in the functions): a bad setting must fail the first state by name, as it
 * would once deployed, not the deploy of the twin.
 */
export function deployedSettings(env: Env): DeployedSettings {
  const blank = (value: string | undefined) =>
    value === undefined || value.trim() === "" ? undefined : value;
  const feedPrefix = blank(env.S3_PREFIX) ?? "citrix_analytics";
  const controlPrefix = blank(env.CONTROL_PREFIX) ?? `_citrix_collector/${feedPrefix}`;
  const stateKey = blank(env.STATE_KEY) ?? `${controlPrefix}/state.json`;
  return {
    bucket: env.S3_BUCKET ?? "",
    feedPrefix,
    controlPrefix,
    stateKey,
    seedStateKey: blank(env.SEED_STATE_KEY),
    kmsKeyArn: blank(env.KMS_KEY_ARN),
    citrixSecretArn: blank(env.CITRIX_SECRET_ARN),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Resolving the template as CloudFormation does.

const NO_VALUE = Symbol("AWS::NoValue");

interface Resolution {
  template: CloudFormationTemplate;
  placeholders: RegExp;
  values: Map<string, string>;
  conditions: Map<string, boolean>;
}

/** `node` with the placeholders replaced and every condition and intrinsic function evaluated. */
export function resolveTemplateValue(
  template: CloudFormationTemplate,
  settings: DeployedSettings,
  node: unknown,
): unknown {
  const values = placeholderValues(settings);
  const resolution: Resolution = {
    template,
    values,
    placeholders: new RegExp([...values.keys()].map(escapeRegExp).join("|"), "g"),
    conditions: new Map(),
  };
  const resolved = resolve(resolution, node);
  return resolved === NO_VALUE ? undefined : resolved;
}

function resolve(r: Resolution, node: unknown): unknown {
  if (typeof node === "string") return node.replace(r.placeholders, (found) => r.values.get(found) ?? found);
  if (Array.isArray(node)) return node.map((item) => resolve(r, item)).filter((item) => item !== NO_VALUE);
  if (node === null || typeof node !== "object") return node;
  const entries = Object.entries(node);
  const [name, argument] = entries[0] ?? [];
  if (
    entries.length === 1 &&
    name !== undefined &&
    (name === "Ref" || name.startsWith("Fn::") || name === "Condition")
  ) {
    return intrinsic(r, name, argument);
  }
  return Object.fromEntries(
    entries.flatMap(([key, value]) => {
      const resolved = resolve(r, value);
      return resolved === NO_VALUE ? [] : [[key, resolved]];
    }),
  );
}

function intrinsic(r: Resolution, name: string, argument: unknown): unknown {
  const list = () => resolve(r, argument) as unknown[];
  switch (name) {
    case "Ref":
      return ref(r, argument as string);
    case "Fn::GetAtt": {
      const [id, attribute] = Array.isArray(argument) ? argument : String(argument).split(".");
      return attributeOf(r, String(id), String(attribute));
    }
    case "Fn::Join": {
      const [separator, items] = argument as [string, unknown];
      return (resolve(r, items) as unknown[]).join(separator);
    }
    case "Fn::Sub": {
      const [text, variables] = Array.isArray(argument) ? argument : [argument, {}];
      const own = resolve(r, variables) as Record<string, unknown>;
      return String(resolve(r, text)).replace(/\$\{([^}!][^}]*)\}/g, (_, reference: string) => {
        if (reference in own) return String(own[reference]);
        const [id, attribute] = reference.split(".");
        return String(attribute === undefined ? ref(r, reference) : attributeOf(r, id as string, attribute));
      });
    }
    case "Fn::If": {
      const [condition, whenTrue, whenFalse] = argument as [string, unknown, unknown];
      return resolve(r, conditionValue(r, condition) ? whenTrue : whenFalse);
    }
    case "Fn::Equals": {
      const [a, b] = list();
      return JSON.stringify(a) === JSON.stringify(b) || String(a) === String(b);
    }
    case "Fn::Not":
      return !list()[0];
    case "Fn::And":
      return list().every(Boolean);
    case "Fn::Or":
      return list().some(Boolean);
    case "Condition":
      return conditionValue(r, argument as string);
    case "Fn::Select": {
      const [index, items] = list() as [number, unknown[]];
      return items[Number(index)];
    }
    case "Fn::Split": {
      const [separator, text] = list() as [string, string];
      return text.split(separator);
    }
    default:
      throw new Error(`the local twin cannot resolve ${name} in the packaged template`);
  }
}

function conditionValue(r: Resolution, name: string): boolean {
  const known = r.conditions.get(name);
  if (known !== undefined) return known;
  const definition = r.template.Conditions?.[name];
  if (definition === undefined) throw new Error(`the packaged template has no condition ${name}`);
  const value = Boolean(resolve(r, definition));
  r.conditions.set(name, value);
  return value;
}

function ref(r: Resolution, name: string): unknown {
  switch (name) {
    case "AWS::NoValue":
      return NO_VALUE;
    case "AWS::Partition":
      return TWIN_PARTITION;
    case "AWS::Region":
      return TWIN_REGION;
    case "AWS::AccountId":
      return TWIN_ACCOUNT;
    case "AWS::URLSuffix":
      return "amazonaws.com";
    case "AWS::StackName":
      return "citrix-analytics-collector-local";
  }
  const resource = r.template.Resources[name];
  if (!resource) throw new Error(`the packaged template refers to ${name}, which it does not define`);
  return physicalName(r, name);
}

/** The name CloudFormation gives a resource: its name property if the template sets one, else its logical id. */
function physicalName(r: Resolution, id: string): string {
  const properties = r.template.Resources[id]?.Properties ?? {};
  for (const property of [
    "FunctionName",
    "RoleName",
    "StateMachineName",
    "TopicName",
    "BucketName",
    "LogGroupName",
  ]) {
    if (properties[property] !== undefined) return String(resolve(r, properties[property]));
  }
  return id;
}

function attributeOf(r: Resolution, id: string, attribute: string): string {
  const resource = r.template.Resources[id];
  if (!resource) throw new Error(`the packaged template refers to ${id}, which it does not define`);
  const name = physicalName(r, id);
  if (attribute !== "Arn") return `${id}.${attribute}`;
  const arn = (service: string, rest: string, region = TWIN_REGION) =>
    `arn:${TWIN_PARTITION}:${service}:${region}:${TWIN_ACCOUNT}:${rest}`;
  switch (resource.Type) {
    case "AWS::Lambda::Function":
      return arn("lambda", `function:${name}`);
    case "AWS::IAM::Role":
      return arn("iam", `role/${name}`, "");
    case "AWS::Logs::LogGroup":
      return arn("logs", `log-group:${name}:*`);
    case "AWS::StepFunctions::StateMachine":
      return arn("states", `stateMachine:${name}`);
    case "AWS::S3::Bucket":
      return `arn:${TWIN_PARTITION}:s3:::${name}`;
    default:
      return arn("unknown", `${resource.Type}/${name}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The functions and their roles.

/** One Lambda function as the template deploys it. */
export interface DeployedFunction {
  /** serverless.yml's key: plan, collect, commit. */
  key: string;
  functionName: string;
  /** The role's logical id in the template (PlanRole …). */
  role: string;
  /** Its inline policies and the managed ones this project attaches. */
  policies: IdentityPolicy[];
  environment: Record<string, string>;
  handler: string;
  timeoutSeconds: number;
  memorySize: number;
  /** The bundle's file name in the package directory. */
  bundle: string;
}

/** The managed policies the template attaches, as AWS defines them. */
const MANAGED_POLICIES: Record<string, IdentityPolicy["document"]> = {
  "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Action: ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        Resource: "*",
      },
    ],
  },
};

/** Every Lambda function of the template, its role resolved with the run's settings. */
export function templateFunctions(
  template: CloudFormationTemplate,
  settings: DeployedSettings,
): Record<string, DeployedFunction> {
  const resolved = resolveTemplateValue(
    template,
    settings,
    template.Resources,
  ) as CloudFormationTemplate["Resources"];
  const functions: Record<string, DeployedFunction> = {};
  for (const [id, resource] of Object.entries(resolved)) {
    if (resource.Type !== "AWS::Lambda::Function") continue;
    const properties = resource.Properties as {
      FunctionName: string;
      Handler: string;
      Timeout?: number;
      MemorySize?: number;
      Role: unknown;
      Code: { S3Key: string };
      Environment?: { Variables?: Record<string, string> };
    };
    // Each function's Role is Fn::GetAtt [<role's logical id>, Arn] (serverless.yml's `role:`).
    const roleReference = template.Resources[id]?.Properties?.Role as
      | { "Fn::GetAtt"?: [string, string] }
      | undefined;
    const roleId = roleReference?.["Fn::GetAtt"]?.[0];
    if (roleId === undefined) throw new Error(`${id} has no role of the template's own`);
    const role = (resolved[roleId]?.Properties ?? {}) as {
      Policies?: { PolicyName: string; PolicyDocument: IdentityPolicy["document"] }[];
      ManagedPolicyArns?: string[];
    };
    const key = id.replace(/LambdaFunction$/, "").replace(/^./, (first) => first.toLowerCase());
    functions[key] = {
      key,
      functionName: properties.FunctionName,
      role: roleId,
      policies: [
        ...(role.Policies ?? []).map((policy) => ({
          name: policy.PolicyName,
          document: policy.PolicyDocument,
        })),
        ...(role.ManagedPolicyArns ?? []).map((arn) => {
          const document = MANAGED_POLICIES[arn];
          if (!document) throw new Error(`the local twin does not know the managed policy ${arn}`);
          return { name: arn, document };
        }),
      ],
      environment: properties.Environment?.Variables ?? {},
      handler: properties.Handler,
      timeoutSeconds: properties.Timeout ?? 6,
      memorySize: properties.MemorySize ?? 128,
      bundle: path.basename(properties.Code.S3Key),
    };
  }
  return functions;
}

/** The credentials a function's requests are signed with: its role's, registered with the stand-ins. */
export interface RoleCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * Registers each function's role with the stand-ins under an access key id of its own (derived from the
 * role's policies, so two runs with different settings never share one) and returns the credentials each
 * function signs its requests with.
 */
export function registerDeployedRoles(
  functions: Record<string, DeployedFunction>,
): Record<string, RoleCredentials> {
  return Object.fromEntries(
    Object.values(functions).map((fn) => {
      const digest = createHash("sha256")
        .update(JSON.stringify([fn.role, fn.policies]))
        .digest("hex");
      const accessKeyId = `ASIA${digest.slice(0, 16).toUpperCase()}`;
      registerPrincipal(accessKeyId, {
        arn: `arn:${TWIN_PARTITION}:sts::${TWIN_ACCOUNT}:assumed-role/${fn.role}/${fn.functionName}`,
        label: fn.key,
        policies: fn.policies,
      });
      return [fn.key, { accessKeyId, secretAccessKey: accessKeyId }];
    }),
  );
}

/** A customer-managed policy of the template (the SecOps feed reader's), resolved with the run's settings. */
export function templateManagedPolicy(
  template: CloudFormationTemplate,
  settings: DeployedSettings,
  logicalId: string,
): IdentityPolicy {
  const resource = template.Resources[logicalId];
  if (resource?.Type !== "AWS::IAM::ManagedPolicy")
    throw new Error(`the template has no managed policy ${logicalId}`);
  const properties = resolveTemplateValue(template, settings, resource.Properties) as {
    ManagedPolicyName?: string;
    PolicyDocument: IdentityPolicy["document"];
  };
  return { name: properties.ManagedPolicyName ?? logicalId, document: properties.PolicyDocument };
}
