import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseEnv } from "node:util";
import { deploySettingsProblems, type Env } from "../functions/lib/config/config";
import type { CliContext } from "./context";

/**
 * `check-config`: the check `serverless package` and `serverless deploy` run first (loadDeploySettings, through
 * serverless/config-check.js), on the same settings: this shell's environment over the `.env.STAGE` file, or
 * `.env` when there is none, in the working directory, as Serverless's useDotenv loads them. Returns the
 * problems, one per line for stderr; none when the settings are valid.
 */
export function checkConfig(ctx: CliContext, stage: string): string[] {
  const dotenv = dotenvFile(ctx.cwd, stage);
  const problems = deploySettingsProblems({ ...dotenv?.settings, ...ctx.env });
  if (problems.length === 0) ctx.stdout.write(dotenv ? `ok (with ${dotenv.name})\n` : "ok\n");
  return problems;
}

/**
 * The file Serverless v3 loads with useDotenv: `.env.STAGE`, else `.env`; variables already set win. Unlike
 * Serverless (dotenv-expand), `${VAR}` references in it are not expanded.
 */
function dotenvFile(cwd: string, stage: string): { name: string; settings: Env } | undefined {
  for (const name of [`.env.${stage}`, ".env"]) {
    const file = path.join(cwd, name);
    if (existsSync(file)) return { name, settings: parseEnv(readFileSync(file, "utf8")) };
  }
  return undefined;
}
