import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

// The documentation stays readable in a terminal and its links lead somewhere: README.md and docs/*.md keep every
// line within MAX_LINE_WIDTH (Biome pads a table's rows to its widest cell, so a wide table fails here), and every
// relative link names a file that exists and, after a `#`, one of that file's headings.

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
