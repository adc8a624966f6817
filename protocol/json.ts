// Turns any JavaScript value into a fresh tree of plain JSON values before a
// schema looks at it, so validation never throws and the parsed result shares
// nothing with the caller's object: cycles, getters that throw, class
// instances, non-finite numbers and `__proto__` keys become causes instead.
import type { CauseReason } from "./errors.js";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A field path as JSON pointer segments (object keys and array indexes). */
export type Segments = readonly (string | number)[];

export interface PathCause {
  readonly path: Segments;
  readonly reason: CauseReason;
  readonly message: string;
}

export interface JsonLimits {
  /** Deepest nesting accepted (the root is depth 0). */
  readonly maxDepth: number;
  /** Most values (objects, arrays and scalars together) accepted in one input. */
  readonly maxNodes: number;
}

export const DEFAULT_JSON_LIMITS: JsonLimits = { maxDepth: 64, maxNodes: 1_000_000 };

/** Keys that would change an object's prototype if assigned. */
const FORBIDDEN_KEYS = new Set(["__proto__"]);

export interface PlainJsonResult {
  /** The copy; parts that could not be copied are left out. Undefined when the root itself could not. */
  readonly value: JsonValue | undefined;
  readonly causes: PathCause[];
}

/**
 * Copies `input` as plain JSON. Object properties whose value is `undefined`
 * are dropped (as JSON.stringify does); everything else that JSON cannot hold
 * is reported with its path.
 */
export function toPlainJson(input: unknown, limits: JsonLimits = DEFAULT_JSON_LIMITS): PlainJsonResult {
  const causes: PathCause[] = [];
  const ancestors = new Set<object>();
  let nodes = 0;
  let tooLarge = false;

  const refuse = (path: Segments, reason: CauseReason, message: string): undefined => {
    causes.push({ path: [...path], reason, message });
    return undefined;
  };

  const copy = (value: unknown, path: (string | number)[]): JsonValue | undefined => {
    if (tooLarge) return undefined;
    nodes += 1;
    if (nodes > limits.maxNodes) {
      tooLarge = true;
      return refuse(path, "FieldValueTooMany", `input has more than ${limits.maxNodes} values`);
    }
    switch (typeof value) {
      case "string":
      case "boolean":
        return value;
      case "number":
        if (!Number.isFinite(value))
          return refuse(path, "FieldValueInvalid", `${String(value)} is not a JSON number`);
        return value === 0 ? 0 : value; // -0 has no JSON spelling
      case "undefined":
        return refuse(path, "FieldValueTypeInvalid", "undefined is not a JSON value");
      case "bigint":
      case "symbol":
      case "function":
        return refuse(path, "FieldValueTypeInvalid", `a ${typeof value} is not a JSON value`);
      default:
        break;
    }
    if (value === null) return null;
    const obj = value as object;
    if (path.length > limits.maxDepth) {
      return refuse(path, "FieldValueInvalid", `nested more than ${limits.maxDepth} levels deep`);
    }
    if (ancestors.has(obj)) return refuse(path, "FieldValueInvalid", "circular reference");
    ancestors.add(obj);
    try {
      if (Array.isArray(obj)) return copyArray(obj as unknown[], path);
      const proto: unknown = Object.getPrototypeOf(obj);
      if (proto !== Object.prototype && proto !== null) {
        return refuse(path, "FieldValueTypeInvalid", "must be a plain JSON object");
      }
      return copyObject(obj as Record<string, unknown>, path);
    } catch (err) {
      // Proxies and getters can throw anywhere; the input is then unreadable here.
      return refuse(path, "FieldValueInvalid", `unreadable value: ${describe(err)}`);
    } finally {
      ancestors.delete(obj);
    }
  };

  const copyArray = (arr: readonly unknown[], path: (string | number)[]): JsonValue[] => {
    const out: JsonValue[] = [];
    const length = arr.length;
    for (let i = 0; i < length && !tooLarge; i++) {
      path.push(i);
      const item = readIndex(arr, i, path);
      if (item.ok) {
        const copied = copy(item.value, path);
        // Keep indexes stable so later causes point at the right item.
        out.push(copied === undefined ? null : copied);
      } else {
        out.push(null);
      }
      path.pop();
    }
    return out;
  };

  const copyObject = (
    obj: Record<string, unknown>,
    path: (string | number)[],
  ): { [key: string]: JsonValue } => {
    const out: { [key: string]: JsonValue } = {};
    for (const key of Object.keys(obj)) {
      if (tooLarge) break;
      path.push(key);
      if (FORBIDDEN_KEYS.has(key)) {
        refuse(path, "FieldValueForbidden", `key ${JSON.stringify(key)} is not allowed`);
      } else {
        const item = readKey(obj, key, path);
        if (item.ok && item.value !== undefined) {
          const copied = copy(item.value, path);
          if (copied !== undefined) out[key] = copied;
        }
      }
      path.pop();
    }
    return out;
  };

  const readIndex = (
    arr: readonly unknown[],
    i: number,
    path: Segments,
  ): { ok: boolean; value?: unknown } => {
    try {
      return { ok: true, value: arr[i] };
    } catch (err) {
      refuse(path, "FieldValueInvalid", `unreadable value: ${describe(err)}`);
      return { ok: false };
    }
  };

  const readKey = (
    obj: Record<string, unknown>,
    key: string,
    path: Segments,
  ): { ok: boolean; value?: unknown } => {
    try {
      return { ok: true, value: obj[key] };
    } catch (err) {
      refuse(path, "FieldValueInvalid", `unreadable value: ${describe(err)}`);
      return { ok: false };
    }
  };

  let value: JsonValue | undefined;
  try {
    value = copy(input, []);
  } catch (err) {
    // Last line of defence (e.g. a stack overflow from a pathological proxy).
    refuse([], "FieldValueTypeInvalid", `unreadable input: ${describe(err)}`);
    value = undefined;
  }
  return { value, causes };
}

function describe(err: unknown): string {
  try {
    return err instanceof Error ? err.message : String(err);
  } catch {
    return "unknown error";
  }
}
