import { describe, expect, it } from "vitest";
import { COLLECTOR_ERRORS, CollectorError } from "../../../functions/lib/config/errors";

const EXPECTED_NAMES = [
  "ConfigurationError",
  "InvalidInputError",
  "CitrixAuthError",
  "CitrixUnavailableError",
  "CitrixResponseError",
  "StorageUnavailableError",
  "StorageError",
  "SecretsManagerUnavailableError",
  "StagingLostError",
  "CitrixPagingError",
];

describe("COLLECTOR_ERRORS", () => {
  it("lists the intended error classes in order, each with its own hard-coded name", () => {
    expect(COLLECTOR_ERRORS.map((C) => new C("m").name)).toEqual(EXPECTED_NAMES);
  });

  it.each(COLLECTOR_ERRORS.map((C, i) => [EXPECTED_NAMES[i], C] as const))(
    "%s is a named, catchable Error",
    (expected, C) => {
      const error = new C("something broke");
      expect(error).toBeInstanceOf(Error);
      expect(error).toBeInstanceOf(CollectorError);
      expect(error.name).toBe(expected);
      expect(error.name).not.toBe("Error");
      expect(error.message).toBe("something broke");
      expect(typeof error.retryable).toBe("boolean");
      expect(String(error)).toBe(`${expected}: something broke`);
    },
  );

  it.each(COLLECTOR_ERRORS.map((C, i) => [EXPECTED_NAMES[i], C] as const))(
    "%s keeps its name when the class is subclassed or renamed (as a bundler does)",
    (expected, C) => {
      const Base: new (message: string) => Error = C;
      const Renamed = class extends Base {};
      Object.defineProperty(Renamed, "name", { value: "e" });
      Object.defineProperty(C, "name", { value: "t", configurable: true });
      try {
        expect(new Renamed("m").name).toBe(expected);
        expect(new C("m").name).toBe(expected);
      } finally {
        Object.defineProperty(C, "name", { value: expected, configurable: true });
      }
    },
  );

  it.each(COLLECTOR_ERRORS.map((C, i) => [EXPECTED_NAMES[i], C] as const))("%s keeps its cause", (_n, C) => {
    const cause = new Error("root cause");
    expect(new C("wrapped", { cause }).cause).toBe(cause);
    expect(new C("no cause").cause).toBeUndefined();
  });

  it("has unique, non-empty names", () => {
    const names = COLLECTOR_ERRORS.map((C) => new C("m").name);
    expect(names.every((n) => typeof n === "string" && n.length > 0)).toBe(true);
    expect(new Set(names).size).toBe(names.length);
  });

  it("marks exactly the errors of a service that may recover as retryable", () => {
    const retryable = COLLECTOR_ERRORS.map((C) => new C("m"))
      .filter((e) => e.retryable)
      .map((e) => e.name)
      .sort();
    expect(retryable).toEqual([
      "CitrixUnavailableError",
      "SecretsManagerUnavailableError",
      "StorageUnavailableError",
    ]);
    for (const C of COLLECTOR_ERRORS) expect(typeof new C("m").retryable).toBe("boolean");
  });
});
