import { describe, expect, it } from "vitest";
import {
  collectedResultKey,
  feedPartKey,
  firstHourKey,
  leaseKey,
  legacyManifestKey,
  manifestKey,
  pageWindowHintKey,
  publishedMarkerKey,
  runFinishedKey,
  stagingPartKey,
} from "../../../functions/lib/feed/keys";
import {
  deployedSettings,
  readTemplate,
  templateFunctions,
  twinPackageDirectory,
} from "../../../local/deployed-roles";
import { type Principal, s3ObjectClass, simulateAccess } from "../../../stand-ins/access-control";

// The stand-ins decide once for all S3 objects the policies cannot tell apart (s3ObjectClass). That is only
// faithful if objects of one class get the same decision from the simulator itself: checked here, without the
// cache, for every Lambda role of the packaged template over keys of every kind the functions touch and keys
// beside them.

const BUCKET = "collector-access";
const KMS_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0";
const CONTROL = "_citrix_collector/citrix_analytics";
const HOURS = ["2026-11-24T08:00:00Z", "2026-11-25T23:00:00Z"];
const RUNS = ["run-a", "run-b"];
const ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"];

function keys(): string[] {
  const perHour = HOURS.flatMap((hour) => [
    feedPartKey("citrix_analytics", "sessions", hour, 0, true),
    feedPartKey("citrix_analytics", "machines", hour, 12, false),
    manifestKey(CONTROL, hour, "sessions"),
    manifestKey(CONTROL, hour, "users", 2),
    legacyManifestKey(CONTROL, hour),
    publishedMarkerKey(CONTROL, hour, "sessions"),
    ...RUNS.flatMap((run) => [
      stagingPartKey(CONTROL, run, "sessions", hour, "a1b2", 0, true),
      stagingPartKey(CONTROL, run, "users", hour, "c3d4", 3, false),
      collectedResultKey(CONTROL, run, "sessions", hour),
    ]),
  ]);
  return [
    ...perHour,
    ...RUNS.flatMap((run) => [
      leaseKey(CONTROL, run),
      runFinishedKey(CONTROL, run, 0),
      runFinishedKey(CONTROL, run, 7),
    ]),
    `${CONTROL}/state.json`,
    "citrix_analytics/state.json",
    pageWindowHintKey(CONTROL),
    firstHourKey(CONTROL),
    // Beside what the functions own: another prefix, a sibling with the same start, the bucket's top.
    "citrix_analytics_other/sessions/part-00000.ndjson",
    "_citrix_collector/other/state.json",
    `${CONTROL}x/staging/run-a/x.json`,
    "state.json",
  ];
}

function rolePrincipals(): Principal[] {
  const template = readTemplate(twinPackageDirectory());
  const functions = templateFunctions(template, deployedSettings({ S3_BUCKET: BUCKET, KMS_KEY_ARN }));
  return Object.values(functions).map((fn) => ({
    arn: `arn:aws:sts::123456789012:assumed-role/${fn.role}/x`,
    label: fn.key,
    policies: fn.policies,
  }));
}

describe("s3ObjectClass", () => {
  it("puts S3 objects in one class only when the IAM simulator decides them alike, for every Lambda role", async () => {
    const principals = rolePrincipals();
    expect(principals.map((principal) => principal.label).sort()).toEqual(["collect", "commit", "plan"]);
    let shared = 0;
    for (const principal of principals) {
      for (const action of ACTIONS) {
        const byClass = new Map<string, { key: string; decision: string }>();
        for (const key of keys()) {
          const resource = `arn:aws:s3:::${BUCKET}/${key}`;
          const objectClass = s3ObjectClass(principal, resource);
          expect(objectClass, `${principal.label} ${key}`).toBeDefined();
          const { overallResult, allowedBy } = await simulateAccess(principal, { action, resource });
          const decision = JSON.stringify([overallResult, allowedBy]);
          const first = byClass.get(objectClass as string);
          if (first) {
            shared++;
            expect(decision, `${principal.label} ${action}: ${key} decided unlike ${first.key}`).toBe(
              first.decision,
            );
          } else byClass.set(objectClass as string, { key, decision });
        }
      }
    }
    // The cache is worth having: most objects share a class with another.
    expect(shared).toBeGreaterThan(principals.length * ACTIONS.length * (keys().length / 2));
  });

  it("tells apart objects that one policy pattern matches and another does not", () => {
    const principal: Principal = {
      arn: "arn:aws:sts::123456789012:assumed-role/R/x",
      label: "r",
      policies: [
        {
          name: "p",
          document: {
            Statement: [
              { Effect: "Allow", Action: "s3:GetObject", Resource: `arn:aws:s3:::${BUCKET}/a/*` },
              { Effect: "Deny", Action: "s3:GetObject", Resource: `arn:aws:s3:::${BUCKET}/a/secret?.json` },
              { Effect: "Allow", Action: "kms:Decrypt", Resource: KMS_KEY_ARN },
            ],
          },
        },
      ],
    };
    const of = (key: string) => s3ObjectClass(principal, `arn:aws:s3:::${BUCKET}/${key}`);
    expect(of("a/x/y.json")).toBe(of("a/z.json"));
    expect(of("a/secret1.json")).not.toBe(of("a/z.json"));
    expect(of("a/secret12.json")).toBe(of("a/z.json"));
    expect(of("b/z.json")).not.toBe(of("a/z.json"));
    expect(s3ObjectClass(principal, `arn:aws:s3:::other/a/z.json`)).not.toBe(of("a/z.json"));
  });

  it("leaves buckets, other services, keys with wildcard characters and unusual patterns to the exact ARN", () => {
    const withResource = (resource: string): Principal => ({
      arn: "arn:aws:sts::123456789012:assumed-role/R/x",
      label: "r",
      policies: [
        { name: "p", document: { Statement: { Effect: "Allow", Action: "s3:*", Resource: resource } } },
      ],
    });
    const plain = withResource(`arn:aws:s3:::${BUCKET}/*`);
    expect(s3ObjectClass(plain, `arn:aws:s3:::${BUCKET}/a.json`)).toBeDefined();
    expect(s3ObjectClass(plain, `arn:aws:s3:::${BUCKET}`)).toBeUndefined();
    expect(s3ObjectClass(plain, KMS_KEY_ARN)).toBeUndefined();
    for (const key of ["a:b.json", "a*.json", "a?.json"])
      expect(s3ObjectClass(plain, `arn:aws:s3:::${BUCKET}/${key}`)).toBeUndefined();
    for (const pattern of [
      // A policy variable.
      `arn:aws:s3:::$${"{"}aws:username}/*`,
      "arn:*:s3:::bucket/*",
      "arn:aws:s3:*:*:bucket/*",
      "arn:aws:*:::bucket/*",
    ])
      expect(s3ObjectClass(withResource(pattern), `arn:aws:s3:::${BUCKET}/a.json`), pattern).toBeUndefined();
    expect(s3ObjectClass(withResource("*"), `arn:aws:s3:::${BUCKET}/a.json`)).toBeDefined();
    expect(
      s3ObjectClass(
        withResource("arn:aws:states:us-east-1:1:execution:m:*"),
        `arn:aws:s3:::${BUCKET}/a.json`,
      ),
    ).toBeDefined();
  });
});
