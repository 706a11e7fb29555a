import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { GetSecretValueCommand } from "@aws-sdk/client-secrets-manager";
import { afterEach, describe, expect, it } from "vitest";
import { S3Store } from "../../../functions/lib/aws/s3-store";
import { StorageUnavailableError } from "../../../functions/lib/config/errors";
import {
  deployedSettings,
  readTemplate,
  registerDeployedRoles,
  TWIN_SETTINGS,
  templateFunctions,
  twinPackageDirectory,
} from "../../../local/deployed-roles";
import { BUCKET, expectFeedMatchesSimulator, STATE_KEY, type Stand, startStand } from "../../support/stand";

// 11:20 UTC with LOOKBACK_MINUTES 75: the newest eligible hour is 10:00.
const NOW = Date.parse("2026-11-24T11:20:00Z");
const HOURS = ["2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z"];
const ENTITIES = ["sessions", "machines", "users"];
const KMS_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0";

let stand: Stand | undefined;
afterEach(async () => {
  await stand?.close();
  stand = undefined;
});

/** The credentials each function signs with under its deployed role, for a stand's settings. */
function rolesFor(s: Stand) {
  const functions = templateFunctions(readTemplate(twinPackageDirectory()), deployedSettings(s.env));
  return { functions, credentials: registerDeployedRoles(functions) };
}

async function denial(
  request: Promise<unknown>,
): Promise<{ status?: number; name: string; message: string }> {
  try {
    await request;
  } catch (error) {
    const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
    return { status, name: (error as Error).name, message: (error as Error).message };
  }
  throw new Error("the request was allowed");
}

describe("the deployed roles, enforced by the stand-ins", () => {
  it("answers a request the role does not allow as S3 does: 403 AccessDenied naming the role and the action", async () => {
    stand = await startStand({ now: NOW, env: { ENTITIES: "sessions" } });
    const { credentials } = rolesFor(stand);
    const collect = stand.s3.client(credentials.collect);
    // Collect may write staging only: the feed is Commit's.
    const denied = await denial(
      collect.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: "citrix_analytics/sessions/x.ndjson", Body: "x" }),
      ),
    );
    expect(denied.status).toBe(403);
    expect(denied.name).toBe("AccessDenied");
    expect(denied.message).toMatch(
      /^User: arn:aws:sts::123456789012:assumed-role\/CollectRole\/\S+-collect is not authorized to perform: s3:PutObject on resource: arn:aws:s3:::collector-test\/citrix_analytics\/sessions\/x\.ndjson because no identity-based policy allows the s3:PutObject action$/,
    );
    expect(await stand.keys("citrix_analytics/")).toEqual([]);
    // What the role does allow goes through.
    await collect.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: "_citrix_collector/citrix_analytics/staging/r/x",
        Body: "x",
      }),
    );
  });

  it("answers a missing key with 403, not 404, to a role that may not list the whole bucket", async () => {
    stand = await startStand({ now: NOW, env: { ENTITIES: "sessions" } });
    const { credentials } = rolesFor(stand);
    const collect = stand.s3.client(credentials.collect);
    const key = "_citrix_collector/citrix_analytics/page-window.json";
    const missing = await denial(collect.send(new GetObjectCommand({ Bucket: BUCKET, Key: key })));
    expect(missing).toMatchObject({ status: 403, name: "AccessDenied", message: "Access Denied" });
    expect((await denial(collect.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })))).status).toBe(
      403,
    );
    // The administrator, who may list the bucket, learns that it is missing.
    const admin = await denial(stand.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key })));
    expect(admin).toMatchObject({ status: 404, name: "NoSuchKey" });
  });

  it("reads a missing key as missing through the role, and a passing S3 error while it tells so as retryable", async () => {
    stand = await startStand({ now: NOW, env: { ENTITIES: "sessions" } });
    const { credentials } = rolesFor(stand);
    const plan = new S3Store(stand.s3.client(credentials.plan), BUCKET);
    expect(await plan.getText(STATE_KEY)).toBeUndefined();
    // The 403 of a missing key is told from a denial by listing the key; that listing meets a 500. Found by
    // the fault schedules (seeds 224 and 229): it read as a permanent AccessDenied, which no Retry rides out.
    stand.s3.inject({ status: 500, code: "InternalError", times: 1, operation: "ListObjectsV2" });
    const failed = await plan.getText(STATE_KEY).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(StorageUnavailableError);
    expect(await plan.getText(STATE_KEY)).toBeUndefined();
  });

  it("reports the keys of a DeleteObjects the role may not delete, and deletes the others", async () => {
    stand = await startStand({ now: NOW, env: { ENTITIES: "sessions" } });
    const { credentials } = rolesFor(stand);
    const allowed = "_citrix_collector/citrix_analytics/leases/a.json";
    const protectedKey = "_citrix_collector/citrix_analytics/state.json";
    for (const key of [allowed, protectedKey])
      await stand.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "{}" }));
    const commit = stand.s3.client(credentials.commit);
    const result = await commit.send(
      new DeleteObjectsCommand({
        Bucket: BUCKET,
        Delete: { Objects: [{ Key: allowed }, { Key: protectedKey }], Quiet: true },
      }),
    );
    expect(result.Errors).toEqual([{ Key: protectedKey, Code: "AccessDenied", Message: "Access Denied" }]);
    expect(await stand.keys("_citrix_collector/")).toEqual([protectedKey]);
  });

  it("answers Secrets Manager as it does: AccessDeniedException for a secret the role may not read", async () => {
    stand = await startStand({ now: NOW, env: { ENTITIES: "sessions" }, credentials: "secretsManager" });
    const { credentials } = rolesFor(stand);
    const other = stand.secrets.putSecret("another-secret", "{}");
    const client = stand.secrets.client({ credentials: credentials.collect });
    const denied = await denial(client.send(new GetSecretValueCommand({ SecretId: other })));
    expect(denied.name).toBe("AccessDeniedException");
    expect(denied.message).toContain(
      `not authorized to perform: secretsmanager:GetSecretValue on resource: ${other}`,
    );
    // Its own secret it may read; Plan may read none.
    await client.send(new GetSecretValueCommand({ SecretId: stand.env.CITRIX_SECRET_ARN }));
    const plan = stand.secrets.client({ credentials: credentials.plan });
    expect(
      (await denial(plan.send(new GetSecretValueCommand({ SecretId: stand.env.CITRIX_SECRET_ARN })))).name,
    ).toBe("AccessDeniedException");
  });

  it("resolves the packaged template with the run's settings: placeholders replaced, conditions evaluated", async () => {
    stand = await startStand({ now: NOW, env: { ENTITIES: "sessions" } });
    const { functions } = rolesFor(stand);
    const text = JSON.stringify(functions);
    for (const placeholder of Object.values(TWIN_SETTINGS)) expect(text).not.toContain(placeholder);
    expect(text).toContain(`arn:aws:s3:::${BUCKET}/${STATE_KEY}`);
    // No KMS_KEY_ARN, no secret: the conditional policies are not there.
    expect(functions.collect?.policies.map((policy) => policy.name)).not.toContain("use-bucket-kms-key");
    expect(functions.collect?.policies.map((policy) => policy.name)).not.toContain("read-citrix-secret");
    const withKms = templateFunctions(
      readTemplate(twinPackageDirectory()),
      deployedSettings({ ...stand.env, KMS_KEY_ARN }),
    );
    expect(JSON.stringify(withKms.collect?.policies)).toContain(KMS_KEY_ARN);
  });
});

describe("an execution under the deployed roles", () => {
  it("publishes exactly to an SSE-KMS bucket (KMS_KEY_ARN): every write needs kms:GenerateDataKey, every read kms:Decrypt", async () => {
    stand = await startStand({
      now: NOW,
      env: { ENTITIES: ENTITIES.join(","), FIRST_HOUR_UTC: HOURS[0], KMS_KEY_ARN },
    });
    const result = await stand.run("kms-1");

    expect(result.error).toBeUndefined();
    expect(result.status).toBe("SUCCEEDED");
    for (const hourUtc of HOURS)
      for (const entity of ENTITIES) await expectFeedMatchesSimulator(stand, entity, hourUtc);
    expect(await stand.watermark()).toBe(HOURS[1]);
  });

  it("fails with AccessDenied and publishes nothing when the roles' inline policies are removed", async () => {
    stand = await startStand({ now: NOW, env: { ENTITIES: ENTITIES.join(","), FIRST_HOUR_UTC: HOURS[0] } });
    const template = readTemplate(twinPackageDirectory());
    for (const role of ["PlanRole", "CollectRole", "CommitRole"]) {
      const properties = template.Resources[role]?.Properties;
      if (!properties?.Policies) throw new Error(`the template has no inline policies on ${role}`);
      delete properties.Policies;
    }
    const result = await stand.run("no-policies-1", { template });

    expect(result.status).toBe("FAILED");
    expect(result.error?.message).toMatch(/AccessDenied/);
    expect(await stand.keys("citrix_analytics/")).toEqual([]);
    expect(await stand.watermark()).toBeNull();
  });

  it("rebuilds a deleted state file from the published markers", async () => {
    stand = await startStand({ now: NOW, env: { ENTITIES: ENTITIES.join(","), FIRST_HOUR_UTC: HOURS[0] } });
    expect((await stand.run("rebuild-1", { now: () => NOW - 3_600_000 })).status).toBe("SUCCEEDED");
    expect(await stand.watermark()).toBe(HOURS[0]);
    await stand.store.deleteKeys([STATE_KEY]);

    const result = await stand.run("rebuild-2");

    expect(result.error).toBeUndefined();
    expect(result.plan?.hours).toEqual([HOURS[1]]);
    expect(await stand.watermark()).toBe(HOURS[1]);
    for (const hourUtc of HOURS)
      for (const entity of ENTITIES) await expectFeedMatchesSimulator(stand, entity, hourUtc);
  });

  it("runs what ships: each packaged bundle in a container of its own, with its packaged environment and role, under the packaged definition", async () => {
    // The bundles read the real clock: the two newest settled hours.
    const newest = Math.floor((Date.now() - 75 * 60_000) / 3_600_000) * 3_600_000;
    const hours = [newest - 3_600_000, newest].map((ms) => new Date(ms).toISOString().replace(".000Z", "Z"));
    stand = await startStand({
      now: Date.now(),
      credentials: "secretsManager",
      env: { ENTITIES: ENTITIES.join(","), FIRST_HOUR_UTC: hours[0] as string, KMS_KEY_ARN },
    });
    const endpoints = {
      AWS_ENDPOINT_URL_S3: stand.s3.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: stand.secrets.endpoint,
    };
    const result = await stand.run("shipped-1", { packaged: { endpoints } });

    expect(result.error).toBeUndefined();
    expect(result.status).toBe("SUCCEEDED");
    expect(result.plan?.hours).toEqual(hours);
    for (const hourUtc of hours)
      for (const entity of ENTITIES) await expectFeedMatchesSimulator(stand, entity, hourUtc);
    expect(await stand.watermark()).toBe(hours[1]);
    // Not the sources: each handler came out of its zip, and logged from its own process.
    for (const key of ["plan", "collect", "commit"])
      expect(result.loadedFrom?.[key]).toMatch(
        new RegExp(`lambda-bundles-[^/]+/${key}/functions/${key}/handler\\.js$`),
      );
    expect(stand.logs.some((line) => line.includes('"message":"planned collection"'))).toBe(true);
    expect(stand.secrets.requests).toHaveLength(1);
  });
});
