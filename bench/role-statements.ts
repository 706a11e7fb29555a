/**
 * `npm run check:roles`: least privilege, the slow way. For every statement of the three Lambda roles in the
 * packaged template (with KMS and the Citrix secret on, so their policies are there), runs the least-privilege
 * test file (test/integration/aws/least-privilege.test.ts) with that one statement removed, and prints whether
 * some test failed. Every statement should be needed: a statement whose removal fails no test is a grant nothing
 * uses, or a path the tests do not walk. About 20 s a statement.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { readTemplate, twinPackageDirectory } from "../local/deployed-roles";

const ROOT = path.join(__dirname, "..");
const VITEST = path.join(ROOT, "node_modules", ".bin", "vitest");
const ROLES = ["PlanRole", "CollectRole", "CommitRole"];

interface Policy {
  PolicyName: string;
  PolicyDocument: { Statement: unknown[] };
}

/** Each role's inline policies, the true branch of an Fn::If included (the condition holds in the test). */
function policiesOf(role: string): Policy[] {
  const policies = (readTemplate(twinPackageDirectory()).Resources[role]?.Properties?.Policies ??
    []) as unknown[];
  return policies.flatMap((entry) => {
    const chosen = (entry as { "Fn::If"?: unknown[] })["Fn::If"]?.[1] ?? entry;
    return (chosen as Partial<Policy>).PolicyDocument ? [chosen as Policy] : [];
  });
}

const statements = ROLES.flatMap((role) =>
  policiesOf(role)
    // X-Ray's policy is there only with TRACING=true, which the least-privilege test does not deploy.
    .filter((policy) => policy.PolicyName !== "xray-write")
    .flatMap((policy) =>
      policy.PolicyDocument.Statement.map((_, i) => `${role}/${policy.PolicyName}#${i + 1}`),
    ),
);

let caught = 0;
for (const statement of statements) {
  const started = Date.now();
  const run = spawnSync(VITEST, ["run", "test/integration/aws/least-privilege.test.ts"], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, LEAST_PRIVILEGE_WITHOUT: statement },
  });
  const failed = run.status !== 0;
  if (failed) caught++;
  const failures = [...(run.stdout ?? "").matchAll(/(\d+) failed/g)].map((match) => match[1]).pop() ?? "0";
  process.stdout.write(
    `${failed ? "caught " : "MISSED "} ${statement.padEnd(48)} ${failures} test(s) failed, ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
  );
}
process.stdout.write(`${caught} of ${statements.length} statements: removing each failed some test\n`);
process.exitCode = caught === statements.length ? 0 : 1;
