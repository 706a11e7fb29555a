import { type CopyResult, S3Store, type WriteResult } from "../../functions/lib/aws/s3-store";
import type { StoreRuntime } from "../../functions/lib/runtime";

type Condition = Parameters<S3Store["put"]>[3];

/**
 * The real S3Store with hooks a test uses to kill an invocation at a chosen write, and a record of every
 * object written under the feed prefix: SecOps may ingest each write, so each feed key must appear once.
 */
export class InstrumentedStore extends S3Store {
  readonly feedWrites: string[] = [];
  beforePut: (key: string) => void = () => undefined;
  beforeCopy: (destination: string) => void = () => undefined;

  constructor(
    base: S3Store,
    private readonly feedPrefix: string,
    /** The pause between repeats of a conflicted conditional write (S3Store's own by default). */
    pause?: (ms: number) => Promise<void>,
  ) {
    super(base.client, base.bucket, pause);
  }

  override async put(
    key: string,
    body: string | Uint8Array,
    contentType: string,
    condition?: Condition,
  ): Promise<WriteResult> {
    this.beforePut(key);
    const result = await super.put(key, body, contentType, condition);
    if (result.written && key.startsWith(`${this.feedPrefix}/`)) this.feedWrites.push(key);
    return result;
  }

  override async copyIfAbsent(sourceKey: string, destinationKey: string): Promise<CopyResult> {
    this.beforeCopy(destinationKey);
    const result = await super.copyIfAbsent(sourceKey, destinationKey);
    if (result === "copied" && destinationKey.startsWith(`${this.feedPrefix}/`))
      this.feedWrites.push(destinationKey);
    return result;
  }
}

/** An error named as the Lambda service names a killed or lost invocation. */
export function lambdaDied(name = "Sandbox.Timedout"): Error {
  const error = new Error("the invocation was killed by the test");
  error.name = name;
  return error;
}

/**
 * An instrumented store over `base` and the runtime adapter that swaps it into a container's runtime
 * (`adaptRuntime` of a local run): `store` records every feed write of the run.
 */
export function instrument(
  base: S3Store,
  feedPrefix: string,
): { store: InstrumentedStore; adaptRuntime: <R extends StoreRuntime>(runtime: R) => R } {
  const store = new InstrumentedStore(base, feedPrefix);
  return { store, adaptRuntime: (runtime) => ({ ...runtime, store }) };
}
