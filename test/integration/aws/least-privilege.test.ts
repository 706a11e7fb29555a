import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CloudFormationTemplate,
  deployedSettings,
  readTemplate,
  templateFunctions,
  templateManagedPolicy,
  twinPackageDirectory,
} from "../../../local/deployed-roles";
import { type AccessRecord, onAccess, registerPrincipal } from "../../../stand-ins/access-control";
import { instrument } from "../../support/instrumented-store";
import {
  BUCKET,
  expectFeedMatchesSimulator,
  FEED_PREFIX,
  PAGE_WINDOW_HINT_KEY,
  pageWindowHint,
  STATE_KEY,
  type Stand,
  startStand,
} from "../../support/stand";

// Least privilege, shown both ways, from the requests real executions make under the deployed roles: every
// statement of every Lambda role, and every action it lists, allowed some request (nothing granted is unused),
// and no request was denied (nothing used is missing). The executions walk every path that needs a grant of
// its own: a seed how-to user's state file, an SSE-KMS bucket, the Citrix secret, the page window shared and
// learned under throttling, a first run, a Commit that failed half-way and is finished by the next execution (one of its
// staging parts gone after its copy landed), a lease of an ended and of a running execution, and a lost state
// file rebuilt from the markers (one of them written before the upgrade to per-entity publishing), and the page
// window's hint deleted.
//
// The slow check (`npm run check:roles`) runs this file once per statement with that statement removed from
// the template (LEAST_PRIVILEGE_WITHOUT=<role>/<policy>#<index>): some assertion must fail every time.

const H = 3_600_000;
const NOW = Date.parse("2026-11-24T11:20:00Z");
const SEED_KEY = "citrix_analytics/state.json";
const KMS_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0";
const ENTITIES = ["sessions", "machines", "users"];
const CONTROL = "_citrix_collector/citrix_analytics";
const LAMBDA_ROLES = ["plan", "collect", "commit"];
/** What a version before per-entity publishing wrote for an hour it published (13:00; its parts are in the feed). */
const LEGACY_MANIFEST = JSON.stringify({
  runId: "before-upgrade",
  hourUtc: "2026-11-24T13:00:00Z",
  claimedAt: "2026-11-24T14:16:00Z",
  entities: Object.fromEntries(ENTITIES.map((entity) => [entity, { records: 0, parts: 0, segments: [] }])),
});
const LEGACY_MARKER = JSON.stringify({
  manifest: "before-upgrade",
  by: "before-upgrade",
  at: "2026-11-24T14:16:05Z",
  watermark: "2026-11-24T12:00:00Z",
});

/** The packaged template, less the statement LEAST_PRIVILEGE_WITHOUT names (the slow check). */
function templateUnderTest(): CloudFormationTemplate {
  const template = readTemplate(twinPackageDirectory());
  const without = process.env.LEAST_PRIVILEGE_WITHOUT;
  if (!without) return template;
  const [, role, policyName, index] = /^([^/]+)\/([^#]+)#(\d+)$/.exec(without) ?? [];
  const policies = template.Resources[role ?? ""]?.Properties?.Policies as unknown[] | undefined;
  const policy = findPolicy(policies ?? [], policyName ?? "");
  if (!policy?.PolicyDocument.Statement[Number(index) - 1])
    throw new Error(`LEAST_PRIVILEGE_WITHOUT=${without}: no such statement`);
  policy.PolicyDocument.Statement.splice(Number(index) - 1, 1);
  return template;
}

/** A policy by name among a role's Policies, looking inside Fn::If branches as a deploy would choose them. */
function findPolicy(
  policies: unknown[],
  name: string,
): { PolicyName: string; PolicyDocument: { Statement: unknown[] } } | undefined {
  for (const entry of policies) {
    const candidates = (entry as { "Fn::If"?: unknown[] })["Fn::If"]?.slice(1) ?? [entry];
    for (const candidate of candidates) {
      if ((candidate as { PolicyName?: string }).PolicyName === name)
        return candidate as { PolicyName: string; PolicyDocument: { Statement: unknown[] } };
    }
  }
  return undefined;
}

const records: AccessRecord[] = [];
let stand: Stand;
let template: CloudFormationTemplate;
const outcomes: Record<string, string> = {};

beforeAll(async () => {
  const stop = onAccess((record) => records.push(record));
  template = templateUnderTest();
  stand = await startStand({
    now: NOW,
    credentials: "secretsManager",
    // Two requests at a time per customer, 100 ms a page: the Map's iterations share a learnt limit and
    // count their finished neighbours (one S3 listing every 2 s) while sessions' 20 pages go on.
    simulator: {
      volume: { sessions: 2000, machines: 300, users: 300 },
      pageLatencyMs: 100,
      concurrencyLimit: { requests: 2 },
    },
    env: { ENTITIES: ENTITIES.join(","), TOP_N: "100", SEED_STATE_KEY: SEED_KEY, KMS_KEY_ARN },
  });
  try {
    const run = (name: string, hoursLater: number, options: Parameters<Stand["run"]>[1] = {}) =>
      stand
        .run(name, {
          now: () => NOW + hoursLater * H,
          template,
          // Real pauses between refused requests (at most 250 ms), so throttling is ridden out as in AWS.
          citrix: {
            client: { sleep: (ms) => new Promise((resolve) => setTimeout(resolve, Math.min(ms, 250))) },
          },
          ...options,
        })
        .then((result) => {
          outcomes[name] =
            `${result.status}${result.error ? ` ${result.error.name}: ${result.error.message}` : ""}`;
          return result;
        });
    // A learnt limit of 3.
    await stand.store.put(PAGE_WINDOW_HINT_KEY, pageWindowHint(NOW, { limit: 3 }), "application/json");

    // 1. The first run (FIRST_HOUR_UTC 09:00; no state file, no seed state file, no marker) collects 09:00 and
    // 10:00; its Commit dies after the first copy of 10:00.
    const { store, adaptRuntime } = instrument(stand.store, FEED_PREFIX);
    let copies10 = 0;
    store.beforeCopy = (destination) => {
      if (destination.includes("/hour=10/") && ++copies10 > 1)
        throw new Error("killed half-way through Commit");
    };
    await run("lp-1", 0, { adaptRuntime, env: { ...stand.env, FIRST_HOUR_UTC: "2026-11-24T09:00:00Z" } });
    store.beforeCopy = () => undefined;
    // The staging part of the copy that landed is gone (expired): the next Commit finds the copy in the feed.
    const landed = store.feedWrites.find((key) => key.includes("/hour=10/"));
    if (landed) {
      const [entity, , , , , part] = landed.slice(FEED_PREFIX.length + 1).split("/");
      const staged = (await stand.keys(`${CONTROL}/staging/lp-1/${entity}/`)).filter(
        (key) => key.includes("/hour=10/") && key.endsWith(part ?? "-"),
      );
      await stand.store.deleteKeys(staged);
    }

    // 2. An hour later: lp-1 has ended, so its lease goes and its claim of 10:00 is finished.
    await run("lp-2", 1);

    // 3. lp-3 collects 12:00 while lp-4 (an hour later) starts: lp-4 leaves 12:00 to it.
    let collecting: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      collecting = resolve;
    });
    const slow = run("lp-3", 2, {
      wrap: (key, handler) => async (event, context) => {
        if (key === "collect") collecting();
        return handler(event, context);
      },
    });
    // (If lp-3 never gets to collect, the assertions below say why.)
    await Promise.race([started, slow]);
    await run("lp-4", 3);
    await slow;

    // 4. The state file is deleted: it is rebuilt from the published markers, the newest of them (13:00) as a
    // version before entity-hours were published one by one wrote it (with its per-hour manifest). The page
    // window's hint is deleted too (docs/operations.md: to have the limit found afresh): Collect reads it missing.
    const hour13 = "year=2026/month=11/day=24/hour=13";
    await stand.store.deleteKeys([
      ...(await stand.keys(`${CONTROL}/published/${hour13}/`)),
      ...(await stand.keys(`${CONTROL}/manifests/${hour13}/`)),
    ]);
    await stand.store.put(`${CONTROL}/manifests/${hour13}.json`, LEGACY_MANIFEST, "application/json");
    await stand.store.put(`${CONTROL}/published/${hour13}`, LEGACY_MARKER, "application/json");
    await stand.store.deleteKeys([STATE_KEY, PAGE_WINDOW_HINT_KEY]);
    await run("lp-5", 4);

    // 5. The state file is deleted again, and a seed how-to user's state file (inside the feed prefix, where
    // the seed wrote it) is there: its watermark is read, and moved over what was published since.
    await stand.store.deleteKeys([STATE_KEY]);
    await stand.store.put(SEED_KEY, '{"last_hour_utc":"2026-11-24T12:00:00Z"}', "application/json");
    await run("lp-6", 5);
  } finally {
    stop();
  }
}, 240_000);

afterAll(() => stand.close());

describe("the Lambda roles, from the requests of real executions under them", () => {
  it("let every execution succeed, except the Commit killed on purpose, and publish every hour exactly", async () => {
    expect(outcomes).toEqual({
      "lp-1": expect.stringMatching(/^FAILED /),
      "lp-2": "SUCCEEDED",
      "lp-3": "SUCCEEDED",
      "lp-4": "SUCCEEDED",
      "lp-5": "SUCCEEDED",
      "lp-6": "SUCCEEDED",
    });
    for (let hour = 9; hour <= 15; hour++) {
      const hourUtc = `2026-11-24T${String(hour).padStart(2, "0")}:00:00Z`;
      for (const entity of ENTITIES) await expectFeedMatchesSimulator(stand, entity, hourUtc);
    }
    expect(await stand.watermark()).toBe("2026-11-24T15:00:00Z");
  });

  it("denied no request: nothing a function uses is missing from its role", () => {
    // S3's own question whether a caller may learn that a key is missing is not a request: its 403 is read
    // as "missing" by listing the key, which is a request, and counted.
    const denied = records.filter(
      (record) => LAMBDA_ROLES.includes(record.principal) && !record.allowed && !record.disclosure,
    );
    expect(denied.map((record) => `${record.principal}: ${record.action} ${record.resource}`)).toEqual([]);
  });

  it("granted nothing unused: every statement, and every action it lists, allowed some request", () => {
    const functions = templateFunctions(template, deployedSettings({ ...stand.env, KMS_KEY_ARN }));
    const unused: string[] = [];
    let statements = 0;
    for (const key of LAMBDA_ROLES) {
      const fn = functions[key];
      if (!fn) throw new Error(`the template deploys no ${key} function`);
      // The AWS-managed logging policy serves CloudWatch Logs, which runs no stand-in here.
      for (const policy of fn.policies.filter((p) => !p.name.startsWith("arn:aws:iam::aws:policy/"))) {
        const list = [policy.document.Statement].flat();
        list.forEach((statement, i) => {
          statements++;
          const id = `${policy.name}#${i + 1}`;
          for (const action of [statement.Action ?? []].flat()) {
            const used = records.some(
              (r) => r.principal === key && r.allowed && r.action === action && r.allowedBy.includes(id),
            );
            if (!used) unused.push(`${fn.role} ${id} ${action}`);
          }
        });
      }
    }
    expect(unused).toEqual([]);
    expect(statements).toBeGreaterThanOrEqual(10);
  });
});

describe("the SecOps feed reader policy the template emits", () => {
  const reader = { accessKeyId: "AKIASECOPSFEEDREADER", secretAccessKey: "secops" };
  beforeAll(() => {
    const policy = templateManagedPolicy(
      template,
      deployedSettings({ ...stand.env, KMS_KEY_ARN }),
      "SecOpsFeedReaderPolicy",
    );
    registerPrincipal(reader.accessKeyId, {
      arn: "arn:aws:iam::123456789012:user/secops-feed",
      label: "secops-reader",
      policies: [policy],
    });
  });

  it("lists and reads (decrypting) every published object under the feed prefix", async () => {
    const client = stand.s3.client(reader);
    const published = (await stand.keys(`${FEED_PREFIX}/`)).filter((key) => key !== SEED_KEY);
    const listed: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${FEED_PREFIX}/`, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) listed.push(object.Key ?? "");
      token = page.NextContinuationToken;
    } while (token);
    expect(listed.filter((key) => key !== SEED_KEY)).toEqual(published);
    // Seven hours of three entities, each in one part or more (an invocation that hands over starts a new one).
    expect(published.length).toBeGreaterThanOrEqual(21);
    for (const key of published) await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  });

  it("sees nothing of the control prefix, and writes nothing", async () => {
    const client = stand.s3.client(reader);
    const attempts = [
      client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${CONTROL}/` })),
      client.send(new ListObjectsV2Command({ Bucket: BUCKET })),
      client.send(new GetObjectCommand({ Bucket: BUCKET, Key: STATE_KEY })),
      client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${FEED_PREFIX}/x.ndjson`, Body: "x" })),
    ];
    for (const attempt of attempts) {
      const error = await attempt.then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(S3ServiceException);
      expect((error as S3ServiceException).name).toBe("AccessDenied");
    }
  });
});
