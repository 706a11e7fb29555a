import type { ODataRecord } from "./envelope";
import { CitrixAuthError, CitrixResponseError, CitrixUnavailableError } from "./errors";
import { hourParts } from "./hours";
import type { Logger } from "./log";

export interface CitrixCredentials {
  customerId: string;
  clientId: string;
  clientSecret: string;
}

export interface CitrixClientOptions {
  credentials: CitrixCredentials;
  apiBase: string;
  tokenUrl: string;
  timeoutMs: number;
  /** Attempts per request before giving up with a retryable error the state machine retries later. */
  maxAttempts?: number;
  /** Upper bound of one backoff pause, before Retry-After is considered. */
  maxBackoffMs?: number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

export interface ODataPage {
  records: ODataRecord[];
  nextLink: string | undefined;
}

interface CachedToken {
  value: string;
  refreshAtMs: number;
}

const DEFAULT_TOKEN_TTL_SECONDS = 3600;
// Refresh well before expiry so a token never lapses between the check and a slow page.
const TOKEN_REFRESH_MARGIN_MS = 5 * 60_000;
const SNIPPET_LENGTH = 200;

class RetryableHttpError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}

/**
 * Talks to the Citrix Cloud OData API: client-credentials token (cached per container, refreshed before
 * expiry and once on a 401), data pages with timeouts and bounded retries, and strict response checks.
 */
export class CitrixClient {
  private token: CachedToken | undefined;
  private readonly fetch: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly maxAttempts: number;
  private readonly maxBackoffMs: number;
  private readonly apiOrigin: string;

  constructor(private readonly options: CitrixClientOptions) {
    this.fetch = options.fetch ?? globalThis.fetch;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.apiOrigin = new URL(options.apiBase).origin;
  }

  /** The first page URL of an entity-hour, as the SPEC writes it. */
  pageUrl(entity: string, hourUtc: string, top: number, skip: number): string {
    const { year, month, day, hour } = hourParts(hourUtc);
    return `${this.options.apiBase}/${encodeURIComponent(entity)}?year=${year}&month=${month}&day=${day}&hour=${hour}&$top=${top}&$skip=${skip}`;
  }

  /**
   * Fetches one page. Transient failures are retried until the attempts or `deadlineMs` run out, then
   * surface as CitrixUnavailableError so the state machine's Retry takes over.
   */
  async getPage(url: string, deadlineMs: number, log: Logger): Promise<ODataPage> {
    if (new URL(url).origin !== this.apiOrigin) {
      // The bearer token must never be sent to a host other than the configured API.
      throw new CitrixResponseError(
        `the API returned a nextLink to another host: ${url} (API_BASE is ${this.apiOrigin})`,
      );
    }
    let unauthorizedInARow = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        const token = await this.accessToken(deadlineMs, log);
        const response = await this.request(url, {
          method: "GET",
          headers: {
            Authorization: `CwsAuth bearer=${token}`,
            "Citrix-CustomerId": this.options.credentials.customerId,
            Accept: "application/json",
          },
        });
        if (response.status === 401) {
          unauthorizedInARow++;
          this.token = undefined;
          await response.body?.cancel().catch(() => undefined);
          if (unauthorizedInARow >= 2) {
            throw new CitrixAuthError(
              `the API rejected a freshly issued token twice (HTTP 401 from ${url}): check that the API client has access to Citrix Analytics for this CITRIX_CUSTOMER_ID`,
            );
          }
          log.warn("token rejected mid-paging, fetching a new one", { url });
          attempt--;
          continue;
        }
        unauthorizedInARow = 0;
        const body = await this.readBody(response, url);
        return parsePage(body, url);
      } catch (error) {
        if (!(error instanceof RetryableHttpError)) throw error;
        await this.backoff(error, attempt, deadlineMs, url, log);
      }
    }
  }

  private async accessToken(deadlineMs: number, log: Logger): Promise<string> {
    if (this.token && this.now() < this.token.refreshAtMs) return this.token.value;
    const { clientId, clientSecret } = this.options.credentials;
    const form = new URLSearchParams({
      grant_type: "client_credentials",
      client_id: clientId,
      client_secret: clientSecret,
    });
    for (let attempt = 1; ; attempt++) {
      try {
        const response = await this.request(this.options.tokenUrl, {
          method: "POST",
          headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
          body: form.toString(),
        });
        if (response.status === 400 || response.status === 401 || response.status === 403) {
          throw new CitrixAuthError(
            `the token endpoint refused the credentials (HTTP ${response.status} from ${this.options.tokenUrl}): check CITRIX_CLIENT_ID, CITRIX_CLIENT_SECRET and CITRIX_CUSTOMER_ID`,
          );
        }
        const body = await this.readBody(response, this.options.tokenUrl);
        const parsed = parseJson(body, this.options.tokenUrl);
        const accessToken = isObject(parsed) ? parsed.access_token : undefined;
        if (typeof accessToken !== "string" || accessToken === "") {
          throw new CitrixResponseError(
            `the token endpoint answered without an access_token (${this.options.tokenUrl})`,
          );
        }
        const expiresIn =
          isObject(parsed) && typeof parsed.expires_in === "number" && parsed.expires_in > 0
            ? parsed.expires_in
            : DEFAULT_TOKEN_TTL_SECONDS;
        const lifetimeMs = expiresIn * 1000;
        // Short-lived tokens (tests, odd tenants) still get reused for most of their life.
        const margin = Math.min(TOKEN_REFRESH_MARGIN_MS, lifetimeMs / 10);
        this.token = { value: accessToken, refreshAtMs: this.now() + lifetimeMs - margin };
        log.info("obtained Citrix API token", { expiresInSeconds: expiresIn });
        return accessToken;
      } catch (error) {
        if (!(error instanceof RetryableHttpError)) throw error;
        await this.backoff(error, attempt, deadlineMs, this.options.tokenUrl, log);
      }
    }
  }

  /** Sends one request; network failures, timeouts, 429 and 5xx become RetryableHttpError. */
  private async request(url: string, init: RequestInit): Promise<Response> {
    let response: Response;
    try {
      response = await this.fetch(url, { ...init, signal: AbortSignal.timeout(this.options.timeoutMs) });
    } catch (error) {
      throw new RetryableHttpError(`request failed: ${describe(error)}`, undefined);
    }
    if (response.status === 429 || response.status >= 500) {
      await response.body?.cancel().catch(() => undefined);
      throw new RetryableHttpError(
        `HTTP ${response.status}`,
        parseRetryAfter(response.headers.get("retry-after"), this.now()),
      );
    }
    return response;
  }

  private async readBody(response: Response, url: string): Promise<string> {
    let body: string;
    try {
      body = await response.text();
    } catch (error) {
      // A connection dropped or timed out mid-body: nothing from this page was used, so retry it.
      throw new RetryableHttpError(`response body interrupted: ${describe(error)}`, undefined);
    }
    if (response.status < 200 || response.status >= 300) {
      throw new CitrixResponseError(
        `HTTP ${response.status} from ${url}: ${snippet(body)} (check API_BASE, ENTITIES and the API client's permissions)`,
      );
    }
    return body;
  }

  private async backoff(
    error: RetryableHttpError,
    attempt: number,
    deadlineMs: number,
    url: string,
    log: Logger,
  ): Promise<void> {
    const exponential = Math.min(this.maxBackoffMs, 500 * 2 ** (attempt - 1));
    const jittered = Math.round(this.random() * exponential);
    const waitMs = Math.max(jittered, error.retryAfterMs ?? 0);
    if (attempt >= this.maxAttempts || this.now() + waitMs >= deadlineMs) {
      throw new CitrixUnavailableError(
        `Citrix API still failing after ${attempt} attempt(s) (${error.message} from ${url}); the state machine retries this page later`,
        { cause: error },
      );
    }
    log.warn("transient Citrix API failure, retrying", { url, attempt, waitMs, reason: error.message });
    await this.sleep(waitMs);
  }
}

function parsePage(body: string, url: string): ODataPage {
  const parsed = parseJson(body, url);
  if (!isObject(parsed) || !Array.isArray(parsed.value)) {
    throw new CitrixResponseError(`response from ${url} has no "value" array: ${snippet(body)}`);
  }
  const records = parsed.value;
  if (!records.every(isObject)) {
    throw new CitrixResponseError(
      `response from ${url} has a "value" that is not a list of objects: ${snippet(body)}`,
    );
  }
  const nextLink = parsed["@odata.nextLink"];
  if (nextLink !== undefined && nextLink !== null && typeof nextLink !== "string") {
    throw new CitrixResponseError(`response from ${url} has a non-string @odata.nextLink: ${snippet(body)}`);
  }
  return { records, nextLink: nextLink ? new URL(nextLink, url).toString() : undefined };
}

function parseJson(body: string, url: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new CitrixResponseError(`response from ${url} is not JSON: ${snippet(body)}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function snippet(body: string): string {
  const flat = body.replace(/\s+/g, " ").trim();
  return JSON.stringify(flat.length > SNIPPET_LENGTH ? `${flat.slice(0, SNIPPET_LENGTH)}…` : flat);
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
