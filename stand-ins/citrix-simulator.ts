// A Citrix Cloud stand-in (token endpoint + Analytics OData) for tests and local runs.
// Records are a pure function of (seed, entity, hourUtc, index) so a million-record hour costs no memory
// and tests can recompute exactly what the API served.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * skip: `$top`/`$skip`, no links. nextLink: also `@odata.nextLink` (`$skiptoken`) while records remain.
 * skipToken: only its own opaque `$skiptoken` links; `$skip` is ignored (page one again), so an hour that
 * fits in one page has no link and `$skip=N` returns that page again, as many OData services do.
 */
export type PagingMode = "skip" | "nextLink" | "skipToken";
export type EntityName = string;

export interface SimulatorOptions {
  port?: number;
  customerId?: string;
  clientId?: string;
  clientSecret?: string;
  volume?: Record<string, number> | ((entity: string, hourUtc: string) => number);
  /** Time to answer each data page, building it included (as a client sees a real API). */
  pageLatencyMs?: number;
  paging?: PagingMode;
  maxPageSize?: number;
  tokenTtlSeconds?: number;
  /** base64 issues tokens with characters that URL encoding changes ("="), as opaque tokens may have. */
  tokenEncoding?: "base64url" | "base64";
  /**
   * Error answers quote the request they refuse, as a gateway or OAuth server in debug mode does: the token
   * endpoint's the form fields (client_secret included), the data API's the Authorization header (the token),
   * each form-encoded, encodeURIComponent-encoded and JSON-escaped.
   */
  echoRequests?: boolean;
  seed?: string;
  /**
   * Pads every `$skiptoken` the server hands out to at least this many characters (real ones can be long);
   * the server accepts requests that long back.
   */
  skipTokenLength?: number;
  /**
   * A per-customer rate limit as Citrix documents one for its Monitor OData API: a data request that arrives
   * while `requests` are being served gets HTTP 429 (with Retry-After when `retryAfterSeconds` is set).
   */
  concurrencyLimit?: ConcurrencyLimit;
}

export interface ConcurrencyLimit {
  requests: number;
  retryAfterSeconds?: number;
}

export type Fault = (
  | { kind: "status"; status: number; times: number; retryAfter?: string; entity?: string }
  | { kind: "expireTokens" }
  | { kind: "malformedJson"; times: number; entity?: string }
  | { kind: "wrongEnvelope"; times: number; entity?: string }
  | { kind: "dropConnection"; times: number; entity?: string }
  | { kind: "slow"; delayMs: number; times: number; entity?: string }
  | { kind: "tokenStatus"; status: number; times: number }
  /** Answers as if `$skip` (or `$skiptoken`) were 0: page one again. */
  | { kind: "ignoreSkip"; times: number; entity?: string }
  /** The page's `@odata.nextLink` is the URL the request was sent to. */
  | { kind: "selfLink"; times: number; entity?: string }
  /** The first `pages` pages link in a ring: page k links to page (k + 1) mod `pages`, by `$skiptoken`. */
  | { kind: "linkCycle"; pages: number; times: number; entity?: string }
) & {
  /** Lets this many requests it would match through first (counted from injection), e.g. to fault mid-paging. */
  after?: number;
  /** Matches only data requests for this offset (`$skip` or `$skiptoken`), e.g. to fault one page of several in flight. */
  skip?: number;
};

export interface RequestLogEntry {
  at: number;
  method: string;
  /** Path and query string, as the client sent them. */
  path: string;
  entity?: string;
  hourUtc?: string;
  top?: number;
  skip?: number;
  status: number;
  records: number;
  fault?: string;
  /** The client closed the connection before the answer was sent (a request it dropped). */
  aborted?: boolean;
}

export interface CitrixSimulator {
  readonly url: string;
  readonly apiBase: string;
  readonly tokenUrl: string;
  readonly customerId: string;
  readonly clientId: string;
  readonly clientSecret: string;
  inject(fault: Fault): void;
  clearFaults(): void;
  setOptions(
    patch: Partial<Pick<SimulatorOptions, "pageLatencyMs" | "paging" | "volume" | "concurrencyLimit">>,
  ): void;
  /** The most data requests served at once so far (see concurrencyLimit). */
  readonly peakConcurrentRequests: number;
  /** Data requests served at once, averaged over the time from the first data request to the last answer. */
  readonly meanConcurrentRequests: number;
  /** Starts peakConcurrentRequests and meanConcurrentRequests afresh (e.g. for the next execution). */
  resetConcurrency(): void;
  recordCount(entity: string, hourUtc: string): number;
  record(entity: string, hourUtc: string, index: number): Record<string, unknown>;
  records(entity: string, hourUtc: string): Record<string, unknown>[];
  readonly requests: RequestLogEntry[];
  readonly issuedTokens: string[];
  close(): Promise<void>;
}

type DataRecord = Record<string, unknown>;

const DEFAULT_VOLUME: Readonly<Record<string, number>> = { sessions: 2500, machines: 40, users: 300 };
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const HOUR_UTC_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):00:00Z$/;
const ENTITY_RE = /^[A-Za-z][A-Za-z0-9_]*$/;
const ODATA_JSON = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";

// ---------------------------------------------------------------------------------------------------------
// Deterministic generation

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// Avalanche step so neighbouring indexes get unrelated PRNG streams.
function mix32(input: number): number {
  let x = input >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  // mulberry32: tiny, fast and good enough for fake telemetry.
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  float(): number {
    return this.u32() / 4294967296;
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min + 1));
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(items: readonly [T, ...T[]]): T {
    return items[Math.floor(this.float() * items.length)] ?? items[0];
  }
}

interface HourContext {
  entity: string;
  hourUtc: string;
  startMs: number;
  base: number;
  maskLo: number;
  maskHi: number;
}

// Formatting is most of what generating a record costs, so these avoid toString(16), padStart and Date.
const HEX = Array.from({ length: 256 }, (_, n) => n.toString(16).padStart(2, "0"));
const hexByte = (n: number): string => HEX[n & 0xff] ?? "00";
const hex4 = (n: number): string => hexByte(n >>> 8) + hexByte(n);
const hex8 = (n: number): string => hex4(n >>> 16) + hex4(n);
const pad4 = (n: number): string => String(n).padStart(4, "0");
const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));
let isoHour = Number.NaN;
let isoHourPrefix = "";
/** `new Date(ms).toISOString()`, with the "YYYY-MM-DDTHH:" part kept from the previous call's hour. */
function iso(ms: number): string {
  const hour = Math.floor(ms / HOUR_MS);
  if (hour !== isoHour) {
    isoHour = hour;
    isoHourPrefix = new Date(hour * HOUR_MS).toISOString().slice(0, 14);
  }
  const inHour = ms - hour * HOUR_MS;
  const millis = inHour % 1000;
  return `${isoHourPrefix}${pad2(Math.floor(inHour / 60_000))}:${pad2(Math.floor(inHour / 1000) % 60)}.${millis < 10 ? "00" : millis < 100 ? "0" : ""}${millis}Z`;
}

// The last 12 hex digits are a bijection of the index (mix32 is invertible), so GUIDs never collide within
// an entity-hour; fully random GUIDs drawn from a 32-bit PRNG state would, at a million records.
function guid(rng: Rng, ctx: HourContext, index: number): string {
  const a = rng.u32();
  const b = rng.u32();
  const c = rng.u32();
  const lo = mix32((index >>> 0) ^ ctx.maskLo);
  const hi = (Math.floor(index / 4294967296) ^ ctx.maskHi) & 0xffff;
  return `${hex8(a)}-${hex4(b >>> 16)}-${hex4(0x4000 | (b & 0x0fff))}-${hex4(0x8000 | ((c >>> 16) & 0x3fff))}-${hex4(hi)}${hex8(lo)}`;
}

// Every 37th record (offsets 1 and 2) carries text that stresses UTF-8 and JSON escaping, so even a
// 40-record hour contains both kinds.
type Special = "unicode" | "escape" | null;
function specialOf(index: number): Special {
  const r = index % 37;
  return r === 1 ? "unicode" : r === 2 ? "escape" : null;
}

interface Person {
  first: string;
  last: string;
  fullName: string;
  login: string;
}
const UNICODE_PEOPLE: readonly [Person, ...Person[]] = [
  { first: "Zoë", last: "Ångström", fullName: "Zoë Ångström", login: "zoë.ångström" },
  { first: "太郎", last: "山田", fullName: "山田 太郎", login: "山田.太郎" },
  { first: "Søren", last: "Kierkegård", fullName: "Søren Kierkegård", login: "søren.kierkegård" },
  { first: "José", last: "Müller-Łukasz", fullName: "José Müller-Łukasz 🚀", login: "josé.müller" },
  { first: "Ольга", last: "Иванова", fullName: "Ольга Иванова", login: "ольга.иванова" },
];
const ESCAPE_TEXT = 'Patrick "Paddy" O\'Brien \\ Jr.\nIT\tdept';
const FIRST = ["Alice", "Bob", "Carol", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jamal"] as const;
const LAST = ["Smith", "Jones", "Garcia", "Chen", "Patel", "Nguyen", "Kowalski", "Okafor", "Silva"] as const;
const GROUPS = [
  "Finance Desktops",
  "Engineering VDI",
  "Call Center",
  "Published Apps",
  "HR Desktops",
] as const;
const CATALOGS = ["Win11-Pooled", "Win10-Static", "Server2022-MultiSession", "Server2019-Apps"] as const;
const PLATFORMS = ["Windows", "Mac", "Linux", "iOS", "Android", "HTML5", "ChromeOS"] as const;
const OS_TYPES = ["Windows 2022", "Windows 2019", "Windows 10", "Windows 11"] as const;
const FAILURES = [
  "ConnectionTimeout",
  "RegistrationTimeout",
  "NoLicensesAvailable",
  "SessionPreparation",
] as const;
const CATEGORIES = ["alpha", "beta", "gamma", "delta"] as const;

function personFor(rng: Rng, index: number, special: Special): Person {
  const first = rng.pick(FIRST);
  const last = rng.pick(LAST);
  if (special === "unicode") {
    return UNICODE_PEOPLE[Math.floor(index / 37) % UNICODE_PEOPLE.length] ?? UNICODE_PEOPLE[0];
  }
  return { first, last, fullName: `${first} ${last}`, login: `${first}.${last}`.toLowerCase() };
}

function genSession(rng: Rng, ctx: HourContext, index: number): DataRecord {
  const special = specialOf(index);
  const person = personFor(rng, index, special);
  const startOffset = rng.int(0, HOUR_MS - 1);
  const start = ctx.startMs + startOffset;
  const end = start + rng.int(0, HOUR_MS - 1 - startOffset);
  const failed = rng.chance(0.04);
  const group = rng.pick(GROUPS);
  return {
    SessionKey: guid(rng, ctx, index),
    UserName: `CORP\\${person.login}`,
    UserPrincipalName: `${person.login}@corp.example.com`,
    MachineName: `CORP\\VDA-${pad4(rng.int(1, 400))}`,
    DesktopGroupName: special === "unicode" ? "Vertrieb – Büro München 🚀" : group,
    StartDate: iso(start),
    EndDate: iso(end),
    LogOnDuration: rng.int(3_000, 90_000),
    ConnectionState: failed ? 3 : rng.pick([1, 2, 3, 5] as const),
    ClientAddress: `192.168.${rng.int(0, 255)}.${rng.int(1, 254)}`,
    ClientName: special === "escape" ? 'LT-"Lab"\\Desk\n2nd floor' : `LT-${hex4(rng.u32()).toUpperCase()}`,
    ClientPlatform: rng.pick(PLATFORMS),
    Protocol: rng.chance(0.95) ? "HDX" : "RDP",
    SessionType: rng.chance(0.7) ? 0 : 1,
    FailureReason: failed ? rng.pick(FAILURES) : null,
    ModifiedDate: iso(end),
  };
}

function genMachine(rng: Rng, ctx: HourContext, index: number): DataRecord {
  const special = specialOf(index);
  const host = `VDA-${pad4(index + 1)}`;
  const registered = rng.chance(0.9);
  const catalog = rng.pick(CATALOGS);
  return {
    Id: guid(rng, ctx, index),
    Name: `CORP\\${host}`,
    DnsName: `${host.toLowerCase()}.corp.example.com`,
    IPAddress: `10.${(index >>> 16) & 255}.${(index >>> 8) & 255}.${index & 255}`,
    OSType: rng.pick(OS_TYPES),
    CatalogName:
      special === "unicode"
        ? "Catalogue Comptabilité – Zürich"
        : special === "escape"
          ? 'Catalog "Legacy"\\Win7\nretired'
          : catalog,
    DesktopGroupName: rng.pick(GROUPS),
    RegistrationState: registered ? 1 : rng.pick([0, 2] as const),
    FaultState: registered ? 0 : rng.pick([1, 2, 3, 4] as const),
    IsInMaintenanceMode: rng.chance(0.05),
    LastDeregisteredCode: registered ? null : rng.int(0, 12),
    CurrentLoadIndex: rng.int(0, 10_000),
    ModifiedDate: iso(ctx.startMs + rng.int(0, HOUR_MS - 1)),
  };
}

function genUser(rng: Rng, ctx: HourContext, index: number): DataRecord {
  const special = specialOf(index);
  const person = personFor(rng, index, special);
  const userName = `${person.login}${index}`;
  return {
    // Unique across hours while an hour holds fewer than 10 million users.
    Id: Math.floor(ctx.startMs / HOUR_MS) * 10_000_000 + index,
    Sid: `S-1-5-21-${ctx.base}-${ctx.maskLo}-${ctx.maskHi}-${1000 + index}`,
    UserName: userName,
    Upn: `${userName}@corp.example.com`,
    FullName: special === "escape" ? ESCAPE_TEXT : person.fullName,
    Domain: "CORP",
    CreatedDate: iso(ctx.startMs - rng.int(1, 900) * DAY_MS - rng.int(0, DAY_MS - 1)),
    ModifiedDate: iso(ctx.startMs + rng.int(0, HOUR_MS - 1)),
  };
}

function genGeneric(rng: Rng, ctx: HourContext, index: number): DataRecord {
  const special = specialOf(index);
  return {
    Id: guid(rng, ctx, index),
    Name: `${ctx.entity}-${index}`,
    Sequence: index,
    Category: rng.pick(CATEGORIES),
    Value: Math.round(rng.float() * 1_000_000) / 100,
    Enabled: rng.chance(0.5),
    Note: special === "unicode" ? "Zoë Ångström · 山田 太郎" : special === "escape" ? ESCAPE_TEXT : null,
    ModifiedDate: iso(ctx.startMs + rng.int(0, HOUR_MS - 1)),
  };
}

type Generator = (rng: Rng, ctx: HourContext, index: number) => DataRecord;
const GENERATORS: ReadonlyMap<string, Generator> = new Map([
  ["sessions", genSession],
  ["machines", genMachine],
  ["users", genUser],
]);

function hourStartMs(hourUtc: string): number {
  const m = HOUR_UTC_RE.exec(hourUtc);
  if (m) {
    const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]));
    // Round-tripping rejects Feb 30, hour 24 and two-digit years that Date.UTC would quietly shift.
    if (Number.isFinite(ms) && iso(ms) === `${hourUtc.slice(0, 19)}.000Z`) return ms;
  }
  throw new RangeError(`hourUtc must look like 2026-11-24T08:00:00Z, got ${JSON.stringify(hourUtc)}`);
}

// ---------------------------------------------------------------------------------------------------------
// HTTP server

interface TokenInfo {
  expiresAt: number;
}

interface QueuedFault {
  fault: Fault;
  remaining: number;
  fired: number;
  /** Matching requests still to let through before it fires. */
  waiting: number;
}

interface PageQuery {
  hourUtc: string;
  parts: { year: string; month: string; day: string; hour: string };
  top: number | undefined;
  skip: number;
  /** The offset came from a `$skiptoken` (a link the server handed out), not from `$skip`. */
  bySkipToken: boolean;
}

class BadRequest extends Error {}

function faultLabel(fault: Fault): string {
  return fault.kind === "status" || fault.kind === "tokenStatus"
    ? `${fault.kind}:${fault.status}`
    : fault.kind;
}

function validateFault(fault: Fault): number {
  const times = fault.kind === "expireTokens" ? 1 : fault.times;
  if (!Number.isInteger(times) || times < 1) throw new RangeError(`fault ${fault.kind}: times must be ≥ 1`);
  if (
    (fault.kind === "status" || fault.kind === "tokenStatus") &&
    !(fault.status >= 400 && fault.status <= 599)
  ) {
    throw new RangeError(`fault ${fault.kind}: status must be 400..599`);
  }
  if (fault.kind === "slow" && !(fault.delayMs >= 0)) throw new RangeError("fault slow: delayMs must be ≥ 0");
  if (fault.kind === "linkCycle" && !(Number.isInteger(fault.pages) && fault.pages >= 2)) {
    throw new RangeError("fault linkCycle: pages must be an integer ≥ 2 (selfLink is a ring of one)");
  }
  if (fault.skip !== undefined && !(Number.isInteger(fault.skip) && fault.skip >= 0)) {
    throw new RangeError(`fault ${fault.kind}: skip must be an integer ≥ 0`);
  }
  if (fault.after !== undefined && !(Number.isInteger(fault.after) && fault.after >= 0)) {
    throw new RangeError(`fault ${fault.kind}: after must be an integer ≥ 0`);
  }
  return times;
}

function parseCount(params: URLSearchParams, name: string): number | undefined {
  const raw = params.get(name);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n))
    throw new BadRequest(`${name} must be a non-negative integer`);
  return n;
}

function parseQuery(params: URLSearchParams): PageQuery {
  const field = (name: string, digits: number, min: number, max: number): string => {
    const raw = params.get(name);
    if (raw === null) throw new BadRequest(`missing required query parameter ${name}`);
    const n = Number(raw);
    if (!new RegExp(`^\\d{1,${digits}}$`).test(raw) || n < min || n > max) {
      throw new BadRequest(`invalid ${name}: ${JSON.stringify(raw)}`);
    }
    return String(n).padStart(digits, "0");
  };
  const parts = {
    year: field("year", 4, 1970, 9999),
    month: field("month", 2, 1, 12),
    day: field("day", 2, 1, 31),
    hour: field("hour", 2, 0, 23),
  };
  const hourUtc = `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:00:00Z`;
  try {
    hourStartMs(hourUtc);
  } catch {
    throw new BadRequest(`no such day: ${parts.year}-${parts.month}-${parts.day}`);
  }
  const top = parseCount(params, "$top");
  let skip = parseCount(params, "$skip");
  const skipToken = params.get("$skiptoken");
  if (skipToken !== null) {
    if (skip !== undefined) throw new BadRequest("$skip and $skiptoken cannot be combined");
    const m = /^sim-skip:(\d+)(?::0*)?$/.exec(Buffer.from(skipToken, "base64url").toString("utf8"));
    if (!m) throw new BadRequest("invalid $skiptoken");
    skip = Number(m[1]);
  }
  return { hourUtc, parts, top, skip: skip ?? 0, bySkipToken: skipToken !== null };
}

/**
 * The JSON of a page, as JSON.stringify of `{"@odata.context", value, "@odata.nextLink"}` would write it,
 * encoded one record at a time: the page as one string would be over half a megabyte, and building and
 * encoding such strings was most of what the simulator cost a benchmark.
 */
function pageBody(
  odataContext: string,
  records: readonly DataRecord[],
  nextLink: string | undefined,
): Buffer {
  let out = Buffer.allocUnsafe(records.length * 700 + 1024);
  let at = 0;
  const write = (text: string): void => {
    // A UTF-16 code unit takes at most 3 bytes in UTF-8.
    if (out.length - at < text.length * 3) {
      const bigger = Buffer.allocUnsafe(2 * out.length + text.length * 3);
      out.copy(bigger, 0, 0, at);
      out = bigger;
    }
    at += out.write(text, at);
  };
  write(`{"@odata.context":${JSON.stringify(odataContext)},"value":[`);
  records.forEach((record, index) => {
    write(index === 0 ? JSON.stringify(record) : `,${JSON.stringify(record)}`);
  });
  write(nextLink === undefined ? "]}" : `],"@odata.nextLink":${JSON.stringify(nextLink)}}`);
  return out.subarray(0, at);
}

export async function startCitrixSimulator(options: SimulatorOptions = {}): Promise<CitrixSimulator> {
  const customerId = options.customerId ?? "sim-customer";
  const clientId = options.clientId ?? "sim-client-id";
  const clientSecret = options.clientSecret ?? "sim-client-secret";
  const seed = options.seed ?? "citrix-sim";
  const maxPageSize = options.maxPageSize ?? 5000;
  const tokenTtlSeconds = options.tokenTtlSeconds ?? 3600;
  const tokenEncoding = options.tokenEncoding ?? "base64url";
  let volume = options.volume ?? DEFAULT_VOLUME;
  let pageLatencyMs = options.pageLatencyMs ?? 0;
  let paging: PagingMode = options.paging ?? "skip";
  let concurrencyLimit = options.concurrencyLimit;
  let servingRequests = 0;
  let peakConcurrentRequests = 0;
  // Time-weighted: requests served × milliseconds, since the first data request.
  let servingArea = 0;
  let servingSinceMs: number | undefined;
  let servingChangedMs = 0;
  const serving = (change: number) => {
    const at = performance.now();
    servingSinceMs ??= at;
    servingArea += servingRequests * (at - servingChangedMs);
    servingChangedMs = at;
    servingRequests += change;
  };

  const tokens = new Map<string, TokenInfo>();
  const issuedTokens: string[] = [];
  const requests: RequestLogEntry[] = [];
  let faults: QueuedFault[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const contexts = new Map<string, HourContext>();

  function context(entity: string, hourUtc: string): HourContext {
    const key = `${entity}\u0000${hourUtc}`;
    let ctx = contexts.get(key);
    if (!ctx) {
      const startMs = hourStartMs(hourUtc);
      const base = fnv1a(`${seed}\u0000${entity}\u0000${hourUtc}`);
      ctx = { entity, hourUtc, startMs, base, maskLo: mix32(base ^ 0x5bd1e995), maskHi: mix32(base + 1) };
      if (contexts.size > 10_000) contexts.clear();
      contexts.set(key, ctx);
    }
    return ctx;
  }

  function recordCount(entity: string, hourUtc: string): number {
    hourStartMs(hourUtc);
    let n: number;
    if (typeof volume === "function") n = volume(entity, hourUtc);
    else if (Object.hasOwn(volume, entity)) n = volume[entity] ?? 0;
    else n = DEFAULT_VOLUME[entity] ?? 0;
    return Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
  }

  /**
   * The entity sets this tenant has, as the API knows its own: the three with realistic records, those the
   * volume names, and every one when a function gives the volume. Any other name is answered 404.
   */
  function hasEntitySet(entity: string): boolean {
    return typeof volume === "function" || GENERATORS.has(entity) || Object.hasOwn(volume, entity);
  }

  function generate(ctx: HourContext, index: number): DataRecord {
    const hi = Math.floor(index / 4294967296);
    const rng = new Rng(mix32(ctx.base ^ mix32((index >>> 0) ^ mix32(hi + 0x9e3779b9))));
    return (GENERATORS.get(ctx.entity) ?? genGeneric)(rng, ctx, index);
  }

  function record(entity: string, hourUtc: string, index: number): DataRecord {
    const count = recordCount(entity, hourUtc);
    if (!Number.isInteger(index) || index < 0 || index >= count) {
      throw new RangeError(`index ${index} outside 0..${count - 1} for ${entity} ${hourUtc}`);
    }
    return generate(context(entity, hourUtc), index);
  }

  // Faults are matched against a request only once it would otherwise have succeeded, so a test that
  // injects N faults sees exactly N faulty answers regardless of client mistakes.
  // A request counts towards the `after` of every fault waiting for it, and gets the first one not waiting.
  function takeFault(match: (f: Fault) => boolean): QueuedFault | undefined {
    let slot: QueuedFault | undefined;
    for (const queued of faults) {
      if (!match(queued.fault)) continue;
      if (queued.waiting > 0) queued.waiting -= 1;
      else slot ??= queued;
    }
    if (!slot) return undefined;
    slot.remaining -= 1;
    slot.fired += 1;
    if (slot.remaining <= 0) faults = faults.filter((q) => q !== slot);
    return slot;
  }

  function later(ms: number, fn: () => void): void {
    if (ms <= 0) {
      fn();
      return;
    }
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  }

  function send(
    res: ServerResponse,
    status: number,
    body: string | Buffer,
    headers: Record<string, string> = {},
    delayMs = 0,
  ): void {
    later(delayMs, () => {
      if (res.destroyed || res.writableEnded) return;
      res.writeHead(status, {
        "content-type": "application/json; charset=utf-8",
        "content-length": String(Buffer.byteLength(body)),
        ...headers,
      });
      res.end(body);
    });
  }

  function odataError(code: string, message: string): string {
    return JSON.stringify({ error: { code, message } });
  }

  /** An error body with the request's fields quoted in every encoding (echoRequests), else as it is. */
  function withEcho(body: string, fields: Record<string, string>): string {
    if (!options.echoRequests) return body;
    const entries = Object.entries(fields);
    return JSON.stringify({
      ...(JSON.parse(body) as object),
      request: {
        form: new URLSearchParams(fields).toString(),
        uri: entries.map(([name, value]) => `${name}=${encodeURIComponent(value)}`).join("&"),
        fields,
      },
    });
  }

  function handleToken(
    req: IncomingMessage,
    res: ServerResponse,
    pathCustomer: string,
    entry: RequestLogEntry,
  ) {
    let form = new URLSearchParams();
    const answer = (status: number, body: object, headers: Record<string, string> = {}): void => {
      entry.status = status;
      requests.push(entry);
      const text = JSON.stringify(body);
      send(res, status, status >= 400 ? withEcho(text, Object.fromEntries(form)) : text, {
        "cache-control": "no-store",
        ...headers,
      });
    };
    if (req.method !== "POST") return answer(405, { error: "invalid_request" }, { allow: "POST" });
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= 65_536) chunks.push(chunk);
    });
    req.on("end", () => {
      if (size > 65_536) return answer(413, { error: "invalid_request" });
      if (pathCustomer !== customerId) return answer(400, { error: "invalid_request" });
      if (!(req.headers["content-type"] ?? "").toLowerCase().includes("application/x-www-form-urlencoded")) {
        return answer(400, { error: "invalid_request" });
      }
      form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
      if (form.get("grant_type") !== "client_credentials")
        return answer(400, { error: "unsupported_grant_type" });
      if (form.get("client_id") !== clientId || form.get("client_secret") !== clientSecret) {
        return answer(401, { error: "invalid_client" });
      }
      const fault = takeFault((f) => f.kind === "tokenStatus")?.fault;
      if (fault?.kind === "tokenStatus") {
        entry.fault = faultLabel(fault);
        const transient = fault.status === 429 || fault.status === 503;
        return answer(fault.status, { error: transient ? "temporarily_unavailable" : "server_error" });
      }
      // 25 bytes: base64 ends in "==".
      const token = randomBytes(25).toString(tokenEncoding);
      tokens.set(token, { expiresAt: Date.now() + tokenTtlSeconds * 1000 });
      issuedTokens.push(token);
      answer(200, { token_type: "bearer", access_token: token, expires_in: tokenTtlSeconds });
    });
  }

  function handleData(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    entity: string,
    entry: RequestLogEntry,
  ) {
    const fail = (status: number, body: string, headers: Record<string, string> = {}): void => {
      entry.status = status;
      requests.push(entry);
      send(res, status, withEcho(body, { authorization: req.headers.authorization ?? "" }), headers);
    };
    if (req.method !== "GET") return fail(405, odataError("MethodNotAllowed", "only GET"), { allow: "GET" });

    const auth = /^CwsAuth\s+bearer=(\S+)$/i.exec(req.headers.authorization ?? "");
    const challenge = { "www-authenticate": "CwsAuth" };
    if (!auth?.[1]) {
      return fail(
        401,
        odataError("Unauthorized", "expected Authorization: CwsAuth bearer=<token>"),
        challenge,
      );
    }
    const info = tokens.get(auth[1]);
    if (!info) return fail(401, odataError("Unauthorized", "token unknown or revoked"), challenge);
    if (Date.now() >= info.expiresAt)
      return fail(401, odataError("Unauthorized", "token expired"), challenge);
    if (req.headers["citrix-customerid"] !== customerId) {
      return fail(403, odataError("Forbidden", "Citrix-CustomerId missing or not this token's customer"));
    }

    let query: PageQuery;
    try {
      query = parseQuery(url.searchParams);
    } catch (err) {
      if (err instanceof BadRequest) return fail(400, odataError("BadRequest", err.message));
      throw err;
    }
    entry.hourUtc = query.hourUtc;
    entry.top = query.top;
    entry.skip = query.skip;
    if (concurrencyLimit && servingRequests >= concurrencyLimit.requests) {
      entry.fault = `concurrency>${concurrencyLimit.requests}`;
      const { retryAfterSeconds } = concurrencyLimit;
      return fail(
        429,
        odataError(
          "TooManyRequests",
          `at most ${concurrencyLimit.requests} concurrent requests per customer`,
        ),
        retryAfterSeconds === undefined ? {} : { "retry-after": String(retryAfterSeconds) },
      );
    }
    serving(1);
    peakConcurrentRequests = Math.max(peakConcurrentRequests, servingRequests);
    // Served once the answer is handed to the connection (as a rate limiter in front of a handler counts),
    // or the connection is gone: not when the bytes have left, which a client in another process may see
    // first and answer with its next request.
    let served = false;
    const done = () => {
      if (served) return;
      served = true;
      serving(-1);
    };
    const endResponse = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    res.end = ((...args: unknown[]) => {
      done();
      return endResponse(...args);
    }) as typeof res.end;
    res.once("close", done);

    const slot = takeFault((f) => {
      if (f.kind === "tokenStatus") return false;
      if (f.skip !== undefined && f.skip !== query.skip) return false;
      return f.kind === "expireTokens" || f.entity === undefined || f.entity === entity;
    });
    const fault = slot?.fault;
    if (fault) entry.fault = faultLabel(fault);
    if (fault?.kind === "expireTokens") {
      tokens.clear();
      return fail(401, odataError("Unauthorized", "token expired"), challenge);
    }
    if (fault?.kind === "status") {
      const headers: Record<string, string> = fault.retryAfter ? { "retry-after": fault.retryAfter } : {};
      return fail(fault.status, odataError(`Http${fault.status}`, "simulated failure"), headers);
    }

    const startedAt = performance.now();
    const count = recordCount(entity, query.hourUtc);
    const ctx = context(entity, query.hourUtc);
    const pageSize = Math.min(query.top ?? maxPageSize, maxPageSize);
    const ignoresSkip = fault?.kind === "ignoreSkip" || (paging === "skipToken" && !query.bySkipToken);
    const skip = ignoresSkip ? 0 : query.skip;
    const end = Math.min(count, skip + pageSize);
    const value: DataRecord[] = [];
    for (let i = skip; i < end; i++) value.push(generate(ctx, i));
    const odataContext = `${apiBase}/$metadata#${entity}`;
    const linkTo = (offset: number): string => {
      const { year, month, day, hour } = query.parts;
      const plain = `sim-skip:${offset}`;
      // base64url makes 4 characters of every 3 bytes.
      const padding = Math.max(0, Math.ceil(((options.skipTokenLength ?? 0) * 3) / 4) - plain.length - 1);
      const token = Buffer.from(padding > 0 ? `${plain}:${"0".repeat(padding)}` : plain).toString(
        "base64url",
      );
      const top = query.top === undefined ? "" : `&$top=${query.top}`;
      return `${apiBase}/${entity}?year=${year}&month=${month}&day=${day}&hour=${hour}${top}&$skiptoken=${token}`;
    };
    let nextLink: string | undefined;
    if (fault?.kind === "selfLink") nextLink = `${new URL(apiBase).origin}${entry.path}`;
    else if (fault?.kind === "linkCycle")
      nextLink = linkTo(((Math.floor(skip / pageSize) + 1) % fault.pages) * pageSize);
    else if (paging !== "skip" && end < count && value.length > 0) nextLink = linkTo(end);
    const body = pageBody(odataContext, value, nextLink);
    const headers = { "content-type": ODATA_JSON, "odata-version": "4.0" };
    // Page latency is the whole time to answer, as a client sees a real API: building the page counts.
    const delay =
      Math.max(0, pageLatencyMs - (performance.now() - startedAt)) +
      (fault?.kind === "slow" ? fault.delayMs : 0);
    entry.status = 200;
    res.once("close", () => {
      if (!res.writableFinished && fault?.kind !== "dropConnection") entry.aborted = true;
    });
    const garbled =
      fault?.kind === "malformedJson" || fault?.kind === "wrongEnvelope" || fault?.kind === "dropConnection";
    entry.records = garbled ? 0 : value.length;
    requests.push(entry);

    if (fault?.kind === "malformedJson") {
      // A strict prefix of a JSON object never parses: its closing brace is the last byte.
      return send(res, 200, body.subarray(0, Math.max(1, Math.floor(body.length / 2))), headers, delay);
    }
    if (fault?.kind === "wrongEnvelope") {
      const variants = [
        JSON.stringify({ error: { code: "InternalError", message: "simulated wrong envelope" } }),
        JSON.stringify({ "@odata.context": odataContext, value: "x" }),
        JSON.stringify({ "@odata.context": odataContext, Value: value.slice(0, 1) }),
      ] as const;
      return send(
        res,
        200,
        variants[((slot?.fired ?? 1) - 1) % variants.length] ?? variants[0],
        headers,
        delay,
      );
    }
    if (fault?.kind === "dropConnection") {
      return later(delay, () => {
        if (res.destroyed) return;
        res.writeHead(200, { ...headers, "content-length": String(body.length) });
        res.write(body.subarray(0, Math.max(1, Math.floor(body.length / 2))), () => res.socket?.destroy());
      });
    }
    send(res, 200, body, headers, delay);
  }

  const tokenPathRe = /^\/cctrustoauth2\/([^/]+)\/tokens\/clients$/;
  // Node refuses request heads over 16 KiB (431); the simulator takes back every link it hands out, however
  // long skipTokenLength makes it.
  const maxHeaderSize = Math.max(16 * 1024, 2 * (options.skipTokenLength ?? 0) + 16 * 1024);
  const server = createServer({ maxHeaderSize }, (req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const entry: RequestLogEntry = {
      at: Date.now(),
      method: req.method ?? "GET",
      path: `${url.pathname}${url.search}`,
      status: 0,
      records: 0,
    };
    try {
      const tokenMatch = tokenPathRe.exec(url.pathname);
      const dataMatch = /^\/casodata\/([^/]+)$/.exec(url.pathname);
      if (tokenMatch?.[1] !== undefined) {
        let pathCustomer: string;
        try {
          pathCustomer = decodeURIComponent(tokenMatch[1]);
        } catch {
          pathCustomer = "";
        }
        return handleToken(req, res, pathCustomer, entry);
      }
      if (dataMatch?.[1] !== undefined && ENTITY_RE.test(dataMatch[1])) {
        entry.entity = dataMatch[1];
        if (hasEntitySet(dataMatch[1])) return handleData(req, res, url, dataMatch[1], entry);
      }
      entry.status = 404;
      requests.push(entry);
      send(res, 404, odataError("NotFound", `no resource at ${url.pathname}`));
    } catch (err) {
      entry.status = 500;
      if (!requests.includes(entry)) requests.push(entry);
      send(res, 500, odataError("SimulatorError", err instanceof Error ? err.message : String(err)));
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const apiBase = `${url}/casodata`;
  let closing: Promise<void> | undefined;

  return {
    url,
    apiBase,
    tokenUrl: `${url}/cctrustoauth2/${encodeURIComponent(customerId)}/tokens/clients`,
    customerId,
    clientId,
    clientSecret,
    requests,
    issuedTokens,
    inject(fault: Fault): void {
      faults.push({
        fault: { ...fault },
        remaining: validateFault(fault),
        fired: 0,
        waiting: fault.after ?? 0,
      });
    },
    clearFaults(): void {
      faults = [];
    },
    setOptions(patch): void {
      if (patch.pageLatencyMs !== undefined) {
        if (!(patch.pageLatencyMs >= 0)) throw new RangeError("pageLatencyMs must be ≥ 0");
        pageLatencyMs = patch.pageLatencyMs;
      }
      if (patch.paging !== undefined) {
        if (!["skip", "nextLink", "skipToken"].includes(patch.paging))
          throw new RangeError("paging: skip|nextLink|skipToken");
        paging = patch.paging;
      }
      if (patch.volume !== undefined) volume = patch.volume;
      if ("concurrencyLimit" in patch) concurrencyLimit = patch.concurrencyLimit;
    },
    get peakConcurrentRequests() {
      return peakConcurrentRequests;
    },
    get meanConcurrentRequests() {
      const span = servingChangedMs - (servingSinceMs ?? servingChangedMs);
      return span > 0 ? servingArea / span : 0;
    },
    resetConcurrency(): void {
      peakConcurrentRequests = servingRequests;
      servingArea = 0;
      servingSinceMs = undefined;
    },
    recordCount,
    record,
    records(entity: string, hourUtc: string): DataRecord[] {
      const count = recordCount(entity, hourUtc);
      const ctx = context(entity, hourUtc);
      return Array.from({ length: count }, (_, i) => generate(ctx, i));
    },
    close(): Promise<void> {
      if (!closing) {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        closing = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
      }
      return closing;
    },
  };
}
