// Unknown fields against a CRD's structural schema: found for
// fieldValidation=Strict/Warn, pruned otherwise (what kube-apiserver does for
// custom resources). Pure.
import { cloneJson } from "../store/common.js";
import type { JsonSchema } from "./kinds.js";
import { isPlainObject } from "./patch.js";

function sub(schema: JsonSchema | undefined, key: string): JsonSchema | undefined {
  const v = schema?.[key];
  return isPlainObject(v) ? v : undefined;
}

/** The object schema to walk: allOf/anyOf members of object type contribute their properties. */
function objectNode(schema: JsonSchema | undefined): JsonSchema | undefined {
  if (!schema) return undefined;
  if (schema["x-kubernetes-int-or-string"] === true) return undefined;
  const members = [
    ...((schema.allOf as JsonSchema[] | undefined) ?? []),
    ...((schema.anyOf as JsonSchema[] | undefined) ?? []),
  ];
  if (members.length === 0) return schema;
  const properties: Record<string, unknown> = { ...(sub(schema, "properties") ?? {}) };
  let open = schema["x-kubernetes-preserve-unknown-fields"] === true;
  let additional: unknown = schema.additionalProperties;
  for (const m of members) {
    if (!isPlainObject(m)) continue;
    Object.assign(properties, sub(m, "properties") ?? {});
    if (m["x-kubernetes-preserve-unknown-fields"] === true) open = true;
    if (m.additionalProperties !== undefined) additional = m.additionalProperties;
  }
  return {
    ...schema,
    properties,
    additionalProperties: additional,
    "x-kubernetes-preserve-unknown-fields": open,
  };
}

type Visit = (path: string, parent: Record<string, unknown>, key: string) => void;

function walk(
  schema: JsonSchema | undefined,
  value: unknown,
  path: string,
  onUnknown: Visit,
  root = false,
): void {
  const node = objectNode(schema);
  if (!node) return;
  if (Array.isArray(value)) {
    const items = sub(node, "items");
    value.forEach((item, i) => walk(items, item, `${path}[${i}]`, onUnknown));
    return;
  }
  if (!isPlainObject(value)) return;
  if (node["x-kubernetes-preserve-unknown-fields"] === true && !isPlainObject(node.properties)) return;
  const props = sub(node, "properties");
  const additional = node.additionalProperties;
  for (const key of Object.keys(value)) {
    const childPath = path === "" ? key : `${path}.${key}`;
    if (props && Object.prototype.hasOwnProperty.call(props, key)) {
      walk(sub(props, key), value[key], childPath, onUnknown);
    } else if (isPlainObject(additional)) {
      walk(additional, value[key], `${path}[${key}]`, onUnknown);
    } else if (additional === true || node["x-kubernetes-preserve-unknown-fields"] === true) {
      continue;
    } else if (root && (key === "apiVersion" || key === "kind" || key === "metadata")) {
      continue;
    } else if (props || additional === false) {
      onUnknown(childPath, value, key);
    }
    // An object schema with neither properties nor additionalProperties says nothing: keep.
  }
}

/** Paths of fields the schema does not declare, e.g. `spec.replica`. */
export function unknownFields(schema: JsonSchema, obj: unknown): string[] {
  const found: string[] = [];
  walk(schema, obj, "", (path) => found.push(path), true);
  return found;
}

/** A copy without the fields the schema does not declare. */
export function pruneUnknown<T>(schema: JsonSchema, obj: T): T {
  const copy = cloneJson(obj);
  walk(schema, copy, "", (_path, parent, key) => delete parent[key], true);
  return copy;
}
