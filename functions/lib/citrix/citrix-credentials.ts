import {
  GetSecretValueCommand,
  type SecretsManagerClient,
  SecretsManagerServiceException,
} from "@aws-sdk/client-secrets-manager";
import * as z from "zod/mini";
import type { Logger } from "../aws/log";
import { CITRIX_CREDENTIAL_VARIABLES, type CitrixCredentialsConfig } from "../config/config";
import { ConfigurationError, SecretsManagerUnavailableError } from "../config/errors";
import "../config/zod-english";

export interface CitrixCredentials {
  customerId: string;
  clientId: string;
  clientSecret: string;
}

/**
 * Where the Citrix client gets its credentials. They are read when a token is first needed, so the plan and
 * commit functions never read them (nor need the IAM permission), and cached for the container.
 */
export interface CitrixCredentialsSource {
  /** Where an operator fixes the credentials when the token endpoint refuses them. */
  readonly origin: string;
  get(log: Logger): Promise<CitrixCredentials>;
  /** The token endpoint refused them: read them afresh next time, so a corrected secret works on Redrive. */
  forget(): void;
}

/** Builds the Secrets Manager client for the secret's region (from its ARN); called on the first read only. */
export type SecretsManagerFactory = (region: string) => SecretsManagerClient;

export function citrixCredentialsSource(
  config: CitrixCredentialsConfig,
  secretsManager: SecretsManagerFactory,
): CitrixCredentialsSource {
  if (config.source === "environment") {
    const { customerId, clientId, clientSecret } = config;
    return {
      origin: "CITRIX_CUSTOMER_ID, CITRIX_CLIENT_ID and CITRIX_CLIENT_SECRET",
      get: async () => ({ customerId, clientId, clientSecret }),
      forget: () => undefined,
    };
  }
  return new SecretCredentials(config.secretArn, () => secretsManager(config.region));
}

const nonEmpty = z.string().check(
  z.trim(),
  z.refine((value) => value !== ""),
);
const secretFields = z.object({
  CITRIX_CUSTOMER_ID: nonEmpty,
  CITRIX_CLIENT_ID: nonEmpty,
  CITRIX_CLIENT_SECRET: nonEmpty,
});
const EXPECTED_SECRET = `{${CITRIX_CREDENTIAL_VARIABLES.map((name) => `"${name}":"…"`).join(",")}}`;

/** The credentials in the JSON SecretString of CITRIX_SECRET_ARN, read once per container. */
class SecretCredentials implements CitrixCredentialsSource {
  readonly origin: string;
  private client: SecretsManagerClient | undefined;
  private cached: Promise<CitrixCredentials> | undefined;

  constructor(
    private readonly secretArn: string,
    private readonly buildClient: () => SecretsManagerClient,
  ) {
    this.origin = `the ${CITRIX_CREDENTIAL_VARIABLES.join(", ")} fields of the secret CITRIX_SECRET_ARN names (${secretArn})`;
  }

  get(log: Logger): Promise<CitrixCredentials> {
    if (this.cached) return this.cached;
    // Concurrent callers share one read; a failed read is not kept, so the next call tries again.
    const reading = this.read(log);
    this.cached = reading;
    reading.catch(() => {
      if (this.cached === reading) this.cached = undefined;
    });
    return reading;
  }

  forget(): void {
    this.cached = undefined;
  }

  private async read(log: Logger): Promise<CitrixCredentials> {
    this.client ??= this.buildClient();
    let secretString: string | undefined;
    let versionId: string | undefined;
    try {
      const result = await this.client.send(new GetSecretValueCommand({ SecretId: this.secretArn }));
      secretString = result.SecretString;
      versionId = result.VersionId;
    } catch (error) {
      throw secretsManagerError(error, this.secretArn);
    }
    const problem = (what: string) =>
      new ConfigurationError(
        `CITRIX_SECRET_ARN: the secret ${this.secretArn} ${what}; its SecretString must be the JSON ${EXPECTED_SECRET}`,
      );
    if (secretString === undefined) throw problem("has no SecretString (binary secrets are not supported)");
    let parsed: unknown;
    try {
      parsed = JSON.parse(secretString);
    } catch {
      // JSON.parse's message quotes the text it choked on, which here is the secret: never pass it on.
      throw problem("is not JSON");
    }
    const fields = secretFields.safeParse(parsed);
    if (!fields.success) {
      const missing = [...new Set(fields.error.issues.map((issue) => String(issue.path[0] ?? "")))];
      throw problem(
        missing.includes("")
          ? "is not a JSON object"
          : `lacks a non-empty string field ${missing.join(", ")}`,
      );
    }
    log.info("read the Citrix API credentials from Secrets Manager", {
      secretArn: this.secretArn,
      versionId,
    });
    return {
      customerId: fields.data.CITRIX_CUSTOMER_ID,
      clientId: fields.data.CITRIX_CLIENT_ID,
      clientSecret: fields.data.CITRIX_CLIENT_SECRET,
    };
  }
}

const THROTTLING = new Set(["ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"]);

/** A refusal (not found, access denied, KMS) needs an operator; throttling, 5xx and network errors do not. */
function secretsManagerError(error: unknown, secretArn: string): Error {
  const name = error instanceof Error ? error.name : "UnknownError";
  const detail = `${name}: ${error instanceof Error ? error.message : String(error)}`;
  if (error instanceof SecretsManagerServiceException && error.$fault === "client" && !THROTTLING.has(name)) {
    const fix =
      name === "ResourceNotFoundException"
        ? "check CITRIX_SECRET_ARN: the secret's full ARN, which also names its region"
        : name === "AccessDeniedException" || name === "DecryptionFailure"
          ? "the collect function's role needs secretsmanager:GetSecretValue on exactly CITRIX_SECRET_ARN (deploy with it set), and kms:Decrypt if the secret uses a customer managed key"
          : "check CITRIX_SECRET_ARN and the secret's state in Secrets Manager";
    return new ConfigurationError(`CITRIX_SECRET_ARN: cannot read ${secretArn} (${detail}): ${fix}`, {
      cause: error,
    });
  }
  return new SecretsManagerUnavailableError(
    `reading CITRIX_SECRET_ARN (${secretArn}) from Secrets Manager failed (${detail}); the state machine retries`,
    { cause: error },
  );
}
