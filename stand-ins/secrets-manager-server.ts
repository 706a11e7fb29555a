// An AWS Secrets Manager stand-in for tests and local runs: GetSecretValue over the service's JSON protocol
// (POST /, X-Amz-Target: secretsmanager.GetSecretValue, AWS JSON 1.1 bodies) on 127.0.0.1, so the real
// @aws-sdk/client-secrets-manager client is what the collector's code is tested with.
import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { SecretsManagerClient, type SecretsManagerClientConfig } from "@aws-sdk/client-secrets-manager";
import { accessKeyIdOf, authorize } from "./access-control";
import { startLoopbackServer } from "./loopback-server";

export interface SecretsManagerRequest {
  target: string;
  secretId: string | undefined;
  status: number;
}

/** Answers the next `times` requests with this AWS error instead (e.g. 500 InternalServiceError). */
export interface SecretsManagerFault {
  type: string;
  status: number;
  times: number;
}

export interface LocalSecretsManager {
  readonly endpoint: string;
  /** Stores (or replaces the value of) a secret and returns its full ARN, random suffix included. */
  putSecret(name: string, secretString: string): string;
  deleteSecret(name: string): void;
  inject(fault: SecretsManagerFault): void;
  readonly requests: SecretsManagerRequest[];
  /** A real SDK client pointed at this server, with dummy credentials (the server only checks a signature is there). */
  client(config?: Partial<SecretsManagerClientConfig>): SecretsManagerClient;
  close(): Promise<void>;
}

interface StoredSecret {
  arn: string;
  name: string;
  secretString: string;
  versionId: string;
  createdDate: number;
}

const ACCOUNT = "000000000000";
const JSON_1_1 = "application/x-amz-json-1.1";

export async function startLocalSecretsManager(
  options: { region?: string } = {},
): Promise<LocalSecretsManager> {
  const region = options.region ?? "us-east-1";
  const secrets = new Map<string, StoredSecret>();
  const requests: SecretsManagerRequest[] = [];
  const faults: SecretsManagerFault[] = [];

  const find = (secretId: string): StoredSecret | undefined =>
    secrets.get(secretId) ?? [...secrets.values()].find((secret) => secret.arn === secretId);

  function answer(res: ServerResponse, entry: SecretsManagerRequest, status: number, body: object): void {
    entry.status = status;
    requests.push(entry);
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": JSON_1_1, "content-length": String(Buffer.byteLength(text)) });
    res.end(text);
  }

  function fail(
    res: ServerResponse,
    entry: SecretsManagerRequest,
    status: number,
    type: string,
    message: string,
  ) {
    answer(res, entry, status, { __type: type, message });
  }

  function handle(req: IncomingMessage, res: ServerResponse, raw: string) {
    const target = String(req.headers["x-amz-target"] ?? "");
    const entry: SecretsManagerRequest = { target, secretId: undefined, status: 0 };
    if (req.method !== "POST" || req.url !== "/") {
      return fail(res, entry, 404, "UnknownOperationException", "POST / only");
    }
    if (!String(req.headers.authorization ?? "").startsWith("AWS4-HMAC-SHA256 Credential=")) {
      return fail(res, entry, 400, "MissingAuthenticationTokenException", "Missing Authentication Token");
    }
    if (target !== "secretsmanager.GetSecretValue") {
      return fail(res, entry, 400, "UnknownOperationException", `${target} is not supported here`);
    }
    let input: unknown;
    try {
      input = JSON.parse(raw);
    } catch {
      return fail(res, entry, 400, "SerializationException", "the body is not JSON");
    }
    const secretId = (input as { SecretId?: unknown } | null)?.SecretId;
    if (typeof secretId !== "string" || secretId === "") {
      return fail(res, entry, 400, "InvalidParameterException", "SecretId is required");
    }
    entry.secretId = secretId;
    // IAM first, as the service answers: a principal that may not read the secret learns nothing of it.
    const found = find(secretId);
    const resource =
      found?.arn ??
      (secretId.startsWith("arn:")
        ? secretId
        : `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:${secretId}`);
    const accessKeyId = accessKeyIdOf(String(req.headers.authorization ?? ""));
    authorize(accessKeyId, [{ action: "secretsmanager:GetSecretValue", resource }]).then(
      (decision) =>
        decision.allowed
          ? serve(res, entry, secretId)
          : fail(res, entry, 400, "AccessDeniedException", decision.message),
      (error: unknown) => fail(res, entry, 500, "InternalServiceError", String(error)),
    );
  }

  function serve(res: ServerResponse, entry: SecretsManagerRequest, secretId: string) {
    const fault = faults[0];
    if (fault) {
      fault.times--;
      if (fault.times <= 0) faults.shift();
      return fail(res, entry, fault.status, fault.type, "simulated failure");
    }
    const secret = find(secretId);
    if (!secret) {
      return fail(
        res,
        entry,
        400,
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret.",
      );
    }
    answer(res, entry, 200, {
      ARN: secret.arn,
      Name: secret.name,
      SecretString: secret.secretString,
      VersionId: secret.versionId,
      VersionStages: ["AWSCURRENT"],
      CreatedDate: secret.createdDate,
    });
  }

  const { server, endpoint } = await startLoopbackServer(handle);
  let closing: Promise<void> | undefined;

  return {
    endpoint,
    requests,
    putSecret(name, secretString) {
      const existing = secrets.get(name);
      // The real service appends "-" and six random characters to the name in the ARN.
      const suffix = randomBytes(6)
        .toString("base64url")
        .replace(/[^A-Za-z0-9]/g, "x")
        .slice(0, 6);
      const arn = existing?.arn ?? `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:${name}-${suffix}`;
      secrets.set(name, { arn, name, secretString, versionId: randomUUID(), createdDate: Date.now() / 1000 });
      return arn;
    },
    deleteSecret(name) {
      secrets.delete(name);
    },
    inject(fault) {
      if (!Number.isInteger(fault.times) || fault.times < 1) throw new RangeError("times must be ≥ 1");
      faults.push({ ...fault });
    },
    client: (config = {}) =>
      new SecretsManagerClient({
        endpoint,
        region,
        credentials: { accessKeyId: "LOCAL", secretAccessKey: "LOCAL" },
        ...config,
      }),
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
