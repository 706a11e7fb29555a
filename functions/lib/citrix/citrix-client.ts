import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "../aws/log";
import { citrixTokenUrl } from "../config/config";
import {
  CitrixAuthError,
  CitrixResponseError,
  CitrixUnavailableError,
  ConfigurationError,
} from "../config/errors";
import { hourParts } from "../config/hours";
import type { CitrixCredentialsSource } from "./citrix-credentials";
import { ODataPageRejected, type PageRecords, readODataPage } from "./odata-page";

/** The client's clock, transport and backoff; only tests change them (to script failures and skip waits). */
export interface CitrixClientTuning {
  /** Attempts per request before giving up with a retryable error the state machine retries later. */
  maxAttempts?: number;
  /** Upper bound of one backoff pause, before Retry-After is considered. */
  maxBackoffMs?: number;
  fetch?: typeof fetch;
  /** Waits `ms`; may end early with the signal's reason once the signal is aborted. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

export interface CitrixClientOptions extends CitrixClientTuning {
  credentials: CitrixCredentialsSource;
  apiBase: string;
  /** TOKEN_URL; when undefined it is derived from API_BASE and the customer id (citrixTokenUrl). */
  tokenUrl: string | undefined;
  timeoutMs: number;
}

/** Told about each request the client retries, so the collect function can count retries and throttles. */
export interface CitrixRequestObserver {
  retried(status: number | undefined): void;
}

/**
 * What a page request shares with the other requests of its window (see PageWindow): it waits for the
 * window before every attempt, so a Retry-After one request was given holds back all of them, and it
 * reports each push-back.
 */
export interface RequestPacing {
  /** Resolves when the request may be sent; may end early with the signal's reason once it is aborted. */
  ready(signal?: AbortSignal): Promise<void>;
  /**
   * The API pushed back: HTTP 408, 429 or 5xx (`status`), or no answer at all (undefined); `retryAfterMs` is
   * what it asked for. Returns whether the window itself spaces the next attempt (then the request waits
   * only for `ready`, not for a backoff of its own).
   */
  pushedBack(status: number | undefined, retryAfterMs: number | undefined): boolean;
}

export interface PageRequestOptions {
  observer?: CitrixRequestObserver | undefined;
  /** Aborting it ends the request (and any backoff pause) at once with the signal's reason. */
  signal?: AbortSignal | undefined;
  pacing?: RequestPacing | undefined;
}

export interface ODataPage {
  records: PageRecords;
  nextLink: string | undefined;
}

interface CachedToken {
  value: string;
  customerId: string;
  refreshAtMs: number;
}

/** The setting an operator fixes when a URL is wrong. */
type UrlSetting = "API_BASE" | "TOKEN_URL";

const DEFAULT_TOKEN_TTL_SECONDS = 3600;
// Refresh well before expiry so a token never lapses between the check and a slow page.
const TOKEN_REFRESH_MARGIN_MS = 5 * 60_000;
const FIRST_BACKOFF_MS = 500;
const SNIPPET_LENGTH = 200;
/**
 * OpenSSL's verdicts on a server certificate: they come out the same on every attempt (the URL names the
 * wrong host, or something on the way presents its own certificate), so they are not retried.
 */
const UNTRUSTED_CERTIFICATE = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REVOKED",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Throttling, 5xx, a reset connection or a timeout: worth another attempt. Never leaves the client. */
class TransientHttpError extends Error {
  override readonly name = "TransientHttpError";
  /** The HTTP status that asked for the retry, when there was an answer. */
  readonly status: number | undefined;
  constructor(
    message: string,
    readonly retryAfterMs: number | undefined,
    options?: { cause?: unknown; status?: number },
  ) {
    super(message, options);
    this.status = options?.status;
  }
}

/**
 * Talks to the Citrix Cloud OData API: a client-credentials token (one per container, shared by concurrent
 * callers, refreshed before expiry and once on a 401), data pages with timeouts and bounded retries, and
 * strict response checks. Messages carry URLs and redacted snippets, never the client secret or a token.
 */
export class CitrixClient {
  private token: CachedToken | undefined;
  private tokenRequest: Promise<CachedToken> | undefined;
  /**
   * What no message may carry: the client secret and the tokens, once known, in every form a response may
   * quote them in (see secretForms).
   */
  private readonly secrets = new Set<string>();
  private readonly fetch: typeof fetch;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly maxAttempts: number;
  private readonly maxBackoffMs: number;
  private readonly apiOrigin: string;
  private readonly tokenUrlSetting: UrlSetting;

  constructor(private readonly options: CitrixClientOptions) {
    this.fetch = options.fetch ?? globalThis.fetch;
    this.sleep = options.sleep ?? ((ms, signal) => delay(ms, undefined, { signal }));
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.apiOrigin = new URL(options.apiBase).origin;
    this.tokenUrlSetting = options.tokenUrl === undefined ? "API_BASE" : "TOKEN_URL";
  }

  /** The first page URL of an entity-hour, as the SPEC writes it. */
  pageUrl(entity: string, hourUtc: string, top: number, skip: number): string {
    const { year, month, day, hour } = hourParts(hourUtc);
    return `${this.options.apiBase}/${encodeURIComponent(entity)}?year=${year}&month=${month}&day=${day}&hour=${hour}&$top=${top}&$skip=${skip}`;
  }

  /**
   * Waits until `notBeforeMs` (a Retry-After an earlier invocation was given, see CitrixUnavailableError's
   * retryAtMs), but not past `deadlineMs`, after which this invocation sends no request.
   */
  async waitUntil(notBeforeMs: number, deadlineMs: number, log: Logger): Promise<void> {
    const waitMs = Math.min(notBeforeMs, deadlineMs) - this.now();
    if (waitMs <= 0) return;
    log.info("waiting as the Citrix API asked before the hand-over", {
      waitMs,
      notBefore: new Date(notBeforeMs).toISOString(),
    });
    await this.sleep(waitMs);
  }

  /** Waits `ms` on the client's clock; aborting `signal` ends the wait with the signal's reason. */
  pause(ms: number, signal?: AbortSignal): Promise<void> {
    return this.sleep(ms, signal);
  }

  /**
   * Fetches one page. Transient failures are retried until the attempts or `deadlineMs` run out, then
   * surface as CitrixUnavailableError so the state machine's Retry takes over.
   */
  async getPage(
    url: string,
    deadlineMs: number,
    log: Logger,
    { observer, signal, pacing }: PageRequestOptions = {},
  ): Promise<ODataPage> {
    if (new URL(url).origin !== this.apiOrigin) {
      // The bearer token must never be sent to a host other than the configured API.
      throw new CitrixResponseError(
        `the API returned a nextLink to another host: ${url} (API_BASE is ${this.apiOrigin})`,
      );
    }
    let unauthorizedInARow = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        const token = await this.accessToken(deadlineMs, log, observer);
        await pacing?.ready(signal);
        signal?.throwIfAborted();
        const sentMs = this.now();
        const response = await this.pageRequest(url, token, signal);
        if (response.status === 401) {
          await discard(response);
          unauthorizedInARow++;
          // Only drop the token this request used: a concurrent caller may already have a fresh one.
          if (this.token?.value === token.value) this.token = undefined;
          if (unauthorizedInARow >= 2) {
            throw new CitrixAuthError(
              `the API answered HTTP 401 to a freshly issued token (${url}): the API client is not allowed to read Citrix Analytics for this customer; check its access in Citrix Cloud and ${this.options.credentials.origin}`,
            );
          }
          log.warn("token rejected mid-paging, fetching a new one", { url });
          attempt--;
          continue;
        }
        unauthorizedInARow = 0;
        const bytes = await readBody(response);
        log.debug("Citrix API answered", {
          url,
          status: response.status,
          bytes: bytes.byteLength,
          ms: this.now() - sentMs,
          attempt,
        });
        if (response.ok) return parsePage(bytes, url, (text) => this.snippet(text));
        throw this.pageRefused(response.status, url, bytes.toString("utf8"));
      } catch (error) {
        // Dropped by the caller: whatever the abort broke is not the API's failure, so it is not retried.
        signal?.throwIfAborted();
        if (!(error instanceof TransientHttpError)) throw error;
        const pacedByWindow = pacing?.pushedBack(error.status, error.retryAfterMs) ?? false;
        await this.backoff(error, attempt, deadlineMs, url, log, observer, signal, pacedByWindow);
      }
    }
  }

  /** One GET of a page with the token, as the API asks for it: CwsAuth bearer and the customer id. */
  private pageRequest(url: string, token: CachedToken, signal: AbortSignal | undefined): Promise<Response> {
    return this.request(url, "API_BASE", {
      signal,
      method: "GET",
      headers: {
        Authorization: `CwsAuth bearer=${token.value}`,
        "Citrix-CustomerId": token.customerId,
        Accept: "application/json",
      },
    });
  }

  /** The error for a page the API answered with a status no retry changes. */
  private pageRefused(status: number, url: string, body: string): Error {
    if (status === 403) {
      return new CitrixAuthError(
        `the API refused access (HTTP 403 from ${url}: ${this.snippet(body)}): check that the API client may read Citrix Analytics for this customer, and ${this.options.credentials.origin}`,
      );
    }
    if (status === 404) {
      return new ConfigurationError(
        `HTTP 404 from ${url}: ${this.snippet(body)}: there is no OData entity set there; check API_BASE (${this.options.apiBase}) and ENTITIES`,
      );
    }
    return new CitrixResponseError(
      `HTTP ${status} from ${url}: ${this.snippet(body)} (check API_BASE, ENTITIES and the API client's permissions)`,
    );
  }

  private accessToken(
    deadlineMs: number,
    log: Logger,
    observer: CitrixRequestObserver | undefined,
  ): Promise<CachedToken> {
    if (this.token && this.now() < this.token.refreshAtMs) return Promise.resolve(this.token);
    // Callers that need a token at the same time (a page fetched ahead, Map iterations sharing a local
    // runtime) share one request.
    this.tokenRequest ??= this.requestToken(deadlineMs, log, observer).finally(() => {
      this.tokenRequest = undefined;
    });
    return this.tokenRequest;
  }

  private async requestToken(
    deadlineMs: number,
    log: Logger,
    observer: CitrixRequestObserver | undefined,
  ): Promise<CachedToken> {
    const credentials = await this.options.credentials.get(log);
    for (const form of secretForms(credentials.clientSecret)) this.secrets.add(form);
    const setting = this.tokenUrlSetting;
    const tokenUrl = this.options.tokenUrl ?? citrixTokenUrl(this.options.apiBase, credentials.customerId);
    const form = new URLSearchParams({
      grant_type: "client_credentials",
      client_id: credentials.clientId,
      client_secret: credentials.clientSecret,
    });
    for (let attempt = 1; ; attempt++) {
      try {
        const response = await this.request(tokenUrl, setting, {
          method: "POST",
          headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
          body: form.toString(),
        });
        const body = (await readBody(response)).toString("utf8");
        if (response.status === 400 || response.status === 401 || response.status === 403) {
          // Read the credentials afresh next time: the operator may fix the secret and redrive.
          this.options.credentials.forget();
          throw new CitrixAuthError(
            `the token endpoint refused the Citrix API credentials (HTTP ${response.status} from ${tokenUrl}: ${this.snippet(body)}): check ${this.options.credentials.origin}`,
          );
        }
        if (!response.ok) {
          throw new ConfigurationError(
            `${setting} leads to no Citrix Cloud token endpoint: HTTP ${response.status} from ${tokenUrl}: ${this.snippet(body)}; ${fixTokenUrl(setting)}`,
          );
        }
        return this.keepToken(body, { tokenUrl, status: response.status }, credentials.customerId, log);
      } catch (error) {
        if (!(error instanceof TransientHttpError)) throw error;
        await this.backoff(error, attempt, deadlineMs, tokenUrl, log, observer);
      }
    }
  }

  /**
   * The token in the body of a token endpoint's answer, kept for the requests that follow and out of every
   * message; a body without one means the setting leads elsewhere.
   */
  private keepToken(
    body: string,
    answer: { tokenUrl: string; status: number },
    customerId: string,
    log: Logger,
  ): CachedToken {
    const setting = this.tokenUrlSetting;
    const parsed = parseJsonOrUndefined(body);
    const accessToken = isObject(parsed) ? parsed.access_token : undefined;
    if (typeof accessToken !== "string" || accessToken === "") {
      // No snippet: a body that is almost a token answer may hold a token under another name.
      throw new ConfigurationError(
        `${setting} leads to no Citrix Cloud token endpoint: ${answer.tokenUrl} answered HTTP ${answer.status} without an access_token; ${fixTokenUrl(setting)}`,
      );
    }
    for (const form of secretForms(accessToken)) this.secrets.add(form);
    const expiresIn = expiresInSeconds(isObject(parsed) ? parsed.expires_in : undefined);
    const lifetimeMs = expiresIn * 1000;
    // Short-lived tokens (tests, odd tenants) still get reused for most of their life.
    const margin = Math.min(TOKEN_REFRESH_MARGIN_MS, lifetimeMs / 10);
    this.token = { value: accessToken, customerId, refreshAtMs: this.now() + lifetimeMs - margin };
    log.info("obtained Citrix API token", { expiresInSeconds: expiresIn });
    return this.token;
  }

  /**
   * Sends one request with a timeout. Network failures, timeouts, 408, 429 and 5xx become
   * TransientHttpError; a host that does not exist, an untrusted certificate or a redirect is a wrong
   * setting, named.
   */
  private async request(
    url: string,
    setting: UrlSetting,
    { signal, ...init }: RequestInit & { signal?: AbortSignal | undefined },
  ): Promise<Response> {
    let response: Response;
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    try {
      response = await this.fetch(url, {
        ...init,
        redirect: "manual",
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (error) {
      const codes = errorCodes(error);
      if (codes.includes("ENOTFOUND")) {
        throw new ConfigurationError(
          `${setting} names a host that does not exist: ${new URL(url).hostname} (DNS lookup failed with ENOTFOUND); check ${setting}`,
          { cause: error },
        );
      }
      const certificate = codes.find((code) => UNTRUSTED_CERTIFICATE.has(code));
      if (certificate) {
        throw new ConfigurationError(
          `the TLS certificate of ${new URL(url).host} is not trusted (${certificate}); check ${setting}, and if a proxy inspects TLS on the way out, give Node its CA with NODE_EXTRA_CA_CERTS`,
          { cause: error },
        );
      }
      throw new TransientHttpError(`request failed: ${describe(error)}`, undefined, { cause: error });
    }
    if (response.status === 408 || response.status === 429 || response.status >= 500) {
      await discard(response);
      throw new TransientHttpError(
        `HTTP ${response.status}`,
        parseRetryAfter(response.headers.get("retry-after"), this.now()),
        { status: response.status },
      );
    }
    if (response.status >= 300 && response.status < 400) {
      await discard(response);
      throw new ConfigurationError(
        `${url} answered a redirect (HTTP ${response.status} to ${response.headers.get("location") ?? "nowhere"}): set ${setting} to the address the API really has`,
      );
    }
    return response;
  }

  private async backoff(
    error: TransientHttpError,
    attempt: number,
    deadlineMs: number,
    url: string,
    log: Logger,
    observer: CitrixRequestObserver | undefined,
    signal?: AbortSignal,
    pacedByWindow = false,
  ): Promise<void> {
    const exponential = Math.min(this.maxBackoffMs, FIRST_BACKOFF_MS * 2 ** (attempt - 1));
    const jittered = pacedByWindow ? 0 : Math.round(this.random() * exponential);
    const waitMs = Math.max(jittered, error.retryAfterMs ?? 0);
    if (attempt >= this.maxAttempts || this.now() + waitMs >= deadlineMs) {
      throw new CitrixUnavailableError(
        `Citrix API still failing after ${attempt} attempt(s) (${error.message} from ${url}); the state machine retries this page later; if this persists, check the Citrix Cloud status page and the API client's rate limits`,
        { cause: error, retryAtMs: this.now() + waitMs },
      );
    }
    log.warn("transient Citrix API failure, retrying", { url, attempt, waitMs, reason: error.message });
    observer?.retried(error.status);
    // The window waits for room and for the Retry-After before the request goes again.
    if (pacedByWindow) return;
    try {
      await this.sleep(waitMs, signal);
    } finally {
      // With the abort's own reason, as a request aborted mid-flight ends.
      signal?.throwIfAborted();
    }
  }

  /** A short, one-line excerpt of a body for an error message, with every known secret blanked out. */
  private snippet(body: string): string {
    let text = body;
    // Longest first, so a form that contains a shorter one is blanked out whole.
    const forms = [...this.secrets].sort((a, b) => b.length - a.length);
    for (const form of forms) text = text.replaceAll(form, "[redacted]");
    const flat = text.replace(/\s+/g, " ").trim();
    return JSON.stringify(flat.length > SNIPPET_LENGTH ? `${flat.slice(0, SNIPPET_LENGTH)}…` : flat);
  }
}

/**
 * The forms a secret comes back in when a server quotes the request it refused: as it is, form-encoded (how
 * the token request sends it: spaces as "+"), percent-encoded by encodeURIComponent, and JSON-escaped.
 */
export function secretForms(secret: string): string[] {
  if (secret === "") return [];
  const forms = new Set([
    secret,
    new URLSearchParams({ s: secret }).toString().slice("s=".length),
    encodeURIComponent(secret),
    JSON.stringify(secret).slice(1, -1),
  ]);
  return [...forms];
}

function fixTokenUrl(setting: UrlSetting): string {
  return setting === "TOKEN_URL"
    ? "check TOKEN_URL"
    : "check API_BASE, from whose host TOKEN_URL is derived as {origin}/cctrustoauth2/{customerId}/tokens/clients (or set TOKEN_URL)";
}

function parsePage(body: Buffer, url: string, snippet: (text: string) => string): ODataPage {
  let page: ReturnType<typeof readODataPage>;
  try {
    page = readODataPage(body);
  } catch (error) {
    if (!(error instanceof ODataPageRejected)) throw error;
    throw new CitrixResponseError(`response from ${url} ${error.message}: ${snippet(body.toString("utf8"))}`);
  }
  const { records, nextLink } = page;
  if (nextLink !== undefined && nextLink !== null && typeof nextLink !== "string") {
    throw new CitrixResponseError(
      `response from ${url} has a non-string @odata.nextLink: ${snippet(body.toString("utf8"))}`,
    );
  }
  return { records, nextLink: nextLink ? new URL(nextLink, url).toString() : undefined };
}

/**
 * Reads a whole body as bytes (pages are split without decoding them whole, see readODataPage); a
 * connection dropped or timed out mid-body is worth another attempt.
 */
async function readBody(response: Response): Promise<Buffer> {
  try {
    return Buffer.from(await response.arrayBuffer());
  } catch (error) {
    throw new TransientHttpError(`response body interrupted: ${describe(error)}`, undefined, {
      cause: error,
    });
  }
}

async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => undefined);
}

function parseJsonOrUndefined(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

/** Citrix Cloud sends expires_in as a string ("3600"); RFC 6749 as a number. */
function expiresInSeconds(value: unknown): number {
  const seconds = typeof value === "string" && /^\d+$/.test(value.trim()) ? Number(value) : value;
  return typeof seconds === "number" && Number.isFinite(seconds) && seconds > 0
    ? seconds
    : DEFAULT_TOKEN_TTL_SECONDS;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The system and TLS error codes (ENOTFOUND, ECONNRESET, …) in the `cause` chain fetch wraps them in. */
function errorCodes(error: unknown): string[] {
  const codes: string[] = [];
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    const { code } = current as Error & { code?: unknown };
    if (typeof code === "string") codes.push(code);
    current = current.cause;
  }
  return codes;
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return `${error.name}: ${error.message}${cause}`;
  }
  return String(error);
}

/** Retry-After is either delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(header: string | null, nowMs: number): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}
