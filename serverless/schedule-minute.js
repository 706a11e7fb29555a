// A local Serverless v3 (and osls) plugin: the variable `${scheduleMinute(LOOKBACK_MINUTES)}` is the minute
// past every hour at which the schedule starts an execution, one minute after the next hour falls due
// (scheduleMinute in functions/lib/feed/planner.ts, loaded as TypeScript by tsx). A rate(1 hour) schedule would fire
// at whatever minute the stack was deployed, up to an hour after an hour fell due.
const { require: requireTypeScript } = require("tsx/cjs/api");

class ScheduleMinute {
  constructor(serverless) {
    this.configurationVariablesSources = {
      scheduleMinute: {
        resolve: ({ params }) => {
          const { loadPlanningRules } = requireTypeScript("../functions/lib/config/config.ts", __filename);
          const { scheduleMinute } = requireTypeScript("../functions/lib/feed/planner.ts", __filename);
          const lookback = params?.[0];
          let rules;
          try {
            // The Lambdas' own parse of LOOKBACK_MINUTES, so the schedule and Plan read it the same way.
            rules = loadPlanningRules({ LOOKBACK_MINUTES: lookback == null ? undefined : String(lookback) });
          } catch (error) {
            if (error?.name !== "ConfigurationError") throw error;
            throw new serverless.classes.Error(
              `the schedule's minute comes from LOOKBACK_MINUTES: ${error.message}`,
            );
          }
          return { value: scheduleMinute(rules.lookbackMinutes) };
        },
      },
    };
  }
}

module.exports = ScheduleMinute;
