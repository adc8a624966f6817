// JSON merge patch (RFC 7386) and JSON patch (RFC 6902), on plain JSON. Pure.
import { cloneJson } from "../store/common.js";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export class PatchError extends Error {
  override name = "PatchError";
  constructor(message: string) {
    super(message);
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** RFC 7386: objects merge key by key, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return cloneJson(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

interface JsonPatchOp {
  op: string;
  path: string;
  from?: string;
  value?: unknown;
}

function parsePointer(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new PatchError(`invalid JSON pointer ${JSON.stringify(pointer)}`);
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function arrayIndex(arr: unknown[], token: string, forInsert: boolean): number {
  if (forInsert && token === "-") return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(`invalid array index ${JSON.stringify(token)}`);
  const i = Number(token);
  if (i > arr.length || (!forInsert && i === arr.length))
    throw new PatchError(`array index ${i} out of bounds`);
  return i;
}

function getAt(doc: unknown, tokens: string[], pointer: string): unknown {
  let cur = doc;
  for (const t of tokens) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, t, false)];
    else if (isPlainObject(cur) && Object.prototype.hasOwnProperty.call(cur, t)) cur = cur[t];
    else throw new PatchError(`path ${JSON.stringify(pointer)} does not exist`);
  }
  return cur;
}

function parentOf(doc: unknown, tokens: string[], pointer: string): { parent: unknown; last: string } {
  if (tokens.length === 0) throw new PatchError(`path ${JSON.stringify(pointer)} names the whole document`);
  return { parent: getAt(doc, tokens.slice(0, -1), pointer), last: tokens[tokens.length - 1]! };
}

function add(doc: unknown, pointer: string, value: unknown): unknown {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return cloneJson(value);
  const { parent, last } = parentOf(doc, tokens, pointer);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, cloneJson(value));
  else if (isPlainObject(parent)) parent[last] = cloneJson(value);
  else throw new PatchError(`path ${JSON.stringify(pointer)}: parent is not a container`);
  return doc;
}

function remove(doc: unknown, pointer: string): unknown {
  const tokens = parsePointer(pointer);
  const { parent, last } = parentOf(doc, tokens, pointer);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, false), 1);
  else if (isPlainObject(parent) && Object.prototype.hasOwnProperty.call(parent, last)) delete parent[last];
  else throw new PatchError(`unable to remove nonexistent key ${JSON.stringify(last)}`);
  return doc;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

export function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (isPlainObject(v)) {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical(v[k])]),
    );
  }
  return v;
}

/** Applies RFC 6902 operations in order; any failure fails the whole patch. */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new PatchError("a JSON patch must be an array of operations");
  let doc = cloneJson(target);
  for (const [i, raw] of ops.entries()) {
    if (!isPlainObject(raw) || typeof raw.op !== "string" || typeof raw.path !== "string") {
      throw new PatchError(`operation ${i} needs string "op" and "path"`);
    }
    const op = raw as unknown as JsonPatchOp;
    switch (op.op) {
      case "add":
        if (!("value" in raw)) throw new PatchError(`operation ${i} (add) needs a value`);
        doc = add(doc, op.path, op.value);
        break;
      case "remove":
        doc = remove(doc, op.path);
        break;
      case "replace":
        if (!("value" in raw)) throw new PatchError(`operation ${i} (replace) needs a value`);
        getAt(doc, parsePointer(op.path), op.path);
        doc =
          parsePointer(op.path).length === 0
            ? cloneJson(op.value)
            : add(remove(doc, op.path), op.path, op.value);
        break;
      case "move": {
        if (typeof op.from !== "string") throw new PatchError(`operation ${i} (move) needs "from"`);
        const value = getAt(doc, parsePointer(op.from), op.from);
        doc = add(remove(doc, op.from), op.path, value);
        break;
      }
      case "copy": {
        if (typeof op.from !== "string") throw new PatchError(`operation ${i} (copy) needs "from"`);
        doc = add(doc, op.path, getAt(doc, parsePointer(op.from), op.from));
        break;
      }
      case "test":
        if (!deepEqual(getAt(doc, parsePointer(op.path), op.path), op.value)) {
          throw new PatchError(`testing value ${op.path} failed`);
        }
        break;
      default:
        throw new PatchError(`unexpected kind: ${JSON.stringify(op.op)}`);
    }
  }
  return doc;
}
