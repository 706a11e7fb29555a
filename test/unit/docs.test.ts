import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../../cli/main";
import { KNOWN_VARIABLES } from "../../functions/lib/config/config";

// The documentation stays readable in a terminal and its links lead somewhere: README.md and docs/*.md keep every
// line within MAX_LINE_WIDTH (Biome pads a table's rows to its widest cell, so a wide table fails here), and every
// relative link names a file that exists and, after a `#`, one of that file's headings. The commands they show
// exist: each `citrix-collector` command and its flags as cli/main.ts defines them, each `npm run` script in
// package.json, and each setting of the README's tables as the configuration or serverless.yml reads it.

const ROOT = path.join(__dirname, "..", "..");
const MAX_LINE_WIDTH = 160;

/** README.md and every page under docs/, relative to the repository root. */
function documentationFiles(): string[] {
  const pages = readdirSync(path.join(ROOT, "docs")).filter((name) => name.endsWith(".md"));
  return ["README.md", ...pages.sort().map((name) => `docs/${name}`)];
}

/** The lines outside fenced code blocks, with their line numbers (code blocks hold no headings or links). */
function proseLines(markdown: string): { text: string; lineNumber: number }[] {
  const prose: { text: string; lineNumber: number }[] = [];
  let fence: string | undefined;
  markdown.split("\n").forEach((text, index) => {
    const marker = /^\s*(```|~~~)/.exec(text)?.[1];
    if (marker && (fence === undefined || fence === marker)) fence = fence === undefined ? marker : undefined;
    else if (fence === undefined) prose.push({ text, lineNumber: index + 1 });
  });
  return prose;
}

/** The anchor GitHub gives a heading: lower case, punctuation dropped, each space a hyphen. */
function headingSlug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/[`*]/g, "")
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** The anchors of every heading in a markdown file; a repeated heading gets -1, -2… as on GitHub. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const { text } of proseLines(markdown)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(text)?.[1];
    if (heading === undefined) continue;
    const slug = headingSlug(heading);
    let anchor = slug;
    for (let repeat = 1; anchors.has(anchor); repeat++) anchor = `${slug}-${repeat}`;
    anchors.add(anchor);
  }
  return anchors;
}

/** Lines wider than MAX_LINE_WIDTH characters (code points), as "file:line (width)". */
function wideLines(file: string, markdown: string): string[] {
  return markdown
    .split("\n")
    .map((line, index) => ({ width: [...line].length, lineNumber: index + 1 }))
    .filter(({ width }) => width > MAX_LINE_WIDTH)
    .map(({ width, lineNumber }) => `${file}:${lineNumber} (${width} characters)`);
}

/** Relative links (not http:, mailto: and the like) outside code, as written. */
function relativeLinks(markdown: string): string[] {
  const prose = proseLines(markdown)
    .map(({ text }) => text)
    .join("\n")
    .replace(/`[^`\n]*`/g, "");
  return [...prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((match) => match[1] ?? "")
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** Links of `file` (relative to ROOT, content `markdown`) whose file does not exist or whose anchor no heading has. */
function brokenLinks(file: string, markdown: string): string[] {
  return relativeLinks(markdown).flatMap((target) => {
    const [targetPath = "", anchor] = target.split("#", 2);
    const resolved =
      targetPath === "" ? path.join(ROOT, file) : path.join(ROOT, path.dirname(file), targetPath);
    if (!existsSync(resolved)) return [`${file}: ${target} (no such file)`];
    if (anchor === undefined) return [];
    const targetText = targetPath === "" ? markdown : readFileSync(resolved, "utf8");
    return headingAnchors(targetText).has(anchor) ? [] : [`${file}: ${target} (no such heading)`];
  });
}

/** The text of fenced code blocks and inline code spans: where the docs show commands. */
function codeText(markdown: string): string {
  const prose = new Set(proseLines(markdown).map(({ lineNumber }) => lineNumber));
  const lines = markdown.split("\n");
  const fenced = lines.filter((text, index) => !prose.has(index + 1) && !/^\s*(```|~~~)/.test(text));
  const spans = proseLines(markdown).flatMap(({ text }) =>
    [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] ?? ""),
  );
  return [...fenced, ...spans].join("\n");
}

/** A `citrix-collector` call as the docs show it: the subcommand (or alternatives) and the flags after it. */
interface DocumentedCommand {
  subcommands: string[];
  flags: string[];
  text: string;
}

/**
 * The `citrix-collector …` and `npm start -- …` calls in code, up to a shell comment or pipe. Placeholders
 * (`<command>`, `…`) name no subcommand; `status|backfill|redrive` names three.
 */
function documentedCommands(markdown: string): DocumentedCommand[] {
  const calls = [
    ...[...codeText(markdown).matchAll(/(?<![\w/.-])citrix-collector(?![\w:.-])([^\n`]*)/g)].map(
      (m) => m[1] ?? "",
    ),
    ...[...codeText(markdown).matchAll(/npm start -- ([^\n`]*)/g)].map((m) => `run ${m[1] ?? ""}`),
  ];
  return calls.map((call) => {
    const text = call.split(/\s(?:#|\||&&|;)/)[0]?.trim() ?? "";
    const [first = ""] = text.split(/\s+/);
    const subcommands = /^[a-z][a-z|-]*$/.test(first) ? first.split("|") : [];
    const flags = [...text.matchAll(/(?<![\w-])--[a-z][a-z-]*/g)].map((m) => m[0]);
    return { subcommands, flags, text: `citrix-collector ${text}` };
  });
}

/** The CLI's own definitions, read from its help: each subcommand and the flags it takes. */
async function cliDefinitions(): Promise<Map<string, Set<string>>> {
  const help = async (args: string[]) => {
    let text = "";
    await main(args, {
      stdout: { write: (chunk: string) => (text += chunk) },
      stderr: { write: () => true },
    });
    return text;
  };
  const flags = (text: string) => new Set([...text.matchAll(/(?<![\w-])--[a-z][a-z-]*/g)].map((m) => m[0]));
  const top = await help(["--help"]);
  const names = [...(top.split("Commands:")[1] ?? "").matchAll(/^ {2}([a-z][a-z-]*)/gm)]
    .map((m) => m[1] ?? "")
    .filter((name) => name !== "help");
  const definitions = new Map<string, Set<string>>([["", flags(top)]]);
  for (const name of names)
    definitions.set(name, new Set([...flags(await help([name, "--help"])), "--help"]));
  return definitions;
}

/** Calls whose subcommand or flag the CLI does not define, as "file: call (what)". */
function unknownCommands(file: string, markdown: string, definitions: Map<string, Set<string>>): string[] {
  return documentedCommands(markdown).flatMap(({ subcommands, flags, text }) => {
    const problems = subcommands
      .filter((name) => !definitions.has(name) || name === "")
      .map((name) => `${file}: ${text} (no command ${name})`);
    const takes = (flag: string) =>
      (subcommands.length === 0 ? [""] : subcommands).every((name) => definitions.get(name)?.has(flag));
    return [
      ...problems,
      ...flags.filter((flag) => !takes(flag)).map((flag) => `${file}: ${text} (no flag ${flag})`),
    ];
  });
}

/** `npm run X` and `npm start`/`npm test` in the docs whose script package.json lacks. */
function missingScripts(file: string, markdown: string, scripts: Record<string, string>): string[] {
  const named = [
    ...[...markdown.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1] ?? ""),
    ...[...markdown.matchAll(/npm (start|test)\b/g)].map((m) => m[1] ?? ""),
  ];
  return [...new Set(named)]
    .filter((name) => !Object.hasOwn(scripts, name))
    .map((name) => `${file}: npm run ${name}`);
}

/**
 * The settings the README's tables name (a row's first cell) that neither the configuration (KNOWN_VARIABLES)
 * nor serverless.yml reads. AWS_* are the AWS SDK's own.
 */
function unknownSettings(markdown: string, serverlessYml: string, known: readonly string[]): string[] {
  const named = [...markdown.matchAll(/^\| `([A-Z][A-Z0-9_]+)`/gm)].map((m) => m[1] ?? "");
  return named.filter(
    (name) =>
      !known.includes(name) &&
      !name.startsWith("AWS_") &&
      !new RegExp(`\\benv:${name}\\b`).test(serverlessYml),
  );
}

describe("documentation", () => {
  const files = documentationFiles();
  const read = (file: string) => readFileSync(path.join(ROOT, file), "utf8");

  it("keeps every line of README.md and docs/*.md within 160 characters", () => {
    expect(files.length).toBeGreaterThan(1);
    expect(files.flatMap((file) => wideLines(file, read(file)))).toEqual([]);
  });

  it("points every relative link at a file that exists, and every anchor at one of its headings", () => {
    expect(files.flatMap((file) => relativeLinks(read(file))).length).toBeGreaterThan(20);
    expect(files.flatMap((file) => brokenLinks(file, read(file)))).toEqual([]);
  });

  it("links every docs page from the README", () => {
    const linked = new Set(relativeLinks(read("README.md")).map((target) => target.split("#")[0]));
    expect(files.filter((file) => file !== "README.md" && !linked.has(file))).toEqual([]);
  });

  it("shows only citrix-collector commands and flags that cli/main.ts defines", async () => {
    const definitions = await cliDefinitions();
    expect([...definitions.keys()]).toEqual(
      expect.arrayContaining(["status", "backfill", "redrive", "check-config", "run", "feed"]),
    );
    const commands = files.flatMap((file) => documentedCommands(read(file)));
    expect(commands.filter((command) => command.subcommands.length > 0).length).toBeGreaterThan(30);
    expect(files.flatMap((file) => unknownCommands(file, read(file), definitions))).toEqual([]);
  });

  it("runs only npm scripts that package.json has", () => {
    const { scripts } = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
    expect(files.flatMap((file) => missingScripts(file, read(file), scripts))).toEqual([]);
  });

  it("lists in the README's tables only settings the configuration or serverless.yml reads", () => {
    const readme = read("README.md");
    expect([...readme.matchAll(/^\| `([A-Z][A-Z0-9_]+)`/gm)].length).toBeGreaterThan(25);
    expect(unknownSettings(readme, read("serverless.yml"), KNOWN_VARIABLES)).toEqual([]);
  });

  it("reports a command, flag, script or setting that does not exist", async () => {
    const definitions = await cliDefinitions();
    const markdown = [
      "`npx citrix-collector status --json` and `citrix-collector stauts`",
      "```sh",
      "npx citrix-collector backfill --from H --to H --wiat   # --not-checked",
      "npx citrix-collector status|redrive --data DIR",
      "npx citrix-collector status|feed --limit 3",
      "npm start -- --hours 6 --days 2",
      "npm run package && npm run pakage",
      "```",
      "`citrix-collector …` and `citrix-collector: an error line` and bin/citrix-collector.js",
    ].join("\n");
    expect(unknownCommands("x.md", markdown, definitions)).toEqual([
      "x.md: citrix-collector backfill --from H --to H --wiat (no flag --wiat)",
      "x.md: citrix-collector status|feed --limit 3 (no flag --limit)",
      "x.md: citrix-collector stauts (no command stauts)",
      "x.md: citrix-collector run --hours 6 --days 2 (no flag --days)",
    ]);
    expect(missingScripts("x.md", markdown, { package: "", start: "" })).toEqual(["x.md: npm run pakage"]);
    const table = "| `S3_BUCKET` | x |\n| `AWS_REGION` | x |\n| `ALARM_EMAIL` | x |\n| `S3_BUCKETS` | x |";
    // biome-ignore lint/suspicious/noTemplateCurlyInString: serverless.yml's own variable syntax
    const yml = "ALARM: ${env:ALARM_EMAIL, ''}";
    expect(unknownSettings(table, yml, ["S3_BUCKET"])).toEqual(["S3_BUCKETS"]);
  });

  it("makes anchors the way GitHub does", () => {
    expect(headingSlug("Output (the byte contract with the SecOps parser)")).toBe(
      "output-the-byte-contract-with-the-secops-parser",
    );
    expect(headingSlug("How the Map's iterations share the customer's limit")).toBe(
      "how-the-maps-iterations-share-the-customers-limit",
    );
    expect(headingSlug("Citrix Analytics → S3 collector")).toBe("citrix-analytics--s3-collector");
    expect(headingSlug("`S3_PREFIX` and [links](x.md)")).toBe("s3_prefix-and-links");
    expect([...headingAnchors("# A\n\n## A\n\n```\n# not a heading\n```\n")]).toEqual(["a", "a-1"]);
  });

  it("reports a wide line, a missing file and a missing heading, and ignores links in code", () => {
    expect(
      wideLines("x.md", `short\n${"y".repeat(MAX_LINE_WIDTH)}\n${"z".repeat(MAX_LINE_WIDTH + 1)}`),
    ).toEqual([`x.md:3 (${MAX_LINE_WIDTH + 1} characters)`]);
    const markdown = [
      "# Here",
      "[ok](#here) [ok](docs/design.md) [web](https://example.com/nowhere.md) `[code](nowhere.md)`",
      "[gone](docs/nowhere.md) [lost](#nowhere) [lost elsewhere](docs/design.md#nowhere)",
      "```",
      "[fenced](nowhere.md)",
      "```",
    ].join("\n");
    expect(brokenLinks("README.md", markdown)).toEqual([
      "README.md: docs/nowhere.md (no such file)",
      "README.md: #nowhere (no such heading)",
      "README.md: docs/design.md#nowhere (no such heading)",
    ]);
  });
});
