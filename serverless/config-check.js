// A local Serverless v3 plugin: `serverless package` and `serverless deploy` run the collector's own
// configuration check (functions/lib/config/config.ts, loaded as TypeScript by tsx) and stop before anything is
// built or uploaded. Without it a bad setting deploys fine and fails the first execution an hour later, or
// deploys something else than meant (a bucket named after a URI, a misspelt variable ignored).
const { require: requireTypeScript } = require("tsx/cjs/api");

const CONFIG_MODULE = "../functions/lib/config/config.ts";

// The commands that build or change what is deployed; `remove`, `info` and `print` are not refused.
const CHECKED_COMMANDS = new Set(["package", "deploy", "deploy function"]);

class ConfigCheck {
  constructor(serverless, _options, { log }) {
    this.serverless = serverless;
    this.log = log;
    // Plugins are constructed before serverless.yml's plugin variables are resolved and long before esbuild:
    // the earliest point a plugin can refuse. The deployer's whole environment, .env files included (useDotenv
    // loaded them already), by the same function `citrix-collector check-config` runs.
    if (CHECKED_COMMANDS.has((serverless.processedInput?.commands ?? []).join(" ")))
      this.checkDeploySettings();
    this.configurationVariablesSources = {
      // `${deploySetting:TRACING}`: a deploy-only setting as the check reads it (a boolean, not the text), so
      // TRACING=yes is refused by its name, also by the commands not checked above.
      deploySetting: {
        resolve: ({ address }) => {
          // TRACING → tracing, LAG_ALARM_HOURS → lagAlarmHours: the field of DeployOnlySettings.
          const field = String(address)
            .toLowerCase()
            .replace(/_(.)/g, (_, letter) => letter.toUpperCase());
          const { loadDeployOnlySettings } = requireTypeScript(CONFIG_MODULE, __filename);
          let settings;
          try {
            settings = loadDeployOnlySettings(process.env);
          } catch (error) {
            if (error?.name !== "ConfigurationError") throw error;
            throw new serverless.classes.Error(error.message);
          }
          if (!(field in settings)) {
            throw new serverless.classes.Error(`deploySetting: "${address}" is not a deploy-only setting`);
          }
          return { value: settings[field] };
        },
      },
    };
    const check = () => this.check();
    this.hooks = {
      // Before the cleanup, which already deletes the last package in .serverless/.
      "before:package:cleanup": check,
      // `serverless deploy function` updates a function's environment without packaging the service.
      "before:deploy:function:initialize": check,
    };
  }

  /** Every setting in the deployer's environment, as the functions and serverless.yml will read it. */
  checkDeploySettings() {
    const { deploySettingsProblems } = requireTypeScript(CONFIG_MODULE, __filename);
    const problems = deploySettingsProblems(process.env);
    if (problems.length > 0) {
      throw new this.serverless.classes.Error(
        "The settings would deploy something broken; fix them in the environment you deploy from " +
          `(or in .env / .env.STAGE, README "Deploying"), then run again:\n${problems.map((p) => `  ${p}`).join("\n")}`,
      );
    }
  }

  /** Each function's environment as serverless.yml resolved it: what the Lambdas will read, exactly. */
  check() {
    const { loadConfig } = requireTypeScript(CONFIG_MODULE, __filename);
    const service = this.serverless.service;
    // custom.configCheck.withoutCitrix: the functions that never call Citrix, deployed without its settings.
    const withoutCitrix = new Set(service.custom?.configCheck?.withoutCitrix ?? []);
    const functionsByMessage = new Map();
    let plainTextSecret = false;
    for (const name of service.getAllFunctions()) {
      const env = this.environmentOf(name);
      plainTextSecret ||= (env.CITRIX_CLIENT_SECRET ?? "").trim() !== "";
      try {
        loadConfig(env, { citrix: !withoutCitrix.has(name) });
      } catch (error) {
        if (error?.name !== "ConfigurationError") throw error;
        const message = `${error.name}: ${error.message}`;
        functionsByMessage.set(message, [...(functionsByMessage.get(message) ?? []), name]);
      }
    }
    if (functionsByMessage.size > 0) {
      const failures = [...functionsByMessage].map(
        ([message, names]) => `${message} (function${names.length > 1 ? "s" : ""} ${names.join(", ")})`,
      );
      throw new this.serverless.classes.Error(
        `The configuration would fail every execution; fix it in the environment you deploy from:\n${failures.join("\n")}`,
      );
    }
    if (plainTextSecret) {
      this.log.warning(
        "CITRIX_CLIENT_SECRET is deployed in plain text: anyone who may read the collect function's configuration " +
          "(lambda:GetFunctionConfiguration, the console) sees it, and it is stored in the CloudFormation template " +
          "uploaded to the deployment bucket. Put the credentials in Secrets Manager and deploy with " +
          'CITRIX_SECRET_ARN instead (README, "Credentials in AWS Secrets Manager").',
      );
    }
  }

  /** A function's environment as deployed: the provider's variables, overridden by the function's own. */
  environmentOf(name) {
    const service = this.serverless.service;
    const merged = { ...service.provider.environment, ...service.getFunction(name).environment };
    return Object.fromEntries(
      Object.entries(merged).map(([variable, value]) => {
        if (value !== null && typeof value === "object") {
          throw new this.serverless.classes.Error(
            `${variable} of function ${name} is a CloudFormation expression; the configuration check needs a literal value`,
          );
        }
        return [variable, value === undefined || value === null ? undefined : String(value)];
      }),
    );
  }
}

module.exports = ConfigCheck;
