// parseX(input: unknown): Result<X> for every message and resource. A parse
// copies the input to plain JSON (json.ts), applies schema defaults (as the
// Kubernetes API does for CRDs), checks the TypeBox schema and the semantic
// rules (rules.ts), and returns the typed copy or every cause it found. It
// never throws.
import type { Static, TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { TypeCheck } from "@sinclair/typebox/compiler";
import { ValueErrorType } from "@sinclair/typebox/errors";
import type { ValueError } from "@sinclair/typebox/errors";
import { Value } from "@sinclair/typebox/value";
import { MAX_CAUSES, ValidationError, fail, ok } from "./errors.js";
import type { CauseReason, FieldCause, Result } from "./errors.js";
import { toPlainJson } from "./json.js";
import type { JsonValue, PathCause, Segments } from "./json.js";
import * as rules from "./rules.js";
import type { Rule } from "./rules.js";
import * as S from "./schema/index.js";

export type Parser<T> = (input: unknown) => Result<T>;

interface ParserSpec<T extends TSchema> {
  readonly name: string;
  readonly schema: T;
  readonly rules: Rule;
}

/** Builds a parser; the schema is compiled on first use so importing stays cheap. */
export function makeParser<T extends TSchema>(spec: ParserSpec<T>): Parser<Static<T>> {
  let compiled: TypeCheck<T> | undefined;
  const check = (): TypeCheck<T> => (compiled ??= TypeCompiler.Compile(spec.schema));
  return (input: unknown): Result<Static<T>> => {
    try {
      return parseWith(spec, check(), input);
    } catch (err) {
      // Only reachable through a bug here; the promise "never throws" still holds.
      const message = `internal validation failure: ${err instanceof Error ? err.message : String(err)}`;
      return fail(
        new ValidationError(spec.name, [{ field: "<internal>", reason: "FieldValueInvalid", message }]),
      );
    }
  };
}

function parseWith<T extends TSchema>(
  spec: ParserSpec<T>,
  check: TypeCheck<T>,
  input: unknown,
): Result<Static<T>> {
  const plain = toPlainJson(input);
  if (plain.value === undefined) {
    const causes = plain.causes.map((c) => ({
      field: "",
      reason: "FieldValueTypeInvalid" as const,
      message: c.message,
    }));
    return fail(
      new ValidationError(spec.name, causes.length > 0 ? causes : [rootTypeCause(spec.schema, input)]),
    );
  }
  let value: JsonValue = plain.value;
  try {
    value = Value.Default(spec.schema, value) as JsonValue;
  } catch {
    // Defaults are a convenience; a value too broken to default is refused below anyway.
  }
  const ruleCauses = rules.runRule(spec.rules, value);
  const schemaOk = check.Check(value);
  if (schemaOk && plain.causes.length === 0 && ruleCauses.length === 0) return ok(value as Static<T>);

  const schemaCauses = schemaOk ? [] : collectSchemaCauses(check, value);
  const dropped = plain.causes.map((c) => c.path);
  const underDropped = (path: Segments) => dropped.some((d) => isPrefix(d, path));
  const all: PathCause[] = [
    ...ruleCauses,
    ...plain.causes,
    ...schemaCauses.filter((c) => !underDropped(c.path)),
  ];
  const required = new Set(all.filter((c) => c.reason === "FieldValueRequired").map((c) => key(c.path)));
  const seen = new Set<string>();
  const causes: FieldCause[] = [];
  let truncated = false;
  for (const c of all) {
    const k = key(c.path);
    // A missing field also fails its type check; "required" says it better.
    if (required.has(k) && c.reason !== "FieldValueRequired") continue;
    const field = fieldPath(spec.schema, c.path);
    const dedupe = `${field}\u0000${c.reason}`;
    if (seen.has(dedupe)) continue;
    seen.add(dedupe);
    if (causes.length >= MAX_CAUSES) {
      truncated = true;
      break;
    }
    causes.push({ field, reason: c.reason, message: c.message });
  }
  return fail(new ValidationError(spec.name, causes, truncated));
}

function rootTypeCause(schema: TSchema, input: unknown): FieldCause {
  return {
    field: "",
    reason: "FieldValueTypeInvalid",
    message: `must be of type ${String(schema.type ?? "object")}, got ${input === null ? "null" : typeof input}`,
  };
}

const key = (path: Segments) => JSON.stringify(path);
const isPrefix = (prefix: Segments, path: Segments) =>
  prefix.length <= path.length && prefix.every((seg, i) => String(seg) === String(path[i]));

function pointerToSegments(pointer: string): string[] {
  if (pointer === "") return [];
  return pointer
    .split("/")
    .slice(1)
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function collectSchemaCauses(check: TypeCheck<TSchema>, value: JsonValue): PathCause[] {
  const out: PathCause[] = [];
  for (const error of check.Errors(value)) {
    out.push(...explain(error));
    if (out.length > MAX_CAUSES * 2) break;
  }
  return out;
}

const TYPE_ERRORS = new Map<ValueErrorType, string>([
  [ValueErrorType.Array, "array"],
  [ValueErrorType.Boolean, "boolean"],
  [ValueErrorType.Integer, "integer"],
  [ValueErrorType.Number, "number"],
  [ValueErrorType.Object, "object"],
  [ValueErrorType.String, "string"],
  [ValueErrorType.Null, "null"],
]);

/** One TypeBox error as causes with Kubernetes reasons and plain messages. */
function explain(error: ValueError): PathCause[] {
  const path = pointerToSegments(error.path);
  const schema = error.schema as TSchema & Record<string, unknown>;
  const custom = typeof schema.errorMessage === "string" ? schema.errorMessage : undefined;
  const got = show(error.value);
  const cause = (reason: CauseReason, message: string): PathCause[] => [{ path, reason, message }];
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return cause("FieldValueRequired", "Required value");
    case ValueErrorType.ObjectAdditionalProperties:
      return cause(
        "FieldValueForbidden",
        `unknown field ${JSON.stringify(String(path[path.length - 1] ?? ""))}`,
      );
    case ValueErrorType.Integer:
      if (typeof error.value === "number")
        return cause("FieldValueInvalid", `must be an integer, got ${got}`);
      return cause("FieldValueTypeInvalid", `must be of type integer, got ${typeName(error.value)}`);
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return cause(
        "FieldValueInvalid",
        `must be greater than or equal to ${String(schema.minimum)}, got ${got}`,
      );
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return cause(
        "FieldValueInvalid",
        `must be less than or equal to ${String(schema.maximum)}, got ${got}`,
      );
    case ValueErrorType.StringMaxLength:
      return cause(
        "FieldValueTooLong",
        custom ?? `may not be longer than ${String(schema.maxLength)} characters`,
      );
    case ValueErrorType.StringMinLength:
      if (error.value === "")
        return cause("FieldValueRequired", custom ? `must not be empty; ${custom}` : "must not be empty");
      return cause("FieldValueInvalid", custom ?? `must be at least ${String(schema.minLength)} characters`);
    case ValueErrorType.StringPattern:
    case ValueErrorType.StringFormat:
      return cause(
        "FieldValueInvalid",
        `${custom ?? `must match ${String(schema.pattern ?? schema.format)}`}, got ${got}`,
      );
    case ValueErrorType.ArrayMaxItems:
      return cause("FieldValueTooMany", `must have at most ${String(schema.maxItems)} items`);
    case ValueErrorType.ArrayMinItems:
      if (Array.isArray(error.value) && error.value.length === 0)
        return cause("FieldValueRequired", "must not be empty");
      return cause("FieldValueInvalid", `must have at least ${String(schema.minItems)} items`);
    case ValueErrorType.ArrayUniqueItems:
      return cause("FieldValueDuplicate", "must not contain duplicates");
    case ValueErrorType.Literal:
      return cause("FieldValueNotSupported", `supported values: ${JSON.stringify(schema.const)}, got ${got}`);
    case ValueErrorType.Union:
      return explainUnion(error, path, schema);
    default: {
      const typeName_ = TYPE_ERRORS.get(error.type);
      if (typeName_)
        return cause("FieldValueTypeInvalid", `must be of type ${typeName_}, got ${typeName(error.value)}`);
      return cause("FieldValueInvalid", custom ?? error.message);
    }
  }
}

function explainUnion(
  error: ValueError,
  path: string[],
  schema: TSchema & Record<string, unknown>,
): PathCause[] {
  const members = Array.isArray(schema.anyOf) ? (schema.anyOf as Record<string, unknown>[]) : [];
  if (members.length > 0 && members.every((m) => "const" in m)) {
    const supported = members.map((m) => JSON.stringify(m.const)).join(", ");
    return [
      {
        path,
        reason: "FieldValueNotSupported",
        message: `supported values: ${supported}, got ${show(error.value)}`,
      },
    ];
  }
  if (schema["x-kubernetes-int-or-string"] === true) {
    const index = typeof error.value === "number" ? 0 : typeof error.value === "string" ? 1 : -1;
    const member = index >= 0 ? error.errors[index] : undefined;
    if (member) {
      const inner: PathCause[] = [];
      for (const e of member) inner.push(...explain(e));
      if (inner.length > 0) return inner;
    }
    return [
      {
        path,
        reason: "FieldValueTypeInvalid",
        message: `must be an integer or a string, got ${typeName(error.value)}`,
      },
    ];
  }
  return [
    {
      path,
      reason: "FieldValueInvalid",
      message: `does not match any allowed form, got ${show(error.value)}`,
    },
  ];
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? typeName(value);
  } catch {
    text = typeName(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * A Kubernetes field path for JSON pointer segments, walking the schema to
 * tell struct fields (`.name`) from list items (`[0]`) and map keys (`[key]`):
 * `spec.template.spec.containers[0].image`, `metadata.labels[app]`.
 */
export function fieldPath(schema: TSchema, path: Segments): string {
  let node: Record<string, unknown> | undefined = schema as Record<string, unknown>;
  let out = "";
  const field = (seg: string) => {
    // Names that would read as path syntax (or as nothing) are quoted: [""], ["a.b"].
    if (!PLAIN_NAME.test(seg)) out += `[${JSON.stringify(seg)}]`;
    else out += out === "" ? seg : `.${seg}`;
  };
  const mapKey = (seg: string) => {
    out += seg === "" || /[[\]]/.test(seg) ? `[${JSON.stringify(seg)}]` : `[${seg}]`;
  };
  for (const raw of path) {
    const seg = String(raw);
    const n = resolveUnion(node);
    const props = n?.properties as Record<string, Record<string, unknown>> | undefined;
    if (n?.type === "array" && /^[0-9]+$/.test(seg)) {
      out += `[${seg}]`;
      node = n.items as Record<string, unknown> | undefined;
    } else if (props && Object.prototype.hasOwnProperty.call(props, seg)) {
      field(seg);
      node = props[seg];
    } else if (n?.patternProperties && typeof n.patternProperties === "object") {
      mapKey(seg);
      node = Object.values(n.patternProperties as Record<string, Record<string, unknown>>)[0];
    } else if (/^[0-9]+$/.test(seg) && typeof raw === "number") {
      out += `[${seg}]`;
      node = undefined;
    } else {
      field(seg);
      node = undefined;
    }
  }
  return out;
}

const PLAIN_NAME = /^[^.[\]\s"]+$/;

function resolveUnion(node: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!node || !Array.isArray(node.anyOf)) return node;
  const members = node.anyOf as Record<string, unknown>[];
  return members.find((m) => m.type === "object" || m.type === "array") ?? node;
}

// ------------------------------------------------------------ the parsers ---

export const parseTask = makeParser({ name: "Task", schema: S.Task, rules: rules.taskRules });
export const parseBid = makeParser({ name: "Bid", schema: S.Bid, rules: rules.bidRules });
export const parseLease = makeParser({ name: "Lease", schema: S.Lease, rules: rules.leaseRules });
export const parseEvent = makeParser({ name: "Event", schema: S.Event, rules: rules.eventRules });
export const parseHeartbeat = makeParser({ name: "Heartbeat", schema: S.Heartbeat, rules: rules.noRules });
export const parseNodeStatus = makeParser({
  name: "NodeStatus",
  schema: S.NodeStatus,
  rules: rules.nodeStatusRules,
});
export const parseProviderRecord = makeParser({
  name: "ProviderRecord",
  schema: S.ProviderRecord,
  rules: rules.noRules,
});
export const parseRemoveRequest = makeParser({
  name: "RemoveRequest",
  schema: S.RemoveRequest,
  rules: rules.noRules,
});
export const parseEnvelope = makeParser({ name: "Envelope", schema: S.Envelope, rules: rules.noRules });

export const parseBeemeshDeployment = makeParser({
  name: "BeemeshDeployment",
  schema: S.BeemeshDeployment,
  rules: rules.deploymentRules,
});
export const parseBeemeshStatefulSet = makeParser({
  name: "BeemeshStatefulSet",
  schema: S.BeemeshStatefulSet,
  rules: rules.statefulSetRules,
});
export const parseBeemeshDeploymentList = makeParser({
  name: "BeemeshDeploymentList",
  schema: S.BeemeshDeploymentList,
  rules: rules.listRules(rules.deploymentRules),
});
export const parseBeemeshStatefulSetList = makeParser({
  name: "BeemeshStatefulSetList",
  schema: S.BeemeshStatefulSetList,
  rules: rules.listRules(rules.statefulSetRules),
});

/** Message types and their payload parsers, for the bus (Envelope.type). */
export const MESSAGE_PARSERS = {
  Task: parseTask,
  Bid: parseBid,
  Lease: parseLease,
  Event: parseEvent,
  Heartbeat: parseHeartbeat,
  NodeStatus: parseNodeStatus,
  ProviderRecord: parseProviderRecord,
  RemoveRequest: parseRemoveRequest,
} as const;
export type MessageType = keyof typeof MESSAGE_PARSERS;
export type MessageOf<K extends MessageType> = Static<(typeof S)[K]>;

export function isMessageType(type: string): type is MessageType {
  return Object.prototype.hasOwnProperty.call(MESSAGE_PARSERS, type);
}

export type Workload = S.BeemeshDeployment | S.BeemeshStatefulSet;

/** Parses either resource kind by its `kind` field. */
export function parseWorkload(input: unknown): Result<Workload> {
  let kind: unknown;
  try {
    kind =
      typeof input === "object" && input !== null && !Array.isArray(input)
        ? (input as { kind?: unknown }).kind
        : undefined;
  } catch {
    kind = undefined;
  }
  if (kind === "BeemeshStatefulSet") return parseBeemeshStatefulSet(input);
  if (kind === "BeemeshDeployment") return parseBeemeshDeployment(input);
  const cause: FieldCause =
    typeof input === "object" && input !== null && !Array.isArray(input)
      ? {
          field: "kind",
          reason: kind === undefined ? "FieldValueRequired" : "FieldValueNotSupported",
          message: `supported values: "BeemeshDeployment", "BeemeshStatefulSet", got ${show(kind)}`,
        }
      : {
          field: "",
          reason: "FieldValueTypeInvalid",
          message: `must be of type object, got ${typeName(input)}`,
        };
  return fail(new ValidationError("workload", [cause]));
}
