import { configProblems } from "../functions/lib/config/config";
import type { CliContext } from "./context";

/**
 * `check-config`: the Lambdas' configuration check (loadConfig, with the Citrix settings, as the collect
 * function runs it: the widest of the three) on this shell's environment, before a deploy or a local run.
 * Returns the problems, one per line for stderr; none when the settings are valid.
 */
export function checkConfig(ctx: CliContext): string[] {
  const problems = configProblems(ctx.env);
  if (problems.length === 0) ctx.stdout.write("ok\n");
  return problems;
}
