// One Lambda container for a packaged bundle, as a process of its own (see local/packaged-functions.ts): plain
// Node.js, the environment the template gives the function, and nothing of the project's TypeScript. It loads
// the handler the package names from the extracted zip, says so, and answers invocations sent over IPC with
// the result or the runtime's error shape ({ errorType, errorMessage, trace }).
const path = require("node:path");
const { randomUUID } = require("node:crypto");

const [directory, handlerName] = process.argv.slice(2);
// "functions/plan/handler.handler": the file functions/plan/handler.js, its export `handler`.
const separator = handlerName.lastIndexOf(".");
const file = path.join(directory, `${handlerName.slice(0, separator)}.js`);
const handler = require(file)[handlerName.slice(separator + 1)];
process.send({ ready: true, file });

process.on("message", async (message) => {
  const context = {
    awsRequestId: randomUUID(),
    getRemainingTimeInMillis: () => message.deadlineMs - Date.now(),
  };
  try {
    const result = await handler(message.event, context);
    process.send({ id: message.id, result });
  } catch (error) {
    process.send({
      id: message.id,
      error: {
        errorType: error instanceof Error ? error.name : "Error",
        errorMessage: error instanceof Error ? error.message : String(error),
        trace: error instanceof Error && error.stack ? error.stack.split("\n") : [],
      },
    });
  }
});
