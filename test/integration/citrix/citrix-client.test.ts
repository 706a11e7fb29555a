import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../../../functions/lib/aws/log";
import { CitrixClient, type CitrixClientOptions } from "../../../functions/lib/citrix/citrix-client";
import type { CitrixCredentialsSource } from "../../../functions/lib/citrix/citrix-credentials";
import type { CitrixUnavailableError } from "../../../functions/lib/config/errors";
import { type CitrixSimulator, startCitrixSimulator } from "../../../stand-ins/citrix-simulator";
import { failure } from "../../support/failure";

// The Citrix client on its own against the project's simulator (and, for DNS, a scripted fetch): what it
// retries, what it refuses by name, and what it never lets out (the secret, a token).

const HOUR = "2026-11-24T10:00:00Z";
const logs: string[] = [];
const log = createLogger({}, (line) => logs.push(line));

let simulator: CitrixSimulator;
let sleeps: number[];
let forgotten: number;
let closeAfter: Server[];

beforeEach(async () => {
  simulator = await startCitrixSimulator({ volume: { sessions: 25 } });
  sleeps = [];
  forgotten = 0;
  closeAfter = [];
  logs.length = 0;
});
afterEach(async () => {
  // Whatever happened, no log line carries the client secret or a token the simulator issued.
  expectNoSecrets(logs.join(""));
  await simulator.close();
  for (const server of closeAfter) await new Promise((resolve) => server.close(resolve));
});

function credentials(
  overrides: { customerId?: string; clientSecret?: string } = {},
): CitrixCredentialsSource {
  return {
    origin: "CITRIX_CUSTOMER_ID, CITRIX_CLIENT_ID and CITRIX_CLIENT_SECRET",
    get: async () => ({
      customerId: overrides.customerId ?? simulator.customerId,
      clientId: simulator.clientId,
      clientSecret: overrides.clientSecret ?? simulator.clientSecret,
    }),
    forget: () => {
      forgotten++;
    },
  };
}

function client(options: Partial<CitrixClientOptions> = {}): CitrixClient {
  return new CitrixClient({
    credentials: credentials(),
    apiBase: simulator.apiBase,
    tokenUrl: undefined,
    timeoutMs: 2000,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...options,
  });
}

/** An HTTPS server on 127.0.0.1 with a self-signed certificate (for 127.0.0.1) that nothing trusts. */
async function selfSigned(): Promise<string> {
  const fixture = (name: string) => readFileSync(new URL(`../../fixtures/${name}`, import.meta.url));
  const server = createTlsServer(
    { key: fixture("self-signed-key.pem"), cert: fixture("self-signed-cert.pem") },
    (_req, res) => res.end("{}"),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closeAfter.push(server);
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const page = (c: CitrixClient, skip = 0, top = 10) =>
  c.getPage(c.pageUrl("sessions", HOUR, top, skip), Date.now() + 60_000, log);
const tokenRequests = () =>
  simulator.requests.filter((request) => request.path.startsWith("/cctrustoauth2/"));
const dataRequests = () => simulator.requests.filter((request) => request.path.startsWith("/casodata/"));

/** An HTTP server on 127.0.0.1 answering every request with one status, body and headers. */
async function answering(
  status: number,
  body: string,
  headers: Record<string, string> = {},
): Promise<string> {
  const server = createServer((_req, res) => {
    res.writeHead(status, headers);
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closeAfter.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** What Node's fetch throws when a host does not resolve (undici wraps the getaddrinfo error). */
function dnsFailure(code: "ENOTFOUND" | "EAI_AGAIN"): typeof fetch {
  return async (input) => {
    const hostname = new URL(String(input)).hostname;
    throw new TypeError("fetch failed", {
      cause: Object.assign(new Error(`getaddrinfo ${code} ${hostname}`), {
        code,
        syscall: "getaddrinfo",
        hostname,
      }),
    });
  };
}

function expectNoSecrets(text: string): void {
  expect(text).not.toContain(simulator.clientSecret);
  for (const token of simulator.issuedTokens) expect(text).not.toContain(token);
}

describe("tokens", () => {
  it("fetches one token for many pages, and one for callers that need it at the same time", async () => {
    const c = client();
    await Promise.all([page(c, 0), page(c, 10), page(c, 20)]);
    await page(c, 0);
    expect(tokenRequests()).toHaveLength(1);
    expect(dataRequests()).toHaveLength(4);
  });

  it("derives the token URL from API_BASE's host and the customer id when TOKEN_URL is unset", async () => {
    await page(client({ tokenUrl: undefined }));
    expect(tokenRequests().map((request) => request.path)).toEqual([
      `/cctrustoauth2/${simulator.customerId}/tokens/clients`,
    ]);
  });

  it("refreshes a token shortly before it expires, without waiting for a 401", async () => {
    let clock = Date.now();
    const c = client({ now: () => clock });
    await page(c);
    // The simulator's token lives an hour; 56 minutes later it is within the refresh margin.
    clock += 56 * 60_000;
    await page(c);
    expect(tokenRequests()).toHaveLength(2);
    expect(simulator.requests.some((request) => request.status === 401)).toBe(false);
  });

  it("accepts expires_in as Citrix sends it, a string, and refreshes by it", async () => {
    let clock = Date.now();
    let issued = 0;
    const scripted: typeof fetch = async (input) =>
      String(input).includes("/cctrustoauth2/")
        ? Response.json({ access_token: `t-${++issued}`, expires_in: "120" })
        : Response.json({ value: [] });
    const c = client({ now: () => clock, fetch: scripted });
    await page(c);
    // A 120 s token is refreshed 12 s (a tenth of its life) before it expires.
    clock += 100_000;
    await page(c);
    expect(issued).toBe(1);
    clock += 10_000;
    await page(c);
    expect(issued).toBe(2);
  });

  it("fetches a new token once when one is rejected mid-paging, and carries on", async () => {
    const c = client();
    await page(c, 0);
    simulator.inject({ kind: "expireTokens" });
    const second = await page(c, 10);
    expect([...second.records].map((record) => JSON.parse(String(record)))).toEqual(
      simulator.records("sessions", HOUR).slice(10, 20),
    );
    expect(tokenRequests()).toHaveLength(2);
    expect(logs.some((line) => line.includes("token rejected mid-paging"))).toBe(true);
  });

  it("lets callers rejected with the same old token share one new token", async () => {
    let issued = 0;
    let revoked = "";
    const scripted: typeof fetch = async (input, init) => {
      if (String(input).includes("/cctrustoauth2/")) return Response.json({ access_token: `t-${++issued}` });
      const token = String(new Headers(init?.headers).get("authorization")).replace("CwsAuth bearer=", "");
      // The second caller's 401 arrives only after the first caller has its new token.
      if (String(input).includes("$skip=10")) await new Promise((resolve) => setTimeout(resolve, 100));
      return token === revoked ? new Response("", { status: 401 }) : Response.json({ value: [] });
    };
    const c = client({ fetch: scripted });
    await page(c);
    revoked = "t-1";
    await Promise.all([page(c, 0), page(c, 10)]);
    expect(issued).toBe(2);
  });

  it("fails by name when a freshly issued token is rejected too, without the token in the message", async () => {
    simulator.inject({ kind: "expireTokens" });
    simulator.inject({ kind: "expireTokens" });
    const error = await failure(page(client()));
    expect(error.name).toBe("CitrixAuthError");
    expect(error.message).toContain("HTTP 401 to a freshly issued token");
    expect(tokenRequests()).toHaveLength(2);
    expectNoSecrets(error.message);
  });

  it.each([
    ["a wrong client secret (401)", { clientSecret: "not-the-secret" }, 401],
    ["a customer id the token endpoint does not know (400)", { customerId: "someone-else" }, 400],
  ])("refuses %s at once, by name, and forgets the credentials", async (_what, wrong, status) => {
    const error = await failure(page(client({ credentials: credentials(wrong) })));
    expect(error.name).toBe("CitrixAuthError");
    expect(error.message).toContain(`HTTP ${status}`);
    expect(error.message).toContain("check CITRIX_CUSTOMER_ID, CITRIX_CLIENT_ID and CITRIX_CLIENT_SECRET");
    expect(error.message).not.toContain("not-the-secret");
    expect(tokenRequests()).toHaveLength(1);
    expect(sleeps).toEqual([]);
    expect(forgotten).toBe(1);
  });

  it("refuses an API client without access to this customer's data (403) by name", async () => {
    const c = client({
      tokenUrl: simulator.tokenUrl,
      credentials: credentials({ customerId: "someone-else" }),
    });
    const error = await failure(page(c));
    expect(error.name).toBe("CitrixAuthError");
    expect(error.message).toContain("HTTP 403");
  });
});

describe("debug lines", () => {
  it("at POWERTOOLS_LOG_LEVEL=DEBUG logs each answer of the API (URL, status, size, time); at INFO none", async () => {
    const lines = (level: string) => {
      const written: string[] = [];
      const logger = createLogger({}, (line) => written.push(line), "collector-test", {
        POWERTOOLS_LOG_LEVEL: level,
      });
      return {
        logger,
        debug: () => written.map((line) => JSON.parse(line)).filter((line) => line.level === "DEBUG"),
      };
    };
    const debug = lines("DEBUG");
    const c = client();
    const url = c.pageUrl("sessions", HOUR, 10, 0);
    await c.getPage(url, Date.now() + 60_000, debug.logger);
    expect(debug.debug()).toEqual([
      expect.objectContaining({
        message: "Citrix API answered",
        url,
        status: 200,
        attempt: 1,
        ms: expect.any(Number),
      }),
    ]);
    expect(debug.debug()[0].bytes).toBeGreaterThan(100);
    const info = lines("INFO");
    await c.getPage(url, Date.now() + 60_000, info.logger);
    expect(info.debug()).toEqual([]);
  });
});

describe("wrong URLs name the setting to fix", () => {
  it("a TOKEN_URL that answers 404 is a ConfigurationError naming TOKEN_URL", async () => {
    const error = await failure(page(client({ tokenUrl: `${simulator.url}/oauth/wrong/path` })));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain("TOKEN_URL leads to no Citrix Cloud token endpoint: HTTP 404");
    expect(error.message).toContain("check TOKEN_URL");
    expect(sleeps).toEqual([]);
  });

  it("an API_BASE whose host has no token endpoint is a ConfigurationError naming API_BASE", async () => {
    const origin = await answering(404, "<html>Not Found</html>", { "content-type": "text/html" });
    const error = await failure(page(client({ apiBase: `${origin}/casodata` })));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain("API_BASE leads to no Citrix Cloud token endpoint: HTTP 404");
    expect(error.message).toContain(`${origin}/cctrustoauth2/${simulator.customerId}/tokens/clients`);
    expect(error.message).toContain("Not Found");
  });

  it("a TOKEN_URL that answers 200 without a token is a ConfigurationError, without quoting the body", async () => {
    const tokenUrl = await answering(200, '{"token":"looks-like-a-token"}', {
      "content-type": "application/json",
    });
    const error = await failure(page(client({ tokenUrl })));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain("without an access_token; check TOKEN_URL");
    expect(error.message).not.toContain("looks-like-a-token");
  });

  it("an API_BASE path with no entity sets behind it (404) is a ConfigurationError naming API_BASE and ENTITIES", async () => {
    const error = await failure(page(client({ apiBase: `${simulator.url}/odata` })));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain(`HTTP 404 from ${simulator.url}/odata/sessions?`);
    expect(error.message).toContain("check API_BASE");
    expect(error.message).toContain("ENTITIES");
  });

  it("a redirect is a ConfigurationError naming the setting, not followed", async () => {
    const tokenUrl = await answering(301, "", { location: "https://elsewhere.example/token" });
    const error = await failure(page(client({ tokenUrl })));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toContain("redirect (HTTP 301 to https://elsewhere.example/token)");
    expect(error.message).toContain("set TOKEN_URL");
  });

  it.each([
    ["API_BASE", undefined, "api-xx.cloud.example"],
    ["TOKEN_URL", "https://trust.cloud.example/cctrustoauth2/c/tokens/clients", "trust.cloud.example"],
  ])("an unknown host (DNS ENOTFOUND) is a ConfigurationError naming %s", async (setting, tokenUrl, host) => {
    const c = client({
      apiBase: "https://api-xx.cloud.example/casodata",
      tokenUrl,
      fetch: dnsFailure("ENOTFOUND"),
    });
    const error = await failure(page(c));
    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toBe(
      `${setting} names a host that does not exist: ${host} (DNS lookup failed with ENOTFOUND); check ${setting}`,
    );
    expect(sleeps).toEqual([]);
  });

  it("an unknown API_BASE host behind a working TOKEN_URL is named API_BASE", async () => {
    const dns = dnsFailure("ENOTFOUND");
    const c = client({
      apiBase: "https://api-xx.cloud.example/casodata",
      tokenUrl: simulator.tokenUrl,
      fetch: (input, init) =>
        String(input).startsWith(simulator.url) ? fetch(input, init) : dns(input, init),
    });
    const error = await failure(page(c));
    expect(error.message).toContain("API_BASE names a host that does not exist: api-xx.cloud.example");
  });

  it.each([
    ["TOKEN_URL", true],
    ["API_BASE", false],
  ])(
    "an untrusted TLS certificate is a ConfigurationError naming %s, not retried",
    async (setting, viaTokenUrl) => {
      const origin = await selfSigned();
      const c = client({
        apiBase: viaTokenUrl ? simulator.apiBase : `${origin}/casodata`,
        tokenUrl: viaTokenUrl ? `${origin}/cctrustoauth2/c/tokens/clients` : simulator.tokenUrl,
      });
      const error = await failure(
        viaTokenUrl ? page(c) : c.getPage(`${origin}/casodata/sessions?$top=1`, Date.now() + 60_000, log),
      );
      expect(error.name).toBe("ConfigurationError");
      expect(error.message).toBe(
        `the TLS certificate of ${new URL(origin).host} is not trusted (DEPTH_ZERO_SELF_SIGNED_CERT); check ${setting}, and if a proxy inspects TLS on the way out, give Node its CA with NODE_EXTRA_CA_CERTS`,
      );
      expect(sleeps).toEqual([]);
    },
  );

  it("a DNS failure that may pass (EAI_AGAIN) is retried, then left to the state machine", async () => {
    const error = await failure(page(client({ fetch: dnsFailure("EAI_AGAIN"), maxAttempts: 3 })));
    expect(error.name).toBe("CitrixUnavailableError");
    expect(error.message).toContain("after 3 attempt(s)");
    expect(sleeps).toHaveLength(2);
  });
});

describe("retries", () => {
  it("retries a refused connection with backoff, then gives up by a retryable name", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const error = await failure(
      page(client({ apiBase: `http://127.0.0.1:${port}/casodata`, maxAttempts: 4 })),
    );
    expect(error.name).toBe("CitrixUnavailableError");
    expect(error.message).toContain("ECONNREFUSED");
    expect(error.message).toContain("after 4 attempt(s)");
    expect(sleeps).toHaveLength(3);
  });

  it("backs off exponentially with full jitter, capped at maxBackoffMs", async () => {
    simulator.inject({ kind: "status", status: 503, times: 6 });
    const draws = [1, 0.5, 1, 1, 0, 1];
    const c = client({ random: () => draws.shift() ?? 1, maxBackoffMs: 5000 });
    await page(c);
    expect(sleeps).toEqual([500, 500, 2000, 4000, 0, 5000]);
  });

  it("honours Retry-After in seconds and as an HTTP date, over a shorter backoff", async () => {
    simulator.inject({ kind: "status", status: 429, times: 1, retryAfter: "7" });
    simulator.inject({
      kind: "status",
      status: 503,
      times: 1,
      retryAfter: new Date(Date.now() + 30_000).toUTCString(),
    });
    const c = client({ maxBackoffMs: 10 });
    await page(c);
    expect(sleeps[0]).toBe(7000);
    expect(sleeps[1]).toBeGreaterThan(28_000);
    expect(sleeps[1]).toBeLessThanOrEqual(30_000);
  });

  it("gives up at once, retryably, when Retry-After reaches past the invocation's deadline", async () => {
    simulator.inject({ kind: "status", status: 429, times: 1, retryAfter: "120" });
    const c = client();
    const error = await failure(c.getPage(c.pageUrl("sessions", HOUR, 10, 0), Date.now() + 60_000, log));
    expect(error.name).toBe("CitrixUnavailableError");
    expect(error.message).toContain("after 1 attempt(s) (HTTP 429 from");
    expect(sleeps).toEqual([]);
    // What the next invocation is told to wait for.
    const { retryAtMs } = error as CitrixUnavailableError;
    expect(retryAtMs).toBeGreaterThan(Date.now() + 115_000);
    expect(retryAtMs).toBeLessThanOrEqual(Date.now() + 120_000);
  });

  it("gives up on its last attempt with the backoff it did not wait as the time to retry at", async () => {
    simulator.inject({ kind: "status", status: 503, times: 2 });
    const c = client({ maxAttempts: 2, random: () => 1 });
    const before = Date.now();
    const error = (await failure(page(c))) as CitrixUnavailableError;
    expect(sleeps).toEqual([500]);
    expect(error.retryAtMs).toBeGreaterThanOrEqual(before + 1000);
    expect(error.retryAtMs).toBeLessThanOrEqual(Date.now() + 1000);
  });

  it("waits until a handed-over time before paging, but not past the deadline", async () => {
    const c = client();
    await c.waitUntil(Date.now() + 90_000, Date.now() + 60_000, log);
    await c.waitUntil(Date.now() - 1, Date.now() + 60_000, log);
    await c.waitUntil(Date.now() + 20_000, Date.now() + 60_000, log);
    expect(sleeps).toHaveLength(2);
    expect(sleeps[0]).toBeGreaterThan(59_000);
    expect(sleeps[0]).toBeLessThanOrEqual(60_000);
    expect(sleeps[1]).toBeGreaterThan(19_000);
    expect(sleeps[1]).toBeLessThanOrEqual(20_000);
  });

  it("ends an aborted request at once with the abort's reason, unretried, also during a backoff pause", async () => {
    // The client's own sleep, which an abort cuts short.
    const c = client({ sleep: undefined });
    const url = c.pageUrl("sessions", HOUR, 10, 0);
    simulator.inject({ kind: "slow", delayMs: 5000, times: 1 });
    const inFlight = new AbortController();
    const started = Date.now();
    const request = c.getPage(url, Date.now() + 60_000, log, { signal: inFlight.signal });
    await vi.waitFor(() => expect(dataRequests()).toHaveLength(1));
    inFlight.abort(new Error("handed over"));
    expect((await failure(request)).message).toBe("handed over");
    await vi.waitFor(() => expect(dataRequests()[0]?.aborted).toBe(true));

    simulator.inject({ kind: "status", status: 503, times: 1, retryAfter: "30" });
    const backingOff = new AbortController();
    const retried = c.getPage(url, Date.now() + 60_000, log, { signal: backingOff.signal });
    await vi.waitFor(() =>
      expect(logs.some((line) => line.includes("transient Citrix API failure"))).toBe(true),
    );
    backingOff.abort(new Error("dropped"));
    expect((await failure(retried)).message).toBe("dropped");
    expect(Date.now() - started).toBeLessThan(4000);
    expect(dataRequests()).toHaveLength(2);
  });

  it("times out a request that hangs, and retries it", async () => {
    simulator.inject({ kind: "slow", delayMs: 1500, times: 1 });
    const result = await page(client({ timeoutMs: 200 }));
    expect(result.records.length).toBe(10);
    expect(dataRequests()).toHaveLength(2);
    expect(logs.some((line) => line.includes("TimeoutError"))).toBe(true);
  });

  it("retries a connection dropped mid-body, and returns the page whole", async () => {
    simulator.inject({ kind: "dropConnection", times: 1 });
    const result = await page(client());
    expect([...result.records].map((record) => JSON.parse(String(record)))).toEqual(
      simulator.records("sessions", HOUR).slice(0, 10),
    );
    expect(logs.some((line) => line.includes("response body interrupted"))).toBe(true);
  });

  it("retries a throttled or failing token endpoint too", async () => {
    simulator.inject({ kind: "tokenStatus", status: 503, times: 2 });
    await page(client());
    expect(tokenRequests().map((request) => request.status)).toEqual([503, 503, 200]);
  });
});

describe("responses are checked before anything is used", () => {
  it.each([
    ["malformedJson", "is not JSON"],
    ["wrongEnvelope", 'has no "value" array'],
  ] as const)("%s is a CitrixResponseError with the URL and a snippet", async (kind, says) => {
    simulator.inject({ kind, times: 1 });
    const c = client();
    const url = c.pageUrl("sessions", HOUR, 10, 0);
    const error = await failure(c.getPage(url, Date.now() + 60_000, log));
    expect(error.name).toBe("CitrixResponseError");
    expect(error.message).toContain(`response from ${url} ${says}: "{`);
    expectNoSecrets(error.message);
    expect(sleeps).toEqual([]);
  });

  it("a value that is not a list of objects is refused, and a body echoing the token is redacted", async () => {
    let token = "";
    const scripted: typeof fetch = async (input, init) => {
      if (String(input).includes("/cctrustoauth2/")) return fetch(input, init);
      token = String(new Headers(init?.headers).get("authorization")).replace("CwsAuth bearer=", "");
      return new Response(JSON.stringify({ value: [1, "two"], echo: token }), { status: 200 });
    };
    const error = await failure(page(client({ fetch: scripted })));
    expect(error.name).toBe("CitrixResponseError");
    expect(error.message).toContain('has a "value" that is not a list of objects');
    expect(token).not.toBe("");
    expect(error.message).not.toContain(token);
    expect(error.message).toContain("[redacted]");
  });

  it("never sends the token to a nextLink on another host", async () => {
    const c = client();
    const error = await failure(
      c.getPage("https://attacker.example/casodata/sessions", Date.now() + 60_000, log),
    );
    expect(error.name).toBe("CitrixResponseError");
    expect(simulator.requests).toEqual([]);
  });
});

describe("a server that quotes the request it refuses (the simulator's echoRequests)", () => {
  // Characters each encoding changes: "@" and "/" (percent-encoding), " " ("+" in a form, "%20" otherwise),
  // '"' and "\" (JSON), "é" (UTF-8 percent-encoding).
  const SECRET = 'p@ss wörd/+&="x\\';
  const SECRET_FORMS = [
    SECRET,
    "p%40ss+w%C3%B6rd%2F%2B%26%3D%22x%5C",
    "p%40ss%20w%C3%B6rd%2F%2B%26%3D%22x%5C",
    'p@ss wörd/+&=\\"x\\\\',
  ];
  let echoing: CitrixSimulator;
  beforeEach(async () => {
    echoing = await startCitrixSimulator({ echoRequests: true, tokenEncoding: "base64" });
  });
  afterEach(async () => {
    await echoing.close();
  });
  const echoingClient = (clientSecret: string) =>
    new CitrixClient({
      credentials: {
        origin: "CITRIX_CLIENT_SECRET",
        get: async () => ({ customerId: echoing.customerId, clientId: echoing.clientId, clientSecret }),
        forget: () => undefined,
      },
      apiBase: echoing.apiBase,
      tokenUrl: undefined,
      timeoutMs: 2000,
      sleep: async () => undefined,
    });
  const leaked = (error: Error, forms: string[]) => {
    const seen = [error.message, String(error.cause ?? ""), logs.join("")].join("\n");
    return forms.filter((form) => seen.includes(form));
  };

  it("blanks out the client secret raw, form-encoded, percent-encoded and JSON-escaped", async () => {
    // The token endpoint really quotes every encoded form of what it was sent (its JSON body cannot hold the
    // raw one, which the tests above cover).
    const quoted = await fetch(echoing.tokenUrl, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "client_credentials", client_id: "x", client_secret: SECRET }),
    }).then((response) => response.text());
    expect(SECRET_FORMS.slice(1).filter((form) => !quoted.includes(form))).toEqual([]);

    const c = echoingClient(SECRET);
    const error = await failure(c.getPage(c.pageUrl("sessions", HOUR, 10, 0), Date.now() + 60_000, log));
    expect(error.name).toBe("CitrixAuthError");
    expect(error.message).toContain("HTTP 401");
    expect(error.message).toContain("[redacted]");
    expect(leaked(error, SECRET_FORMS)).toEqual([]);
  });

  it("blanks out a token raw and in every encoding when the data API quotes the Authorization header", async () => {
    echoing.inject({ kind: "status", status: 403, times: 1 });
    const c = echoingClient(echoing.clientSecret);
    const error = await failure(c.getPage(c.pageUrl("sessions", HOUR, 10, 0), Date.now() + 60_000, log));
    expect(error.name).toBe("CitrixAuthError");
    const [token] = echoing.issuedTokens;
    if (token === undefined) throw new Error("no token was issued");
    // A base64 token ends in "=", which both URL encodings change.
    const tokenForms = [
      token,
      token.replace(/[+/=]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
    ];
    expect(tokenForms[1]).not.toBe(token);
    expect(error.message).toContain("[redacted]");
    expect(leaked(error, tokenForms)).toEqual([]);
  });
});
