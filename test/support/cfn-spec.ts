import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { loadAwsServiceSpecSync } from "@aws-cdk/aws-service-spec";
import type { Property, PropertyType } from "@aws-cdk/service-spec-types";

/**
 * An offline check of a CloudFormation template against AWS's published resource specification (the
 * database `@aws-cdk/aws-service-spec` ships, built from the CloudFormation registry schemas): what
 * `serverless package` does not check and CloudFormation would reject only at deploy time.
 */
export type CloudFormationSpec = ReturnType<typeof loadAwsServiceSpecSync>;

export interface Template {
  Resources: Record<string, TemplateResource>;
  Parameters?: Record<string, unknown>;
  Conditions?: Record<string, unknown>;
  Outputs?: Record<string, unknown>;
  [section: string]: unknown;
}

export interface TemplateResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Condition?: string;
  DependsOn?: string | string[];
  [attribute: string]: unknown;
}

/** Loads the specification (about two seconds: a 200 MB JSON database). */
export function loadCloudFormationSpec(): CloudFormationSpec {
  return loadAwsServiceSpecSync();
}

/** What packages each directory the deployment tests read: `npm test` runs both before vitest. */
const PACKAGE_SCRIPTS: Record<string, string> = {
  ".serverless": "npm run package",
  ".serverless-variant": "npm run package:variant",
};

/**
 * The template `serverless package` wrote into `directory` (relative to the project). Missing, the error says
 * which script makes it: these tests read what the project's own scripts packaged, not a package of other settings.
 */
export function readPackagedTemplate(directory: string): Template {
  const file = path.join(__dirname, "..", "..", directory, "cloudformation-template-update-stack.json");
  if (!existsSync(file)) {
    throw new Error(
      `no packaged template in ${directory}/: run \`${PACKAGE_SCRIPTS[directory] ?? "npm run package"}\` first (npm test packages both before it runs vitest)`,
    );
  }
  return JSON.parse(readFileSync(file, "utf8")) as Template;
}

const RESOURCE_ATTRIBUTES = new Set([
  "Type",
  "Properties",
  "Condition",
  "DependsOn",
  "DeletionPolicy",
  "UpdateReplacePolicy",
  "UpdatePolicy",
  "CreationPolicy",
  "Metadata",
]);

const PSEUDO_PARAMETERS = new Set([
  "AWS::AccountId",
  "AWS::NotificationARNs",
  "AWS::NoValue",
  "AWS::Partition",
  "AWS::Region",
  "AWS::StackId",
  "AWS::StackName",
  "AWS::URLSuffix",
]);

/** What an intrinsic function evaluates to, as far as the template tells without deploying it. */
const INTRINSIC_RESULTS: Record<string, "string" | "list" | "unknown"> = {
  "Fn::Join": "string",
  "Fn::Sub": "string",
  "Fn::Base64": "string",
  "Fn::GetAZs": "list",
  "Fn::Split": "list",
  "Fn::Cidr": "list",
  "Fn::GetAtt": "unknown",
  "Fn::Select": "unknown",
  "Fn::FindInMap": "unknown",
  "Fn::ImportValue": "unknown",
  "Fn::Length": "unknown",
  "Fn::ToJsonString": "string",
  "Fn::Transform": "unknown",
  // Fn::If is checked branch by branch, Ref by what it names.
};

/**
 * Every way `template` breaks the specification, one line each naming where; empty when it conforms:
 * resource types that do not exist, property names a type does not have, values of the wrong kind
 * (string, number, boolean, list, object; intrinsic functions allowed where their result fits), missing
 * required properties, and references (Ref, Fn::GetAtt, Fn::Sub, Fn::If, Condition, DependsOn) to
 * resources, attributes, parameters or conditions the template does not have.
 */
export function specViolations(template: Template, spec: CloudFormationSpec): string[] {
  const problems: string[] = [];
  const resources = template.Resources;
  const conditions = new Set(Object.keys(template.Conditions ?? {}));
  const parameters = new Set(Object.keys(template.Parameters ?? {}));

  /** A resource's Ref is its identifier, a string; a parameter's is what its type says. */
  const refResult = (name: string): "string" | "list" | "unknown" => {
    if (name in resources) return "string";
    if (name === "AWS::NotificationARNs") return "list";
    if (PSEUDO_PARAMETERS.has(name)) return "string";
    const parameterType = (template.Parameters?.[name] as { Type?: string } | undefined)?.Type;
    if (parameterType === undefined) return "unknown";
    return parameterType === "CommaDelimitedList" || parameterType.startsWith("List<") ? "list" : "string";
  };
  const resourceType = (type: string) => spec.lookup("resource", "cloudFormationType", "equals", type)[0];

  /** Problems of `value` against one of `types` (the current type and the ones it replaced). */
  const checkValue = (at: string, value: unknown, types: PropertyType[], owner: string): string[] => {
    const intrinsic = intrinsicOf(value);
    if (intrinsic) {
      const [name, argument] = intrinsic;
      if (name === "Fn::If" && Array.isArray(argument)) {
        return [1, 2].flatMap((branch) =>
          isNoValue(argument[branch])
            ? []
            : checkValue(`${at}.Fn::If[${branch}]`, argument[branch], types, owner),
        );
      }
      const result = name === "Ref" ? refResult(String(argument)) : INTRINSIC_RESULTS[name];
      if (result === undefined) return [`${at}: ${name} is not an intrinsic function`];
      if (result === "unknown" || types.some((type) => accepts(type, result))) return [];
      return [`${at}: ${name} gives a ${result}, expected ${describe(types)}`];
    }
    let closest: string[] | undefined;
    for (const type of types) {
      const found = checkOne(at, value, type, owner);
      if (found === undefined) continue;
      if (found.length === 0) return [];
      closest ??= found;
    }
    return closest ?? [`${at}: expected ${describe(types)}, got ${kindOf(value)}`];
  };

  /** Problems of `value` against `type`; undefined when `value` is not even of that kind. */
  const checkOne = (at: string, value: unknown, type: PropertyType, owner: string): string[] | undefined => {
    switch (type.type) {
      case "string":
      case "date-time":
        if (!["string", "number", "boolean"].includes(typeof value)) return undefined;
        if (type.type === "string" && type.allowedValues && !type.allowedValues.includes(String(value)))
          return [`${at}: ${JSON.stringify(value)} is not one of ${type.allowedValues.join(", ")}`];
        return [];
      case "number":
        return typeof value === "number" || (typeof value === "string" && NUMBER.test(value))
          ? []
          : undefined;
      case "integer":
        return Number.isInteger(value) || (typeof value === "string" && /^-?\d+$/.test(value))
          ? []
          : undefined;
      case "boolean":
        return typeof value === "boolean" || value === "true" || value === "false" ? [] : undefined;
      case "json":
        return [];
      case "null":
        return value === null ? [] : undefined;
      case "tag":
        return isPlainObject(value) ? checkObject(at, value, TAG_PROPERTIES, "Tag") : undefined;
      case "array":
        if (!Array.isArray(value)) return undefined;
        return value.flatMap((element, index) =>
          isNoValue(element) ? [] : checkValue(`${at}[${index}]`, element, [type.element], owner),
        );
      case "map":
        if (!isPlainObject(value)) return undefined;
        return Object.entries(value).flatMap(([key, element]) =>
          checkValue(`${at}.${key}`, element, [type.element], owner),
        );
      case "ref": {
        if (!isPlainObject(value)) return undefined;
        const definition = spec.get("typeDefinition", type.reference);
        const resourceName = owner.split(".")[0];
        return checkObject(at, value, definition.properties, `${resourceName}.${definition.name}`);
      }
      case "union":
        return checkValue(at, value, type.types, owner);
    }
  };

  const checkObject = (
    at: string,
    value: Record<string, unknown>,
    properties: Record<string, Property>,
    owner: string,
  ): string[] => {
    const found: string[] = [];
    for (const [name, propertyValue] of Object.entries(value)) {
      const property = properties[name];
      if (!property) found.push(`${at}.${name}: not a property of ${owner}`);
      else if (!isNoValue(propertyValue))
        found.push(
          ...checkValue(
            `${at}.${name}`,
            propertyValue,
            [property.type, ...(property.previousTypes ?? [])],
            owner,
          ),
        );
    }
    for (const [name, property] of Object.entries(properties)) {
      if (property.required && (value[name] === undefined || isNoValue(value[name])))
        found.push(`${at}: ${owner} requires ${name}`);
    }
    return found;
  };

  for (const [id, resource] of Object.entries(resources)) {
    const at = `Resources.${id}`;
    for (const key of Object.keys(resource)) {
      if (!RESOURCE_ATTRIBUTES.has(key)) problems.push(`${at}.${key}: not a resource attribute`);
    }
    if (resource.Condition !== undefined && !conditions.has(resource.Condition))
      problems.push(`${at}.Condition: no condition ${resource.Condition}`);
    for (const dependency of [resource.DependsOn ?? []].flat()) {
      if (!(dependency in resources)) problems.push(`${at}.DependsOn: no resource ${dependency}`);
    }
    const type = resourceType(resource.Type);
    if (!type) {
      problems.push(`${at}.Type: ${resource.Type} is not a CloudFormation resource type`);
      continue;
    }
    problems.push(
      ...checkObject(`${at}.Properties`, resource.Properties ?? {}, type.properties, resource.Type),
    );
  }

  // References, wherever they are.
  const checkRef = (at: string, name: string, variables: Set<string>) => {
    if (!(name in resources || parameters.has(name) || PSEUDO_PARAMETERS.has(name) || variables.has(name)))
      problems.push(`${at}: Ref to ${name}, which the template does not define`);
  };
  const checkGetAtt = (at: string, id: string, attribute: string) => {
    const resource = resources[id];
    if (!resource) problems.push(`${at}: Fn::GetAtt of ${id}, which the template does not define`);
    else {
      const type = resourceType(resource.Type);
      if (type && !(attribute in type.attributes))
        problems.push(`${at}: ${resource.Type} has no attribute ${attribute}`);
    }
  };
  const walk = (at: string, value: unknown, variables: Set<string>): void => {
    if (Array.isArray(value)) {
      value.forEach((element, index) => {
        walk(`${at}[${index}]`, element, variables);
      });
      return;
    }
    if (!isPlainObject(value)) return;
    const intrinsic = intrinsicOf(value);
    if (intrinsic) {
      const [name, argument] = intrinsic;
      const inner = `${at}.${name}`;
      if (name === "Ref" && typeof argument === "string") checkRef(inner, argument, variables);
      if (name === "Fn::GetAtt") {
        const [id, ...attribute] =
          typeof argument === "string" ? argument.split(".") : (argument as string[]);
        checkGetAtt(inner, String(id), attribute.join("."));
      }
      if (name === "Fn::If" && Array.isArray(argument) && !conditions.has(String(argument[0])))
        problems.push(`${inner}: no condition ${String(argument[0])}`);
      if (name === "Fn::Sub") {
        const [text, substitutions] =
          typeof argument === "string" ? [argument, {}] : (argument as [string, object]);
        const names = new Set([...variables, ...Object.keys(substitutions)]);
        for (const [, reference] of text.matchAll(/\$\{([^!}][^}]*)\}/g)) {
          const [id, ...attribute] = String(reference).split(".");
          if (attribute.length > 0 && !names.has(String(reference)))
            checkGetAtt(inner, String(id), attribute.join("."));
          else checkRef(inner, String(reference), names);
        }
        walk(inner, substitutions, variables);
        return;
      }
    }
    for (const [key, element] of Object.entries(value)) walk(`${at}.${key}`, element, variables);
  };
  walk("Resources", resources, new Set());
  walk("Outputs", template.Outputs ?? {}, new Set());
  return problems;
}

const NUMBER = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;
const TAG_PROPERTIES: Record<string, Property> = {
  Key: { type: { type: "string" }, required: true },
  Value: { type: { type: "string" }, required: true },
};

/** `[name, argument]` when `value` is an intrinsic function call (an object with one Ref or Fn:: key). */
function intrinsicOf(value: unknown): [string, unknown] | undefined {
  if (!isPlainObject(value)) return undefined;
  const keys = Object.keys(value);
  const [name] = keys;
  if (keys.length !== 1 || name === undefined || !(name === "Ref" || name.startsWith("Fn::")))
    return undefined;
  return [name, value[name]];
}

function isNoValue(value: unknown): boolean {
  return isPlainObject(value) && value.Ref === "AWS::NoValue" && Object.keys(value).length === 1;
}

/** Whether a property of `type` takes an intrinsic's result of the given kind. */
function accepts(type: PropertyType, result: "string" | "list"): boolean {
  if (type.type === "json") return true;
  if (type.type === "union") return type.types.some((option) => accepts(option, result));
  if (result === "list") return type.type === "array";
  return ["string", "date-time", "number", "integer", "boolean"].includes(type.type);
}

function describe(types: PropertyType[]): string {
  const kinds = types.map((type): string => {
    if (type.type === "ref" || type.type === "map" || type.type === "tag") return "object";
    if (type.type === "array") return "list";
    if (type.type === "union") return describe(type.types);
    return type.type;
  });
  return [...new Set(kinds)].join(" or ");
}

function kindOf(value: unknown): string {
  if (Array.isArray(value)) return "a list";
  if (value === null) return "null";
  return typeof value === "object" ? "an object" : `${typeof value} ${JSON.stringify(value)}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
