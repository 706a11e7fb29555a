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
    /** Whose hooks and record this store uses: its own, or those of the store it was made `over` from. */
    protected readonly hub?: InstrumentedStore,
  ) {
    super(base.client, base.bucket, pause);
  }

  /** A store with these hooks and this record over another store's client (a function's, signed with its role). */
  over(base: S3Store): InstrumentedStore {
    return new InstrumentedStore(base, this.feedPrefix, undefined, this);
  }

  override async put(
    key: string,
    body: string | Uint8Array,
    contentType: string,
    condition?: Condition,
  ): Promise<WriteResult> {
    const hub = this.hub ?? this;
    hub.beforePut(key);
    const result = await super.put(key, body, contentType, condition);
    if (result.written && key.startsWith(`${this.feedPrefix}/`)) hub.feedWrites.push(key);
    return result;
  }

  override async copyIfAbsent(sourceKey: string, destinationKey: string): Promise<CopyResult> {
    const hub = this.hub ?? this;
    hub.beforeCopy(destinationKey);
    const result = await super.copyIfAbsent(sourceKey, destinationKey);
    if (result === "copied" && destinationKey.startsWith(`${this.feedPrefix}/`))
      hub.feedWrites.push(destinationKey);
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
 * An instrumented store over `base` and the runtime adapter that puts its hooks into a container's runtime
 * (`adaptRuntime` of a local run), over that function's own client, so each still signs with its role:
 * `store` records every feed write of the run.
 */
export function instrument(
  base: S3Store,
  feedPrefix: string,
): { store: InstrumentedStore; adaptRuntime: <R extends StoreRuntime>(runtime: R) => R } {
  const store = new InstrumentedStore(base, feedPrefix);
  return { store, adaptRuntime: (runtime) => ({ ...runtime, store: store.over(runtime.store) }) };
}
