import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { type CitrixSimulator, startCitrixSimulator } from "../../../stand-ins/citrix-simulator";

const HOUR = "2026-11-24T08:00:00Z";
const NEXT_HOUR = "2026-11-24T09:00:00Z";
const Q = "year=2026&month=11&day=24&hour=08";

interface Page {
  "@odata.context"?: string;
  "@odata.nextLink"?: string;
  value: Record<string, unknown>[];
}

const KEY: Record<string, string> = { sessions: "SessionKey", machines: "Id", users: "Id" };

async function getToken(sim: CitrixSimulator): Promise<string> {
  const res = await fetch(sim.tokenUrl, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "client_credentials",
      client_id: sim.clientId,
      client_secret: sim.clientSecret,
    }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { access_token: string };
  return body.access_token;
}

function authHeaders(sim: CitrixSimulator, token: string): Record<string, string> {
  return {
    Authorization: `CwsAuth bearer=${token}`,
    "Citrix-CustomerId": sim.customerId,
    Accept: "application/json",
  };
}

function getData(
  sim: CitrixSimulator,
  token: string,
  entity: string,
  query: string,
  init: RequestInit = {},
): Promise<Response> {
  return fetch(`${sim.apiBase}/${entity}?${query}`, { headers: authHeaders(sim, token), ...init });
}

async function getPage(sim: CitrixSimulator, token: string, entity: string, query: string): Promise<Page> {
  const res = await getData(sim, token, entity, query);
  expect(res.status).toBe(200);
  return (await res.json()) as Page;
}

function postToken(url: string, form: Record<string, string>): Promise<Response> {
  return fetch(url, { method: "POST", body: new URLSearchParams(form) });
}

describe("token endpoint", () => {
  let sim: CitrixSimulator;
  beforeAll(async () => {
    sim = await startCitrixSimulator({ tokenTtlSeconds: 0.3 });
  });
  afterAll(() => sim.close());

  const good = (s: CitrixSimulator) => ({
    grant_type: "client_credentials",
    client_id: s.clientId,
    client_secret: s.clientSecret,
  });

  it("issues a bearer token for correct client credentials", async () => {
    expect(sim.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(sim.tokenUrl).toBe(`${sim.url}/cctrustoauth2/sim-customer/tokens/clients`);
    const res = await postToken(sim.tokenUrl, good(sim));
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body.token_type).toBe("bearer");
    expect(body.expires_in).toBe(0.3);
    expect(typeof body.access_token).toBe("string");
    expect(sim.issuedTokens).toContain(body.access_token);
  });

  it("rejects a wrong client secret or client id with 401 invalid_client", async () => {
    for (const form of [
      { ...good(sim), client_secret: "nope" },
      { ...good(sim), client_id: "nope" },
    ]) {
      const res = await postToken(sim.tokenUrl, form);
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ error: "invalid_client" });
    }
  });

  it("rejects a wrong customer id in the path with 400 invalid_request", async () => {
    const res = await postToken(`${sim.url}/cctrustoauth2/other-customer/tokens/clients`, good(sim));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "invalid_request" });
  });

  it("rejects a wrong grant type with 400", async () => {
    const res = await postToken(sim.tokenUrl, { ...good(sim), grant_type: "password" });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "unsupported_grant_type" });
  });

  it("stops accepting a token once its ttl has passed", async () => {
    const token = await getToken(sim);
    expect((await getData(sim, token, "users", Q)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 350));
    expect((await getData(sim, token, "users", Q)).status).toBe(401);
  });
});

describe("OData paging", () => {
  let sim: CitrixSimulator;
  let token: string;
  beforeAll(async () => {
    sim = await startCitrixSimulator();
    token = await getToken(sim);
  });
  afterAll(() => sim.close());

  it("guards auth, customer id, query and path", async () => {
    const url = `${sim.apiBase}/sessions?${Q}`;
    expect((await fetch(url, { headers: { "Citrix-CustomerId": sim.customerId } })).status).toBe(401);
    const badToken = { ...authHeaders(sim, token), Authorization: "CwsAuth bearer=forged" };
    expect((await fetch(url, { headers: badToken })).status).toBe(401);
    const wrongCustomer = { ...authHeaders(sim, token), "Citrix-CustomerId": "someone-else" };
    expect((await fetch(url, { headers: wrongCustomer })).status).toBe(403);
    for (const q of [
      "year=2026&month=11&day=24",
      "year=2026&month=13&day=24&hour=08",
      "year=2026&month=02&day=30&hour=1",
    ]) {
      expect((await getData(sim, token, "sessions", q)).status).toBe(400);
    }
    expect((await getData(sim, token, "sessions", `${Q}&$top=-1`)).status).toBe(400);
    expect((await fetch(`${sim.url}/nowhere`, { headers: authHeaders(sim, token) })).status).toBe(404);
    expect((await getData(sim, token, "sessions/extra", Q)).status).toBe(404);
  });

  it("serves exactly recordCount records through $top/$skip with a short last page", async () => {
    expect(sim.recordCount("sessions", HOUR)).toBe(2500);
    const sizes: number[] = [];
    const seen: Record<string, unknown>[] = [];
    for (let skip = 0; ; skip += 1000) {
      const page = await getPage(sim, token, "sessions", `${Q}&$top=1000&$skip=${skip}`);
      expect(page["@odata.context"]).toBe(`${sim.apiBase}/$metadata#sessions`);
      expect(page["@odata.nextLink"]).toBeUndefined();
      sizes.push(page.value.length);
      seen.push(...page.value);
      if (page.value.length === 0) break;
    }
    expect(sizes).toEqual([1000, 1000, 500, 0]);
    expect(new Set(seen.map((r) => r.SessionKey)).size).toBe(2500);
    expect(seen).toEqual(sim.records("sessions", HOUR));
    expect(sim.record("sessions", HOUR, 1234)).toEqual(seen[1234]);
    const last = sim.requests.at(-1);
    expect(last).toMatchObject({
      entity: "sessions",
      hourUtc: HOUR,
      top: 1000,
      skip: 3000,
      status: 200,
      records: 0,
    });
  });

  it("caps $top at maxPageSize", async () => {
    const small = await startCitrixSimulator({ maxPageSize: 100 });
    try {
      const page = await getPage(small, await getToken(small), "users", `${Q}&$top=1000`);
      expect(page.value.length).toBe(100);
    } finally {
      await small.close();
    }
  });

  it("accepts percent-encoded $ in query names", async () => {
    const page = await getPage(sim, token, "machines", `${Q}&%24top=15&%24skip=30`);
    expect(page.value).toEqual(sim.records("machines", HOUR).slice(30, 40));
  });

  it("gives every entity, the three it knows and one its volume names, unique keys and JSON-hostile text", async () => {
    const named = await startCitrixSimulator({ volume: { desktops: 50 } });
    for (const entity of ["sessions", "machines", "users", "desktops"]) {
      const all = named.records(entity, HOUR);
      const key = KEY[entity] ?? "Id";
      expect(new Set(all.map((r) => r[key])).size).toBe(all.length);
      const text = JSON.stringify(all);
      expect(text).toMatch(/[^\p{ASCII}]/u);
      expect(text).toContain('\\"');
      expect(text).toContain("\\n");
      expect(text).toContain("\\\\");
    }
    expect(named.recordCount("desktops", HOUR)).toBe(50);
    const fullNames = named.records("users", HOUR).map((u) => u.FullName);
    expect(fullNames).toContain("Zoë Ångström");
    expect(fullNames).toContain("山田 太郎");
    await named.close();
  });

  it("answers 404 for an entity set the tenant does not have, as the API does, unless a volume function serves all", async () => {
    const res = await getData(sim, token, "sesions", `${Q}&$top=100`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("NotFound");
    expect(sim.requests.at(-1)).toMatchObject({ entity: "sesions", status: 404, records: 0 });
    expect(sim.recordCount("sesions", HOUR)).toBe(0);
    expect((await getData(sim, token, "users", `${Q}&$top=1`)).status).toBe(200);
    const everyName = await startCitrixSimulator({ volume: () => 3 });
    try {
      const page = await getPage(everyName, await getToken(everyName), "sesions", `${Q}&$top=100`);
      expect(page.value).toHaveLength(3);
    } finally {
      await everyName.close();
    }
  });

  it("follows @odata.nextLink to the end in nextLink mode", async () => {
    sim.setOptions({ paging: "nextLink" });
    try {
      const sizes: number[] = [];
      const seen: Record<string, unknown>[] = [];
      let next: string | undefined = `${sim.apiBase}/sessions?${Q}&$top=700`;
      while (next) {
        expect(next.startsWith(sim.apiBase)).toBe(true);
        const res: Response = await fetch(next, { headers: authHeaders(sim, token) });
        expect(res.status).toBe(200);
        const page = (await res.json()) as Page;
        sizes.push(page.value.length);
        seen.push(...page.value);
        next = page["@odata.nextLink"];
      }
      expect(sizes).toEqual([700, 700, 700, 400]);
      expect(seen).toEqual(sim.records("sessions", HOUR));
    } finally {
      sim.setOptions({ paging: "skip" });
    }
  });
});

describe("determinism", () => {
  it("same seed serves identical records; hours and seeds differ", async () => {
    const a = await startCitrixSimulator({ seed: "s1" });
    const b = await startCitrixSimulator({ seed: "s1" });
    const c = await startCitrixSimulator({ seed: "s2" });
    try {
      const pa = await getPage(a, await getToken(a), "sessions", `${Q}&$top=300&$skip=100`);
      const pb = await getPage(b, await getToken(b), "sessions", `${Q}&$top=300&$skip=100`);
      expect(pa.value).toEqual(pb.value);
      expect(a.records("users", HOUR)).toEqual(b.records("users", HOUR));
      expect(a.record("machines", HOUR, 3)).not.toEqual(a.record("machines", NEXT_HOUR, 3));
      expect(a.record("sessions", HOUR, 3)).not.toEqual(c.record("sessions", HOUR, 3));
      const keys = new Set(
        [...a.records("sessions", HOUR), ...a.records("sessions", NEXT_HOUR)].map((r) => r.SessionKey),
      );
      expect(keys.size).toBe(5000);
    } finally {
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });
});

describe("faults", () => {
  let sim: CitrixSimulator;
  let token: string;
  beforeAll(async () => {
    sim = await startCitrixSimulator({ volume: { sessions: 30, machines: 30 } });
  });
  beforeEach(async () => {
    sim.clearFaults();
    sim.setOptions({ pageLatencyMs: 0 });
    token = await getToken(sim);
  });
  afterAll(() => sim.close());

  const query = `${Q}&$top=10&$skip=0`;
  const statuses = async (n: number, entity = "sessions"): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const res = await getData(sim, token, entity, query);
      await res.arrayBuffer();
      out.push(res.status);
    }
    return out;
  };

  it("status 429 with Retry-After fires `times` times then service resumes", async () => {
    sim.inject({ kind: "status", status: 429, times: 2, retryAfter: "2" });
    for (let i = 0; i < 2; i++) {
      const res = await getData(sim, token, "sessions", query);
      expect(res.status).toBe(429);
      expect(res.headers.get("retry-after")).toBe("2");
      await res.arrayBuffer();
    }
    expect(await statuses(1)).toEqual([200]);
    expect(sim.requests.slice(-3).map((r) => r.fault)).toEqual(["status:429", "status:429", undefined]);
  });

  it("status 503 carries an HTTP-date Retry-After; entity-scoped faults skip other entities", async () => {
    const date = new Date(Date.now() + 1000).toUTCString();
    sim.inject({ kind: "status", status: 503, times: 1, retryAfter: date, entity: "machines" });
    expect(await statuses(1, "sessions")).toEqual([200]);
    const res = await getData(sim, token, "machines", query);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe(date);
    await res.arrayBuffer();
    expect(await statuses(1, "machines")).toEqual([200]);
  });

  it("faults fire in queue order", async () => {
    sim.inject({ kind: "status", status: 500, times: 1 });
    sim.inject({ kind: "status", status: 502, times: 2 });
    expect(await statuses(4)).toEqual([500, 502, 502, 200]);
  });

  it("`after` lets that many matching requests through first; the others still count and fire in order", async () => {
    sim.inject({ kind: "status", status: 503, times: 1, after: 2 });
    sim.inject({ kind: "status", status: 500, times: 1, entity: "machines", after: 1 });
    expect(await statuses(1, "machines")).toEqual([200]);
    expect(await statuses(1, "sessions")).toEqual([200]);
    expect(await statuses(2, "machines")).toEqual([503, 500]);
    expect(await statuses(1, "machines")).toEqual([200]);
    expect(() => sim.inject({ kind: "expireTokens", after: -1 })).toThrow(RangeError);
  });

  it("expireTokens revokes issued tokens until a fresh one is fetched", async () => {
    sim.inject({ kind: "expireTokens" });
    expect(await statuses(2)).toEqual([401, 401]);
    token = await getToken(sim);
    expect(await statuses(1)).toEqual([200]);
  });

  it("malformedJson answers 200 with an unparseable body", async () => {
    sim.inject({ kind: "malformedJson", times: 2 });
    for (let i = 0; i < 2; i++) {
      const res = await getData(sim, token, "sessions", query);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(() => JSON.parse(text)).toThrow();
    }
    expect((await getPage(sim, token, "sessions", query)).value.length).toBe(10);
  });

  it("wrongEnvelope answers 200 JSON without a value array", async () => {
    sim.inject({ kind: "wrongEnvelope", times: 3 });
    for (let i = 0; i < 3; i++) {
      const res = await getData(sim, token, "sessions", query);
      expect(res.status).toBe(200);
      const body = (await res.json()) as Record<string, unknown>;
      expect(Array.isArray(body.value)).toBe(false);
    }
    expect((await getPage(sim, token, "sessions", query)).value.length).toBe(10);
  });

  it("dropConnection makes the client's read fail", async () => {
    sim.inject({ kind: "dropConnection", times: 1 });
    await expect(getData(sim, token, "sessions", query).then((r) => r.text())).rejects.toThrow();
    expect((await getPage(sim, token, "sessions", query)).value.length).toBe(10);
  });

  it("slow delays the answer enough for client timeouts", async () => {
    sim.inject({ kind: "slow", delayMs: 300, times: 2 });
    const aborted = getData(sim, token, "sessions", query, { signal: AbortSignal.timeout(100) });
    await expect(aborted.then((r) => r.text())).rejects.toThrow();
    let t0 = performance.now();
    expect((await getPage(sim, token, "sessions", query)).value.length).toBe(10);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(280);
    t0 = performance.now();
    await getPage(sim, token, "sessions", query);
    expect(performance.now() - t0).toBeLessThan(200);
  });

  it("pageLatencyMs delays every data page", async () => {
    sim.setOptions({ pageLatencyMs: 120 });
    const t0 = performance.now();
    await getPage(sim, token, "sessions", query);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(110);
  });

  it("tokenStatus fails token requests `times` times", async () => {
    sim.inject({ kind: "tokenStatus", status: 500, times: 1 });
    sim.inject({ kind: "tokenStatus", status: 429, times: 1 });
    const form = {
      grant_type: "client_credentials",
      client_id: sim.clientId,
      client_secret: sim.clientSecret,
    };
    expect((await postToken(sim.tokenUrl, form)).status).toBe(500);
    expect((await postToken(sim.tokenUrl, form)).status).toBe(429);
    expect(await statuses(1)).toEqual([200]);
    expect((await postToken(sim.tokenUrl, form)).status).toBe(200);
  });

  const KEYS = (page: Page) => page.value.map((r) => r.SessionKey);
  const sessionKeys = (from: number, to: number) =>
    sim
      .records("sessions", HOUR)
      .slice(from, to)
      .map((r) => r.SessionKey);
  const follow = async (link: string | undefined): Promise<Page> => {
    expect(link).toBeDefined();
    const res = await fetch(String(link), { headers: authHeaders(sim, token) });
    expect(res.status).toBe(200);
    return (await res.json()) as Page;
  };

  it("ignoreSkip answers any $skip with page one, `times` times", async () => {
    sim.inject({ kind: "ignoreSkip", times: 2 });
    for (let i = 0; i < 2; i++) {
      expect(KEYS(await getPage(sim, token, "sessions", `${Q}&$top=10&$skip=10`))).toEqual(
        sessionKeys(0, 10),
      );
    }
    expect(KEYS(await getPage(sim, token, "sessions", `${Q}&$top=10&$skip=10`))).toEqual(sessionKeys(10, 20));
    expect(sim.requests.slice(-3).map((r) => [r.skip, r.fault])).toEqual([
      [10, "ignoreSkip"],
      [10, "ignoreSkip"],
      [10, undefined],
    ]);
  });

  it("selfLink makes the page's @odata.nextLink the URL it was asked at", async () => {
    sim.inject({ kind: "selfLink", times: 1 });
    const page = await getPage(sim, token, "sessions", query);
    expect(page["@odata.nextLink"]).toBe(`${sim.apiBase}/sessions?${query}`);
    expect(KEYS(await follow(page["@odata.nextLink"]))).toEqual(sessionKeys(0, 10));
  });

  it("linkCycle links the first `pages` pages in a ring", async () => {
    sim.inject({ kind: "linkCycle", pages: 2, times: 3 });
    const first = await getPage(sim, token, "sessions", query);
    const second = await follow(first["@odata.nextLink"]);
    const third = await follow(second["@odata.nextLink"]);
    expect([KEYS(first), KEYS(second), KEYS(third)]).toEqual([
      sessionKeys(0, 10),
      sessionKeys(10, 20),
      sessionKeys(0, 10),
    ]);
    expect(third["@odata.nextLink"]).toBe(first["@odata.nextLink"]);
    expect(() => sim.inject({ kind: "linkCycle", pages: 1, times: 1 })).toThrow(RangeError);
  });

  it("skipToken paging pages by its own links only: $skip gets page one, a one-page hour has no link", async () => {
    sim.setOptions({ paging: "skipToken" });
    try {
      const whole = await getPage(sim, token, "machines", `${Q}&$top=100&$skip=0`);
      expect(whole.value).toHaveLength(30);
      expect(whole["@odata.nextLink"]).toBeUndefined();
      expect(await getPage(sim, token, "machines", `${Q}&$top=100&$skip=30`)).toEqual(whole);
      const first = await getPage(sim, token, "sessions", query);
      expect(KEYS(await follow(first["@odata.nextLink"]))).toEqual(sessionKeys(10, 20));
    } finally {
      sim.setOptions({ paging: "skip" });
    }
  });

  it("skipTokenLength pads the links it hands out, and the server takes them back however long", async () => {
    const padded = await startCitrixSimulator({ paging: "skipToken", skipTokenLength: 300_000 });
    try {
      const paddedToken = await getToken(padded);
      const first = await getPage(padded, paddedToken, "sessions", `${Q}&$top=10&$skip=0`);
      const link = first["@odata.nextLink"] as string;
      expect(new URL(link).searchParams.get("$skiptoken")?.length).toBeGreaterThanOrEqual(300_000);
      const res = await fetch(link, { headers: authHeaders(padded, paddedToken) });
      expect(res.status).toBe(200);
      const second = (await res.json()) as Page;
      expect(KEYS(second)).toEqual(sessionKeys(10, 20));
    } finally {
      await padded.close();
    }
  });

  it("`skip` scopes a fault to one page offset", async () => {
    sim.inject({ kind: "status", status: 503, times: 1, skip: 10 });
    expect(await statuses(1)).toEqual([200]);
    const res = await getData(sim, token, "sessions", `${Q}&$top=10&$skip=10`);
    expect(res.status).toBe(503);
    await res.arrayBuffer();
    expect(() => sim.inject({ kind: "slow", delayMs: 1, times: 1, skip: -1 })).toThrow(RangeError);
  });

  it("marks a request the client aborted before the answer", async () => {
    sim.inject({ kind: "slow", delayMs: 2000, times: 1 });
    const dropped = new AbortController();
    const pending = getData(sim, token, "sessions", query, { signal: dropped.signal });
    await vi.waitFor(() => expect(sim.requests.at(-1)?.fault).toBe("slow"));
    dropped.abort();
    await expect(pending).rejects.toThrow();
    await vi.waitFor(() => expect(sim.requests.at(-1)?.aborted).toBe(true));
    await getPage(sim, token, "sessions", query);
    expect(sim.requests.at(-1)?.aborted).toBeUndefined();
  });

  it("rejects nonsense faults", () => {
    expect(() => sim.inject({ kind: "malformedJson", times: 0 })).toThrow(RangeError);
    expect(() => sim.inject({ kind: "status", status: 200, times: 1 })).toThrow(RangeError);
  });
});

describe("volume", () => {
  let sim: CitrixSimulator;
  beforeAll(async () => {
    sim = await startCitrixSimulator({
      volume: (entity, hourUtc) => (entity === "sessions" && hourUtc === HOUR ? 1_000_000 : 10),
    });
  });
  afterAll(() => sim.close());

  it("serves a page deep inside a million-record hour quickly", async () => {
    expect(sim.recordCount("sessions", HOUR)).toBe(1_000_000);
    expect(sim.recordCount("sessions", NEXT_HOUR)).toBe(10);
    const token = await getToken(sim);
    await getPage(sim, token, "sessions", `${Q}&$top=1000&$skip=0`);
    const t0 = performance.now();
    const page = await getPage(sim, token, "sessions", `${Q}&$top=1000&$skip=999000`);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(page.value.length).toBe(1000);
    expect(page.value[999]).toEqual(sim.record("sessions", HOUR, 999_999));
    expect((await getPage(sim, token, "sessions", `${Q}&$top=1000&$skip=999500`)).value.length).toBe(500);
    expect(() => sim.record("sessions", HOUR, 1_000_000)).toThrow(RangeError);
  });

  it("answers hundreds of small pages per second", async () => {
    const token = await getToken(sim);
    const t0 = performance.now();
    for (let i = 0; i < 300; i++) await getPage(sim, token, "sessions", `${Q}&$top=5&$skip=${i * 5}`);
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it("close() ends keep-alive connections promptly", async () => {
    const other = await startCitrixSimulator();
    await getPage(other, await getToken(other), "users", `${Q}&$top=1`);
    const t0 = performance.now();
    await other.close();
    expect(performance.now() - t0).toBeLessThan(1000);
    await expect(fetch(other.tokenUrl, { method: "POST" })).rejects.toThrow();
  });
});
