// Runs shell commands side by side and fails if any fails: `npm test` checks the types while it packages, on
// two cores (tsc and `serverless package` each keep about one busy). Each command's output is printed whole
// when it ends, so the two do not interleave.
const { spawn } = require("node:child_process");

const commands = process.argv.slice(2);
let failed = 0;
let running = commands.length;
for (const command of commands) {
  const child = spawn(command, { shell: true, stdio: ["ignore", "pipe", "pipe"] });
  const output = [];
  child.stdout.on("data", (chunk) => output.push(chunk));
  child.stderr.on("data", (chunk) => output.push(chunk));
  child.on("close", (code) => {
    process.stdout.write(`> ${command}\n${Buffer.concat(output).toString()}`);
    if (code !== 0) {
      process.stdout.write(`side-by-side: "${command}" failed (exit code ${code})\n`);
      failed = code || 1;
    }
    if (--running === 0) process.exit(failed);
  });
}
