import path from "node:path";
import { PutBucketEncryptionCommand, type S3Client } from "@aws-sdk/client-s3";
import type { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { createHandler as createCollectHandler } from "../functions/collect/handler";
import { createHandler as createCommitHandler } from "../functions/commit/handler";
import { createLogger, type LogSink, serviceName } from "../functions/lib/aws/log";
import { createMetricsFactory, type MetricsSink } from "../functions/lib/aws/metrics";
import type { Env } from "../functions/lib/config/config";
import type {
  CollectOutput,
  CommitOutput,
  EntityHourFigures,
  PlanOutput,
} from "../functions/lib/config/contracts";
import { collectInputSchema } from "../functions/lib/config/contracts";
import type { ExecutionStatusLookup } from "../functions/lib/feed/plan-run";
import {
  type CitrixDeps,
  runtimeFromEnvironment,
  type StoreRuntime,
  storeRuntimeFromEnvironment,
} from "../functions/lib/runtime";
import { createHandler as createPlanHandler } from "../functions/plan/handler";
import { authorize } from "../stand-ins/access-control";
import {
  type CloudFormationTemplate,
  type DeployedFunction,
  deployedSettings,
  type RoleCredentials,
  readTemplate,
  registerDeployedRoles,
  templateFunctions,
  twinPackageDirectory,
} from "./deployed-roles";
import type { HistoryEvent } from "./execution-history";
import { failureMessage } from "./failure";
import { packagedDefinition, startPackagedFunctions } from "./packaged-functions";
import {
  type EngineLatencies,
  type JsonValue,
  type LocalHandler,
  startLocalExecution,
} from "./state-machine";
import { readYamlFile } from "./yaml-file";

export const SERVERLESS_PATH = path.join(__dirname, "..", "serverless.yml");

/** The functions serverless.yml deploys, with their timeouts (the Lambda context counts down from them). */
export function deployedFunctions(
  file = SERVERLESS_PATH,
): Record<string, { handler: string; timeoutMs: number }> {
  const service = readYamlFile(file) as {
    functions: Record<string, { handler: string; timeout?: number }>;
  };
  return Object.fromEntries(
    Object.entries(service.functions).map(([key, fn]) => [
      key,
      { handler: fn.handler, timeoutMs: (fn.timeout ?? 6) * 1000 },
    ]),
  );
}

/** An S3 client signed with the given credentials, or the caller's own (an administrator) without. */
export type S3ClientFactory = (credentials?: RoleCredentials) => S3Client;

export interface LocalCollectionOptions {
  env: Env;
  s3: S3ClientFactory;
  /**
   * Whose permissions each function's requests carry. "deployed" (the default): its role from the packaged
   * template, enforced by the stand-ins (see deployed-roles.ts), with the bucket's SSE-KMS key set from
   * KMS_KEY_ARN. "caller": the caller's own credentials, for a run against real AWS (where AWS enforces
   * them) and for the tests that say why they must not be enforced.
   */
  roles?: "deployed" | "caller";
  /** The template whose roles are deployed: the packaged one by default (a test may remove a policy). */
  template?: CloudFormationTemplate;
  /**
   * Runs what ships instead of the sources: each function's packaged bundle in a container of its own (see
   * packaged-functions.ts) under the packaged definition, reaching the stand-ins at these endpoints
   * (AWS_ENDPOINT_URL_S3 …). `wrap`, `adaptRuntime`, `now`, `citrix` and `executionStatus` do not reach into
   * the containers.
   */
  packaged?: { endpoints: Record<string, string> };
  executionName: string;
  /** Execution input: {} for a scheduled run. */
  input?: JsonValue;
  now?: () => number;
  logSink?: LogSink;
  /** Where the functions' EMF metric lines go; by default with the log lines, as in a Lambda log stream. */
  metricsSink?: MetricsSink;
  /** Overrides the deployed timeouts, e.g. to force the collect loop to continue across invocations. */
  timeoutsMs?: Record<string, number>;
  retryPauseMs?: number;
  /** See LocalExecutionOptions.definitionChecked. */
  definitionChecked?: boolean;
  /** Wraps each handler, so tests can kill or slow an invocation. */
  wrap?: (functionKey: string, handler: LocalHandler) => LocalHandler;
  /** Redrives a failed execution: starts at the state that failed, with the input it had (see startAt). */
  redrive?: RedrivePoint;
  /** Adjusts each function's per-container runtime once it is built (tests swap in an instrumented store). */
  adaptRuntime?: <R extends StoreRuntime>(runtime: R) => R;
  /** The Secrets Manager client and the Citrix client's backoff the collect function is built over. */
  citrix?: CitrixDeps;
  /**
   * Builds the collect function's Secrets Manager client for a stand-in, signed with the function's role (see
   * `roles`); `citrix.secretsManager`, when set, is used as it is instead.
   */
  secretsManager?: (region: string, credentials?: RoleCredentials) => SecretsManagerClient;
  /** Whether a lease holder still runs; by default, whether it runs in this process. */
  executionStatus?: ExecutionStatusLookup;
  /** See LocalExecutionOptions.latencies. */
  latencies?: EngineLatencies;
}

/**
 * The executions running in this process, as Plan asks Step Functions about a lease holder: a local run
 * killed with its process (or an execution that ended) is not here, so its hours are collected again.
 */
const runningLocally = new Set<string>();

export const localExecutionStatus: ExecutionStatusLookup = async (executionName) =>
  runningLocally.has(executionName) ? "running" : "ended";

/**
 * Deploys the functions' roles to the stand-ins: each function's role from the packaged template, with this
 * run's settings, registered under credentials of its own. With KMS_KEY_ARN the bucket is encrypted with that
 * key by default (as the deployer's bucket is, or the one CREATE_BUCKET makes), so every write and read goes
 * through the key's permissions.
 */
async function deployRoles(
  env: Env,
  s3: S3ClientFactory,
  template: CloudFormationTemplate,
): Promise<{ functions: Record<string, DeployedFunction>; credentials: Record<string, RoleCredentials> }> {
  const settings = deployedSettings(env);
  const functions = templateFunctions(template, settings);
  const admin = s3();
  await admin.send(
    new PutBucketEncryptionCommand({
      Bucket: settings.bucket,
      ServerSideEncryptionConfiguration: {
        Rules: [
          {
            ApplyServerSideEncryptionByDefault: settings.kmsKeyArn
              ? { SSEAlgorithm: "aws:kms", KMSMasterKeyID: settings.kmsKeyArn }
              : { SSEAlgorithm: "AES256" },
            BucketKeyEnabled: settings.kmsKeyArn !== undefined,
          },
        ],
      },
    }),
  );
  return { functions, credentials: registerDeployedRoles(functions) };
}

/**
 * Plan's question to Step Functions about a lease holder, answered in this process but allowed only as AWS
 * would allow it (states:DescribeExecution on the holder's execution ARN); a denial reads as "unknown", as
 * stepFunctionsExecutionStatus reads any error but ExecutionDoesNotExist.
 */
function authorizedExecutionStatus(
  lookup: ExecutionStatusLookup,
  role: RoleCredentials | undefined,
): ExecutionStatusLookup {
  return async (executionName, ownExecutionArn) => {
    const executionArn = ownExecutionArn?.replace(/[^:]+$/, executionName);
    if (role && executionArn) {
      const decision = await authorize(role.accessKeyId, [
        { action: "states:DescribeExecution", resource: executionArn },
      ]);
      if (!decision.allowed) return "unknown";
    }
    return lookup(executionName, ownExecutionArn);
  };
}

/** Where a failed execution stopped: the top-level state that failed and the input it was given. */
export interface RedrivePoint {
  state: string;
  input: JsonValue;
}

export interface LocalCollectionResult {
  status: "SUCCEEDED" | "FAILED";
  /** What Plan and Commit handed on, as the console shows it in the states' outputs. */
  plan: PlanOutput | undefined;
  /**
   * What the collect function reported per entity-hour (finished, or as far as its last invocation got), in
   * the order they started (the Map keeps none of it in the state: ResultPath null); undefined when collect
   * never returned.
   */
  collected: EntityHourFigures[] | undefined;
  commit: CommitOutput | undefined;
  output: unknown;
  /**
   * Error and Cause as Step Functions reports them (a failed Task's Cause is the Lambda runtime's JSON error
   * object), and the message a person reads (the errorMessage of that object, or the Cause itself).
   */
  error: { name: string; cause: string; message: string } | undefined;
  /** Set when the execution failed: what a Redrive would restart. */
  redrive: RedrivePoint | undefined;
  /** With `packaged`: the file each function's handler was loaded from, in its container. */
  loadedFrom?: Record<string, string>;
  /** The execution's history as AWS keeps it (GetExecutionHistory's events). */
  history: HistoryEvent[];
  /** AWS history events per Map iteration, by index: what each item adds to the execution's history. */
  iterationEvents: Record<number, number>;
  /** Task invocations per state name, including retries (Step Functions history grows with these). */
  invocations: Record<string, number>;
  retries: number;
}

/**
 * Runs one execution of the deployed state machine locally: the definition file in
 * aws-local-stepfunctions, each Task bound to the real handler built over the given clients.
 */
export async function runLocalCollection(options: LocalCollectionOptions): Promise<LocalCollectionResult> {
  const functions = deployedFunctions();
  // Built on first use, as in a Lambda container, so a bad configuration fails the first state by name. Plan
  // and commit load theirs without the Citrix settings, as they are deployed without them.
  const service = serviceName(options.env);
  const log = createLogger({}, options.logSink, service, options.env);
  const adapt = <R extends StoreRuntime>(build: () => R): (() => R) => {
    let adapted: R | undefined;
    return () => (adapted ??= options.adaptRuntime ? options.adaptRuntime(build()) : build());
  };
  const template =
    options.roles === "caller" && !options.packaged
      ? undefined
      : (options.template ?? readTemplate(twinPackageDirectory()));
  const deployed = template && (await deployRoles(options.env, options.s3, template));
  const credentials = deployed?.credentials ?? {};
  const s3For = (key: string) => () => options.s3(credentials[key]);
  const secretsManager = options.secretsManager;
  const citrix: CitrixDeps = {
    ...options.citrix,
    secretsManager:
      options.citrix?.secretsManager ??
      (secretsManager ? (region) => secretsManager(region, credentials.collect) : undefined),
  };
  const metrics = createMetricsFactory(options.env, options.metricsSink ?? options.logSink);
  const executionStatus = options.executionStatus ?? localExecutionStatus;
  // What ships (the bundles, in containers of their own) or the sources, built over this process's clients.
  const packaged =
    options.packaged && deployed
      ? await startPackagedFunctions(twinPackageDirectory(), deployed.functions, {
          env: options.env,
          endpoints: options.packaged.endpoints,
          credentials,
          logSink: options.logSink,
        })
      : undefined;
  const handlers: Record<string, LocalHandler> = packaged?.handlers ?? {
    plan: createPlanHandler({
      runtime: adapt(storeRuntimeFromEnvironment(options.env, s3For("plan"), log)),
      metrics,
      now: options.now ?? Date.now,
      executionStatus: authorizedExecutionStatus(executionStatus, credentials.plan),
    }),
    collect: createCollectHandler({
      runtime: adapt(runtimeFromEnvironment(options.env, s3For("collect"), log, citrix)),
      metrics,
    }),
    commit: createCommitHandler({
      runtime: adapt(storeRuntimeFromEnvironment(options.env, s3For("commit"), log)),
      metrics,
    }),
  };
  const invocations: Record<string, number> = {};
  // By entity-hour, in the order they were first invoked or reported; undefined until one reported it.
  const collected = new Map<string, EntityHourFigures | undefined>();
  const wrapped = Object.fromEntries(
    Object.entries(handlers).map(([key, handler]) => {
      const inner = options.wrap ? options.wrap(key, handler) : handler;
      const counted: LocalHandler = async (event, context) => {
        invocations[key] = (invocations[key] ?? 0) + 1;
        const item = key === "collect" ? collectInputSchema.safeParse(event).data : undefined;
        if (item && !collected.has(entityHourKey(item))) collected.set(entityHourKey(item), undefined);
        const result = await inner(event, context);
        if (item)
          for (const figures of reportedFigures(result as CollectOutput))
            collected.set(entityHourKey(figures), figures);
        return result;
      };
      return [key, counted];
    }),
  );
  const timeoutsMs = Object.fromEntries(Object.entries(functions).map(([key, fn]) => [key, fn.timeoutMs]));
  const shipped =
    packaged && template && deployed
      ? packagedDefinition(template, deployedSettings(options.env), deployed.functions)
      : undefined;
  const execution = startLocalExecution({
    ...shipped,
    handlers: wrapped,
    executionName: options.executionName,
    input: options.redrive?.input ?? options.input ?? {},
    startAt: options.redrive?.state,
    timeoutsMs: { ...timeoutsMs, ...options.timeoutsMs },
    retryPauseMs: options.retryPauseMs,
    definitionChecked: options.definitionChecked,
    latencies: options.latencies,
  });

  let retries = 0;
  let failure: LocalCollectionResult["error"];
  const outputs: Record<string, unknown> = {};
  let lastEntered: RedrivePoint | undefined;
  const watching = (async () => {
    for await (const event of execution.eventLogs) {
      if (event.type === "StateRetried") retries++;
      if (event.type === "ExecutionFailed") {
        const cause = String(event.Cause ?? "");
        failure = { name: event.Error, cause, message: failureMessage(cause) };
      }
      if (event.type === "StateExited") outputs[event.state.name] = event.state.output;
      // States inside a Map iteration carry the iteration index; top-level states do not.
      if (event.type === "StateEntered" && event.index === undefined) {
        lastEntered = { state: event.state.name, input: event.state.input as JsonValue };
      }
    }
  })();
  let output: unknown;
  runningLocally.add(options.executionName);
  try {
    output = await execution.result;
  } catch (error) {
    const cause = String(error);
    failure ??= { name: error instanceof Error ? error.name : "Error", cause, message: cause };
  } finally {
    runningLocally.delete(options.executionName);
    packaged?.close();
  }
  await watching;
  const returned = [...collected.values()].filter((output) => output !== undefined);
  return {
    status: failure ? "FAILED" : "SUCCEEDED",
    plan: outputs.PlanHours as PlanOutput | undefined,
    collected: returned.length > 0 ? returned : undefined,
    commit: outputs.PublishAndAdvance as CommitOutput | undefined,
    output,
    error: failure,
    redrive: failure ? lastEntered : undefined,
    history: execution.history.events,
    loadedFrom: packaged?.loaded,
    iterationEvents: execution.history.iterationEvents(),
    invocations,
    retries,
  };
}

function entityHourKey({ entity, hourUtc }: { entity: string; hourUtc: string }): string {
  return `${entity} ${hourUtc}`;
}

/** The entity-hours a collect invocation finished, and the one it handed over as far as it got. */
function reportedFigures(output: CollectOutput): EntityHourFigures[] {
  const { entity, hourUtc, progress, done, finished } = output;
  if (done || progress === undefined) return finished;
  const { pages, records, parts, invocations } = progress;
  return [...finished, { entity, hourUtc, pages, records, parts, invocations }];
}
