// A local Serverless v3 plugin: `serverless package` and `serverless deploy` run the Lambdas' own
// configuration check (loadConfig in functions/lib/config/config.ts, loaded as TypeScript by tsx) on each
// function's environment as it will be deployed, and stop before anything is built or uploaded. Without it a
// bad setting deploys fine and fails the first execution an hour later.
const { require: requireTypeScript } = require("tsx/cjs/api");

const CONFIG_MODULE = "../functions/lib/config/config.ts";

class ConfigCheck {
  constructor(serverless, _options, { log }) {
    this.serverless = serverless;
    this.log = log;
    const check = () => this.check();
    this.hooks = {
      // Before the cleanup, which already deletes the last package in .serverless/.
      "before:package:cleanup": check,
      // `serverless deploy function` updates a function's environment without packaging the service.
      "before:deploy:function:initialize": check,
    };
  }

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
