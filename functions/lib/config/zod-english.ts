import { en } from "zod/locales";
import { config } from "zod/mini";

/**
 * The schemas use zod's functional build (`import * as z from "zod/mini"`), which a bundler cuts to the
 * parts they use: the classic build put about 730 KB into every Lambda bundle, most of it never run, all of it
 * parsed on each cold start. Mini speaks no language by default ("Invalid input"); importing this module
 * (for its effect, once per process) gives it the classic build's English messages, so the errors that name a
 * bad field read as before. The schemas must import `z` from "zod/mini" themselves, as a namespace: a
 * re-exported namespace would be kept whole.
 */
config(en());
