import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import AdmZip from "adm-zip";
import {
  type CloudFormationTemplate,
  type DeployedFunction,
  type DeployedSettings,
  type RoleCredentials,
  resolveTemplateValue,
  TWIN_ACCOUNT,
  TWIN_REGION,
} from "./deployed-roles";
import type { AslDefinition, LambdaContext, LocalHandler } from "./state-machine";

// What ships, run locally: each function's bundle from the zip `serverless package` wrote, in a process of its
// own (a container: local/lambda-container.js) with the environment the template gives it and its role's
// credentials, under the state machine definition the template deploys. Nothing of the TypeScript sources is
// loaded, so a bundling or environment mistake fails here instead of in a deployment.

/** The state machine definition the template deploys, and the function key each FunctionName ARN stands for. */
export function packagedDefinition(
  template: CloudFormationTemplate,
  settings: DeployedSettings,
  functions: Record<string, DeployedFunction>,
): { definition: AslDefinition; functionKeys: Record<string, string> } {
  const machine = Object.values(template.Resources).find(
    (resource) => resource.Type === "AWS::StepFunctions::StateMachine",
  );
  if (!machine) throw new Error("the packaged template has no state machine");
  const text = resolveTemplateValue(template, settings, machine.Properties?.DefinitionString);
  const functionKeys = Object.fromEntries(
    Object.values(functions).map((fn) => [
      `arn:aws:lambda:${TWIN_REGION}:${TWIN_ACCOUNT}:function:${fn.functionName}`,
      fn.key,
    ]),
  );
  return { definition: JSON.parse(String(text)) as AslDefinition, functionKeys };
}

/** What a container needs besides the function's own environment: where AWS is, and who it is. */
export interface ContainerSetting {
  /** The run's settings, overriding the packaged value of each variable the function has (as a deploy would). */
  env: Record<string, string | undefined>;
  /** AWS_ENDPOINT_URL_S3 and the like: where the stand-ins answer. */
  endpoints: Record<string, string>;
  credentials: Record<string, RoleCredentials>;
  /** Where the containers' log lines go (their standard output, as CloudWatch Logs gets a Lambda's). */
  logSink?: (line: string) => void;
}

export interface PackagedFunctions {
  handlers: Record<string, LocalHandler>;
  /** The file each container loaded its handler from. */
  loaded: Record<string, string>;
  close(): void;
}

/** Starts one container per function from the package in `directory`. */
export async function startPackagedFunctions(
  directory: string,
  functions: Record<string, DeployedFunction>,
  setting: ContainerSetting,
): Promise<PackagedFunctions> {
  const extracted = mkdtempSync(path.join(os.tmpdir(), "lambda-bundles-"));
  const containers: ChildProcess[] = [];
  const handlers: Record<string, LocalHandler> = {};
  const loaded: Record<string, string> = {};
  try {
    for (const fn of Object.values(functions)) {
      const root = path.join(extracted, fn.key);
      new AdmZip(path.join(directory, fn.bundle)).extractAllTo(root, true);
      const env = Object.fromEntries(
        Object.entries(fn.environment).map(([name, value]) => [name, setting.env[name] ?? value]),
      );
      const role = setting.credentials[fn.key];
      const container = fork(path.join(__dirname, "lambda-container.js"), [root, fn.handler], {
        // As Lambda sets it: the function's variables, its region and its role's credentials, nothing else.
        env: {
          ...env,
          ...setting.endpoints,
          AWS_REGION: TWIN_REGION,
          AWS_LAMBDA_FUNCTION_NAME: fn.functionName,
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.memorySize),
          ...(role
            ? { AWS_ACCESS_KEY_ID: role.accessKeyId, AWS_SECRET_ACCESS_KEY: role.secretAccessKey }
            : {}),
          PATH: process.env.PATH,
        },
        // Plain Node.js: no TypeScript loader of the parent's.
        execArgv: [],
        stdio: ["ignore", "pipe", "inherit", "ipc"],
      });
      containers.push(container);
      container.stdout?.setEncoding("utf8");
      let partial = "";
      container.stdout?.on("data", (chunk: string) => {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) (setting.logSink ?? ((text) => process.stdout.write(text)))(`${line}\n`);
      });
      loaded[fn.key] = await new Promise<string>((resolve, reject) => {
        container.once("message", (message: { file?: string }) => resolve(String(message.file)));
        container.once("exit", (code) =>
          reject(new Error(`the ${fn.key} container exited (${code}) before it was ready`)),
        );
      });
      handlers[fn.key] = invoker(container);
    }
  } catch (error) {
    for (const container of containers) container.kill();
    rmSync(extracted, { recursive: true, force: true });
    throw error;
  }
  return {
    handlers,
    loaded,
    close() {
      for (const container of containers) container.kill();
      rmSync(extracted, { recursive: true, force: true });
    },
  };
}

/** Invokes the container's handler: the event and the time budget out, the result or the runtime's error back. */
function invoker(container: ChildProcess): LocalHandler {
  let next = 0;
  const waiting = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  container.on("message", (message: { id?: number; result?: unknown; error?: RuntimeError }) => {
    if (message.id === undefined) return;
    const call = waiting.get(message.id);
    waiting.delete(message.id);
    if (!call) return;
    if (message.error) call.reject(runtimeError(message.error));
    else call.resolve(message.result);
  });
  return (event: unknown, context: LambdaContext) =>
    new Promise((resolve, reject) => {
      const id = next++;
      waiting.set(id, { resolve, reject });
      container.send({ id, event, deadlineMs: Date.now() + context.getRemainingTimeInMillis() });
    });
}

interface RuntimeError {
  errorType: string;
  errorMessage: string;
  trace: string[];
}

/** The error as the handler threw it, rebuilt from the runtime's shape (the engine reports it as the Cause). */
function runtimeError(shape: RuntimeError): Error {
  const error = new Error(shape.errorMessage);
  error.name = shape.errorType;
  error.stack = shape.trace.join("\n");
  return error;
}
