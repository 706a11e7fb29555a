// Who may do what on the stand-ins: the local twin of IAM (and of KMS key use through S3). Whoever runs the
// functions locally registers, under an access key id, the principal their requests come from: its ARN and its
// identity policies (local/deployed-roles.ts registers each Lambda role of the packaged template). A request
// signed with a registered key is allowed only if those policies allow every action S3, Secrets Manager or Step
// Functions would check for it, as evaluated by an IAM policy simulator (@cloud-copilot/iam-simulate). A request
// signed with any other key is the account's administrator (a test setting up or reading the bucket).
//
// Registrations are files as well as entries in memory, so a stand-in in another process (the benchmark runs
// its S3 server in one) knows the principals too; a key id names its policies' digest, so a file never changes.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Simulation } from "@cloud-copilot/iam-simulate";

/** One action on one resource, with the condition keys the service sets for that request. */
export interface AccessCheck {
  /** e.g. "s3:GetObject", "kms:GenerateDataKey". */
  action: string;
  /** The resource's ARN. */
  resource: string;
  /** Condition keys and their values for this request (e.g. s3:prefix, kms:ViaService). */
  context?: Record<string, string>;
  /** The resource's own policy, where the service has one that decides too (a KMS key policy). */
  resourcePolicy?: unknown;
  /**
   * Not a request of the caller's, but the service asking itself whether to disclose something (S3: may the
   * caller learn that a key is missing, a 404, or does it get a 403).
   */
  disclosure?: boolean;
}

/** An identity policy: its name and its document. */
export interface IdentityPolicy {
  name: string;
  document: { Version?: string; Statement: PolicyStatement[] | PolicyStatement };
}

export interface PolicyStatement {
  Sid?: string;
  Effect: string;
  Action?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: unknown;
}

/** A principal the stand-ins answer for: an assumed role. */
export interface Principal {
  /** As AWS names it in an AccessDenied message: arn:aws:sts::123456789012:assumed-role/Role/session. */
  arn: string;
  /** Who it is in the project's terms (a function's key), for the records of its requests. */
  label: string;
  policies: IdentityPolicy[];
}

/** One request evaluated for a registered principal, and which statements allowed it. */
export interface AccessRecord {
  principal: string;
  action: string;
  resource: string;
  allowed: boolean;
  /** "<policy name>#<statement index>" (index from 1, in the order of the policy's Statement list) of each allowing statement. */
  allowedBy: string[];
  /** See AccessCheck.disclosure. */
  disclosure: boolean;
}

/** Where registrations are kept for other processes: beside the project's local twin package. */
const PRINCIPALS_DIRECTORY = path.join(__dirname, "..", ".local-twin", "principals");

const principals = new Map<string, Principal>();
const listeners = new Set<(record: AccessRecord) => void>();

/** Requests signed with this access key id come from `principal` from now on, in this process and others. */
export function registerPrincipal(accessKeyId: string, principal: Principal): void {
  if (principals.has(accessKeyId)) return;
  principals.set(accessKeyId, principal);
  mkdirSync(PRINCIPALS_DIRECTORY, { recursive: true });
  const file = path.join(PRINCIPALS_DIRECTORY, `${accessKeyId}.json`);
  const temporary = `${file}.${process.pid}`;
  writeFileSync(temporary, JSON.stringify(principal));
  renameSync(temporary, file);
}

function principalOf(accessKeyId: string | undefined): Principal | undefined {
  if (accessKeyId === undefined || !/^[A-Z0-9]{16,128}$/.test(accessKeyId)) return undefined;
  const known = principals.get(accessKeyId);
  if (known) return known;
  try {
    const stored = JSON.parse(
      readFileSync(path.join(PRINCIPALS_DIRECTORY, `${accessKeyId}.json`), "utf8"),
    ) as Principal;
    principals.set(accessKeyId, stored);
    return stored;
  } catch {
    return undefined;
  }
}

/** Hears every decision made for a registered principal in this process (the least-privilege test listens). */
export function onAccess(listener: (record: AccessRecord) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Whether a request signed with this key is evaluated (a registered principal's) rather than an admin's. */
export function isRegistered(accessKeyId: string | undefined): boolean {
  return principalOf(accessKeyId) !== undefined;
}

/**
 * Whether the request signed with `accessKeyId` may do every check, in order; the first denial is returned
 * with the message AWS gives for it. Unregistered keys (an administrator) may do anything.
 */
export async function authorize(
  accessKeyId: string | undefined,
  checks: readonly AccessCheck[],
): Promise<{ allowed: true } | { allowed: false; message: string }> {
  const principal = principalOf(accessKeyId);
  if (!principal) return { allowed: true };
  for (const check of checks) {
    const decision = await evaluate(principal, check);
    if (decision !== "Allowed") {
      const why =
        decision === "ExplicitlyDenied"
          ? "with an explicit deny in an identity-based policy"
          : `because no identity-based policy allows the ${check.action} action`;
      return {
        allowed: false,
        message: `User: ${principal.arn} is not authorized to perform: ${check.action} on resource: ${check.resource} ${why}`,
      };
    }
  }
  return { allowed: true };
}

/** What the simulator decided for one principal's request, and which statements allowed it. */
export interface Decision {
  overallResult: string;
  allowedBy: string[];
}

/**
 * Decisions already made, per principal (whose policies a key id fixes): the simulator's matching of resource
 * types is most of what a local collection costs in CPU. Requests repeat (the state file, the page window's
 * hint, listings of one prefix), and S3 objects that the policies cannot tell apart share one decision (see
 * s3ObjectClass). Bounded: a principal's cache is emptied when it reaches DECISIONS_KEPT.
 */
const decisions = new WeakMap<Principal, Map<string, Decision>>();
const DECISIONS_KEPT = 10_000;

async function evaluate(principal: Principal, check: AccessCheck): Promise<string> {
  const known = decisions.get(principal) ?? new Map<string, Decision>();
  decisions.set(principal, known);
  const key = JSON.stringify([
    check.action,
    s3ObjectClass(principal, check.resource) ?? check.resource,
    check.context ?? {},
    check.resourcePolicy ?? null,
  ]);
  let decision = known.get(key);
  if (!decision) {
    decision = await simulateAccess(principal, check);
    if (known.size >= DECISIONS_KEPT) known.clear();
    known.set(key, decision);
  }
  const record: AccessRecord = {
    principal: principal.label,
    action: check.action,
    resource: check.resource,
    allowed: decision.overallResult === "Allowed",
    allowedBy: decision.allowedBy,
    disclosure: check.disclosure === true,
  };
  for (const listener of listeners) listener(record);
  return decision.overallResult;
}

/**
 * What of an S3 object's ARN the principal's policies can see: its bucket, and which of their Resource and
 * NotResource patterns match it. The simulator looks at the object's key only through those patterns (its
 * resource type is an object's whatever the key), so objects alike in both get the same decision: a
 * catch-up's Commit names hundreds of keys, each once, and would otherwise simulate each. Undefined, to decide
 * on the exact ARN, for any other resource, a key with characters a pattern treats apart (`:`, `*`, `?`), or
 * policies with a pattern this whole-ARN matching could read differently from the simulator (see
 * plainPatterns).
 */
export function s3ObjectClass(principal: Principal, resource: string): string | undefined {
  const object = /^arn:aws:s3:::([^/:*?]+)\/[^:*?]*$/.exec(resource);
  const patterns = object && patternsOf(principal);
  if (!object || !patterns) return undefined;
  return `arn:aws:s3:::${object[1]}/ matching ${patterns.map((pattern) => (pattern.test(resource) ? 1 : 0)).join("")}`;
}

const patternsByPrincipal = new WeakMap<Principal, RegExp[] | null>();

function patternsOf(principal: Principal): RegExp[] | null {
  let patterns = patternsByPrincipal.get(principal);
  if (patterns === undefined) {
    patterns = plainPatterns(principal);
    patternsByPrincipal.set(principal, patterns);
  }
  return patterns;
}

/**
 * Every Resource and NotResource pattern of the principal's policies as a whole-ARN glob, if each reads the
 * same that way as segment by segment: `*`, one without wildcards, or one whose wildcards come after a
 * literal `arn:aws:<service>:` (and, for S3, after `arn:aws:s3:::`, where the rest is one segment). Null when
 * one does not, or holds a policy variable.
 */
function plainPatterns(principal: Principal): RegExp[] | null {
  const patterns = principal.policies.flatMap(({ document }) =>
    [document.Statement]
      .flat()
      .flatMap((statement) => [statement.Resource, statement.NotResource].flat())
      .filter((pattern): pattern is string => pattern !== undefined),
  );
  const plain = (pattern: string) =>
    !pattern.includes("${") &&
    (pattern === "*" ||
      !/[*?]/.test(pattern) ||
      (/^arn:aws:[a-z0-9-]+:/.test(pattern) &&
        (!pattern.startsWith("arn:aws:s3:") || pattern.startsWith("arn:aws:s3:::"))));
  if (!patterns.every(plain)) return null;
  // IAM's wildcards: `*` any run of characters, `?` any one; the rest literal.
  const wildcards: Record<string, string> = { "*": ".*", "?": "." };
  return patterns.map(
    (pattern) =>
      new RegExp(
        `^${pattern
          .split(/([*?])/)
          .map((piece) => wildcards[piece] ?? escapeRegExp(piece))
          .join("")}$`,
      ),
  );
}

/** `text` as a regular expression that matches it literally. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** One decision of the IAM policy simulator, with no cache. */
export async function simulateAccess(principal: Principal, check: AccessCheck): Promise<Decision> {
  const simulation = {
    identityPolicies: principal.policies.map((policy) => ({ name: policy.name, policy: policy.document })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: check.resourcePolicy,
    request: {
      action: check.action,
      principal: principal.arn,
      resource: { resource: check.resource, accountId: principal.arn.split(":")[4] ?? "" },
      contextVariables: check.context ?? {},
    },
  } as Simulation;
  // Loaded on first use: a process that only registers principals (the benchmark's collector) never loads it.
  const { runSimulation } = await import("@cloud-copilot/iam-simulate");
  const result = await runSimulation(simulation, {});
  if (result.resultType !== "single") {
    const detail = result.resultType === "error" ? JSON.stringify(result.errors) : result.resultType;
    throw new Error(`the IAM simulator could not evaluate ${check.action} on ${check.resource}: ${detail}`);
  }
  const statements = result.result.analysis?.identityAnalysis?.allowStatements ?? [];
  return {
    overallResult: result.overallResult,
    allowedBy: statements.map((s) => `${s.policyId}#${s.statement.index()}`),
  };
}

/** The access key id of a SigV4-signed request (Authorization header or presigned query). */
export function accessKeyIdOf(
  authorization: string | undefined,
  credentialQuery?: string | undefined,
): string | undefined {
  const fromHeader = authorization?.startsWith("AWS4-")
    ? /Credential=([^/,\s]+)\//.exec(authorization)?.[1]
    : undefined;
  return fromHeader ?? credentialQuery?.split("/")[0];
}
