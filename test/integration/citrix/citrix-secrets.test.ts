import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../functions/lib/aws/log";
import { CitrixClient } from "../../../functions/lib/citrix/citrix-client";
import {
  type CitrixCredentialsSource,
  citrixCredentialsSource,
} from "../../../functions/lib/citrix/citrix-credentials";
import { type CitrixSimulator, startCitrixSimulator } from "../../../stand-ins/citrix-simulator";
import {
  type LocalSecretsManager,
  startLocalSecretsManager,
} from "../../../stand-ins/secrets-manager-server";
import { failure } from "../../support/failure";

// Credentials from AWS Secrets Manager: the real @aws-sdk/client-secrets-manager client against the local
// Secrets Manager stand-in, then the Citrix client over them against the Citrix simulator.

const SECRET = {
  CITRIX_CUSTOMER_ID: "sim-customer",
  CITRIX_CLIENT_ID: "sim-client-id",
  CITRIX_CLIENT_SECRET: "sim-client-secret",
};
const logs: string[] = [];
const log = createLogger({}, (line) => logs.push(line));

let secrets: LocalSecretsManager;
let regions: string[];

beforeEach(async () => {
  secrets = await startLocalSecretsManager({ region: "eu-west-1" });
  regions = [];
  logs.length = 0;
});
afterEach(async () => {
  expect(logs.join("")).not.toContain(SECRET.CITRIX_CLIENT_SECRET);
  await secrets.close();
});

/** The source the runtime builds for CITRIX_SECRET_ARN, over a client pointed at the stand-in. */
function sourceFor(secretArn: string, maxAttempts?: number): CitrixCredentialsSource {
  return citrixCredentialsSource({ source: "secretsManager", secretArn, region: "eu-west-1" }, (region) => {
    regions.push(region);
    return secrets.client(maxAttempts === undefined ? {} : { maxAttempts });
  });
}

describe("reading CITRIX_SECRET_ARN", () => {
  it("reads the three fields once per container, one request for concurrent callers, in the secret's region", async () => {
    const source = sourceFor(secrets.putSecret("citrix", JSON.stringify(SECRET)));
    const read = await Promise.all([source.get(log), source.get(log), source.get(log)]);
    await source.get(log);
    expect(read).toEqual(
      Array(3).fill({
        customerId: "sim-customer",
        clientId: "sim-client-id",
        clientSecret: "sim-client-secret",
      }),
    );
    expect(secrets.requests).toHaveLength(1);
    expect(secrets.requests[0]?.target).toBe("secretsmanager.GetSecretValue");
    expect(regions).toEqual(["eu-west-1"]);
  });

  it("reads it afresh after forget(), so a corrected secret takes effect on the next invocation", async () => {
    const arn = secrets.putSecret("citrix", JSON.stringify({ ...SECRET, CITRIX_CLIENT_SECRET: "old" }));
    const source = sourceFor(arn);
    expect((await source.get(log)).clientSecret).toBe("old");
    secrets.putSecret("citrix", JSON.stringify(SECRET));
    expect((await source.get(log)).clientSecret).toBe("old");
    source.forget();
    expect((await source.get(log)).clientSecret).toBe("sim-client-secret");
    expect(secrets.requests).toHaveLength(2);
  });

  it("names CITRIX_SECRET_ARN when there is no such secret", async () => {
    const arn = "arn:aws:secretsmanager:eu-west-1:000000000000:secret:missing-AbCdEf";
    const error = await failure(sourceFor(arn).get(log));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain(`CITRIX_SECRET_ARN: cannot read ${arn} (ResourceNotFoundException`);
    expect(error.message).toContain("check CITRIX_SECRET_ARN");
  });

  it("names the missing fields, never the values, when the secret lacks some", async () => {
    const arn = secrets.putSecret(
      "citrix",
      JSON.stringify({
        CITRIX_CUSTOMER_ID: "sim-customer",
        CITRIX_CLIENT_SECRET: "  ",
        clientSecret: "s3cr3t",
      }),
    );
    const error = await failure(sourceFor(arn).get(log));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain(
      `the secret ${arn} lacks a non-empty string field CITRIX_CLIENT_ID, CITRIX_CLIENT_SECRET`,
    );
    expect(error.message).toContain(
      '{"CITRIX_CUSTOMER_ID":"…","CITRIX_CLIENT_ID":"…","CITRIX_CLIENT_SECRET":"…"}',
    );
    expect(error.message).not.toContain("sim-customer");
    expect(error.message).not.toContain("s3cr3t");
  });

  it.each([
    ["not JSON", "CITRIX_CLIENT_SECRET=s3cr3t", "is not JSON"],
    ["a JSON string", '"s3cr3t"', "is not a JSON object"],
    ["a JSON list", '["s3cr3t"]', "is not a JSON object"],
  ])("refuses a secret that is %s without quoting it", async (_what, value, says) => {
    const arn = secrets.putSecret("citrix", value);
    const error = await failure(sourceFor(arn).get(log));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain(`CITRIX_SECRET_ARN: the secret ${arn} ${says}`);
    expect(error.message).not.toContain("s3cr3t");
  });

  it("explains the IAM grant when the role may not read the secret", async () => {
    const arn = secrets.putSecret("citrix", JSON.stringify(SECRET));
    secrets.inject({ type: "AccessDeniedException", status: 400, times: 1 });
    const error = await failure(sourceFor(arn).get(log));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain("AccessDeniedException");
    expect(error.message).toContain("secretsmanager:GetSecretValue on exactly CITRIX_SECRET_ARN");
  });

  it.each([
    ["InternalServiceError", 500],
    ["ThrottlingException", 400],
  ])("leaves %s to the state machine's Retry, and reads again on the next call", async (type, status) => {
    const arn = secrets.putSecret("citrix", JSON.stringify(SECRET));
    secrets.inject({ type, status, times: 1 });
    const source = sourceFor(arn, 1);
    const error = await failure(source.get(log));
    expect(error.name).toBe("SecretsManagerUnavailableError");
    expect(error.message).toContain(type);
    expect((await source.get(log)).clientId).toBe("sim-client-id");
  });

  it("rides out a single 5xx with the SDK's own retry", async () => {
    const arn = secrets.putSecret("citrix", JSON.stringify(SECRET));
    secrets.inject({ type: "InternalServiceError", status: 500, times: 1 });
    expect((await sourceFor(arn).get(log)).clientId).toBe("sim-client-id");
    expect(secrets.requests.map((request) => request.status)).toEqual([500, 200]);
  });

  it("treats an unreachable Secrets Manager as retryable", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const source = citrixCredentialsSource(
      {
        source: "secretsManager",
        secretArn: "arn:aws:secretsmanager:eu-west-1:000000000000:secret:x-AbCdEf",
        region: "eu-west-1",
      },
      () => secrets.client({ endpoint: `http://127.0.0.1:${port}`, maxAttempts: 1 }),
    );
    const error = await failure(source.get(log));
    expect(error.name).toBe("SecretsManagerUnavailableError");
    expect(error.message).toContain("ECONNREFUSED");
  });
});

describe("the Citrix client over a secret", () => {
  let simulator: CitrixSimulator;
  beforeEach(async () => {
    simulator = await startCitrixSimulator({ volume: { sessions: 5 } });
  });
  afterEach(() => simulator.close());

  const clientOver = (source: CitrixCredentialsSource) =>
    new CitrixClient({
      credentials: source,
      apiBase: simulator.apiBase,
      tokenUrl: undefined,
      timeoutMs: 2000,
    });
  const hour = "2026-11-24T10:00:00Z";

  it("derives the token URL from the customer id read from the secret, and pages", async () => {
    const c = clientOver(sourceFor(secrets.putSecret("citrix", JSON.stringify(SECRET))));
    const page = await c.getPage(c.pageUrl("sessions", hour, 10, 0), Date.now() + 60_000, log);
    expect([...page.records].map((record) => JSON.parse(String(record)))).toEqual(
      simulator.records("sessions", hour),
    );
    expect(simulator.requests[0]?.path).toBe("/cctrustoauth2/sim-customer/tokens/clients");
  });

  it("names the secret's fields when the token endpoint refuses them, and reads the secret again after", async () => {
    const arn = secrets.putSecret(
      "citrix",
      JSON.stringify({ ...SECRET, CITRIX_CLIENT_SECRET: "wrong-s3cr3t" }),
    );
    const c = clientOver(sourceFor(arn));
    const url = c.pageUrl("sessions", hour, 10, 0);
    const error = await failure(c.getPage(url, Date.now() + 60_000, log));
    expect(error.name).toBe("CitrixAuthError");
    expect(error.message).toContain(
      `check the CITRIX_CUSTOMER_ID, CITRIX_CLIENT_ID, CITRIX_CLIENT_SECRET fields of the secret CITRIX_SECRET_ARN names (${arn})`,
    );
    expect(error.message).not.toContain("wrong-s3cr3t");
    // The operator fixes the secret and redrives: the same container reads it again.
    secrets.putSecret("citrix", JSON.stringify(SECRET));
    expect((await c.getPage(url, Date.now() + 60_000, log)).records.length).toBe(5);
    expect(secrets.requests).toHaveLength(2);
  });
});
