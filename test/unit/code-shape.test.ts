import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// The code stays changeable in small steps (issue 20): no module imports itself through others (type imports
// included, as they tie the modules' changes together as much), and no function in functions/ runs longer
// than MAX_FUNCTION_LINES, so each says one thing under a name.

const ROOT = path.join(__dirname, "..", "..");
const SOURCE_FOLDERS = ["functions", "stand-ins", "local", "cli", "bench", "test"];
const MAX_FUNCTION_LINES = 60;

/** The TypeScript files under `folder`, relative to the repository root. */
function sourceFiles(folder: string): string[] {
  const found: string[] = [];
  const walk = (relative: string) => {
    for (const entry of readdirSync(path.join(ROOT, relative), { withFileTypes: true })) {
      const child = `${relative}/${entry.name}`;
      if (entry.isDirectory()) walk(child);
      else if (/\.m?ts$/.test(entry.name) && !entry.name.endsWith(".d.ts")) found.push(child);
    }
  };
  walk(folder);
  return found;
}

function parse(file: string, text = readFileSync(path.join(ROOT, file), "utf8")): ts.SourceFile {
  return ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
}

/** The project files `source` imports or re-exports by a relative path, types included. */
function relativeImports(source: ts.SourceFile): string[] {
  const imported: string[] = [];
  const resolve = (specifier: string) => {
    if (!specifier.startsWith(".")) return;
    const base = path.posix.join(path.posix.dirname(source.fileName), specifier);
    const file = [`${base}.ts`, `${base}.mts`, `${base}/index.ts`, base].find(
      (candidate) => existsSync(path.join(ROOT, candidate)) && statSync(path.join(ROOT, candidate)).isFile(),
    );
    if (file) imported.push(file);
  };
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      if (ts.isStringLiteral(node.moduleSpecifier)) resolve(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [specifier] = node.arguments;
      if (specifier && ts.isStringLiteral(specifier)) resolve(specifier.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      if (ts.isStringLiteral(node.argument.literal)) resolve(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return imported;
}

/** Circles of imports in `graph`, as the modules along each: one at least wherever there is any (depth-first). */
function importCircles(graph: Map<string, string[]>): string[][] {
  const circles: string[][] = [];
  const done = new Set<string>();
  const trail: string[] = [];
  const visit = (module: string) => {
    const onTrail = trail.indexOf(module);
    if (onTrail >= 0) {
      circles.push(trail.slice(onTrail));
      return;
    }
    if (done.has(module)) return;
    trail.push(module);
    for (const imported of graph.get(module) ?? []) visit(imported);
    trail.pop();
    done.add(module);
  };
  for (const module of graph.keys()) visit(module);
  return circles;
}

/** Every function with a body in `source` longer than `maxLines`, as "<file> <name> (<lines> lines)". */
function longFunctions(source: ts.SourceFile, maxLines: number): string[] {
  const long: string[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const first = source.getLineAndCharacterOfPosition(node.getStart()).line;
      const lines = source.getLineAndCharacterOfPosition(node.end).line - first + 1;
      if (lines > maxLines) long.push(`${source.fileName} ${functionName(node)} (${lines} lines)`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return long;
}

function functionName(node: ts.SignatureDeclaration): string {
  if (ts.isConstructorDeclaration(node)) return "constructor";
  if (node.name) return node.name.getText();
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)) return parent.name.getText();
  return `<function at line ${node.getSourceFile().getLineAndCharacterOfPosition(node.getStart()).line + 1}>`;
}

describe("import circles", () => {
  it("are found, type imports included", () => {
    const files = new Map([
      ["a.ts", 'import type { B } from "./b";'],
      ["b.ts", 'export { c } from "./c";'],
      ["c.ts", 'const a = () => import("./a");'],
      ["d.ts", 'import { a } from "./a";'],
    ]);
    const graph = new Map(
      [...files].map(([name, text]) => [
        name,
        [...text.matchAll(/"\.\/(\w)"/g)].map((match) => `${match[1]}.ts`),
      ]),
    );
    expect(importCircles(graph)).toEqual([["a.ts", "b.ts", "c.ts"]]);
    expect(relativeImports(parse("local/x.ts", 'import type { A } from "./asl-definition";'))).toEqual([
      "local/asl-definition.ts",
    ]);
  });

  it("run through no modules of the project", () => {
    const graph = new Map<string, string[]>();
    for (const file of SOURCE_FOLDERS.flatMap(sourceFiles)) graph.set(file, relativeImports(parse(file)));
    expect(graph.size).toBeGreaterThan(100);
    expect(importCircles(graph).map((circle) => circle.join(" → "))).toEqual([]);
  });
});

describe(`functions in functions/ over ${MAX_FUNCTION_LINES} lines`, () => {
  it("are found, methods and arrow functions included", () => {
    const body = Array.from({ length: MAX_FUNCTION_LINES }, (_, line) => `  const v${line} = ${line};`).join(
      "\n",
    );
    const source = parse("functions/x.ts", `class C {\n  m() {\n${body}\n  }\n}\nconst f = () => 1;\n`);
    expect(longFunctions(source, MAX_FUNCTION_LINES)).toEqual([
      `functions/x.ts m (${MAX_FUNCTION_LINES + 2} lines)`,
    ]);
  });

  it("are none", () => {
    const long = sourceFiles("functions").flatMap((file) => longFunctions(parse(file), MAX_FUNCTION_LINES));
    expect(long).toEqual([]);
  });
});
