// Field ownership (metadata.managedFields) and server-side apply, a reduced
// structured-merge-diff: objects merge field by field, lists and scalars are
// atomic (our CRD schemas declare no list-map keys, so Kubernetes would treat
// their lists as atomic too). Pure: the caller passes the time.
import { cloneJson } from "../store/common.js";
import type { KubeObject, ManagedFieldsEntry } from "../store/index.js";
import { canonical, isPlainObject } from "./patch.js";

export type FieldPath = readonly string[];

/** Fields the server owns; they never appear in anyone's field set. */
const SYSTEM_METADATA = new Set([
  "name",
  "namespace",
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "managedFields",
  "selfLink",
]);

export type Scope = "main" | "status";

function inScope(path: FieldPath, scope: Scope): boolean {
  const [top, second] = path;
  if (top === "apiVersion" || top === "kind") return false;
  if (top === "metadata" && second !== undefined && SYSTEM_METADATA.has(second)) return false;
  return scope === "status" ? top === "status" : top !== "status";
}

const keyOf = (p: FieldPath) => JSON.stringify(p);

export class FieldSet {
  private readonly members = new Map<string, FieldPath>();

  static of(paths: Iterable<FieldPath>): FieldSet {
    const s = new FieldSet();
    for (const p of paths) s.add(p);
    return s;
  }

  add(p: FieldPath): void {
    this.members.set(keyOf(p), p);
  }
  has(p: FieldPath): boolean {
    return this.members.has(keyOf(p));
  }
  delete(p: FieldPath): void {
    this.members.delete(keyOf(p));
  }
  get size(): number {
    return this.members.size;
  }
  paths(): FieldPath[] {
    return [...this.members.values()];
  }
  /** True when some member lies under (or at) prefix. */
  hasUnder(prefix: FieldPath): boolean {
    return this.paths().some((p) => prefix.every((seg, i) => p[i] === seg));
  }
  /** True when a member is prefix of p or equal to it (an atomic owner of p). */
  coversOrIsUnder(p: FieldPath): boolean {
    return this.paths().some(
      (m) =>
        (m.length <= p.length && m.every((seg, i) => p[i] === seg)) ||
        (m.length > p.length && p.every((seg, i) => m[i] === seg)),
    );
  }
}

/** Leaf paths of an object: scalars, lists, nulls and empty objects. */
export function leafPaths(obj: unknown, scope: Scope): FieldSet {
  const set = new FieldSet();
  const visit = (v: unknown, path: string[]) => {
    if (path.length > 0 && !inScope(path, scope)) return;
    if (isPlainObject(v) && Object.keys(v).length > 0) {
      for (const [k, child] of Object.entries(v)) visit(child, [...path, k]);
    } else if (path.length > 0) set.add(path);
  };
  visit(obj, []);
  return set;
}

export function getPath(obj: unknown, path: FieldPath): unknown {
  let cur = obj;
  for (const seg of path) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[seg];
  }
  return cur;
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

// ------------------------------------------------------------- fieldsV1 ---

export function toFieldsV1(set: FieldSet): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const p of set.paths()) {
    let node = root;
    for (const seg of p) {
      const k = `f:${seg}`;
      node[k] ??= {};
      node = node[k] as Record<string, unknown>;
    }
  }
  return root;
}

/**
 * Reads fieldsV1, including what other servers and kubectl write: `.` marks a
 * member node, `k:`/`v:`/`i:` address list items (we own lists whole).
 */
export function fromFieldsV1(tree: unknown): FieldSet {
  const set = new FieldSet();
  const visit = (node: unknown, path: string[]) => {
    if (!isPlainObject(node)) return;
    const keys = Object.keys(node);
    if (keys.length === 0 && path.length > 0) set.add(path);
    for (const k of keys) {
      if (k === ".") {
        if (path.length > 0) set.add(path);
      } else if (k.startsWith("f:")) visit(node[k], [...path, k.slice(2)]);
      else if (path.length > 0) set.add(path);
    }
  };
  visit(tree, []);
  return set;
}

// ------------------------------------------------------------ ownership ---

export interface Manager {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion: string;
  subresource?: string;
}

interface Owned {
  entry: ManagedFieldsEntry;
  set: FieldSet;
}

const sameManager = (e: ManagedFieldsEntry, m: Manager) =>
  e.manager === m.manager && e.operation === m.operation && (e.subresource ?? "") === (m.subresource ?? "");

function decodeEntries(entries: readonly ManagedFieldsEntry[] | undefined): Owned[] {
  return (entries ?? []).map((entry) => ({ entry, set: fromFieldsV1(entry.fieldsV1) }));
}

function encodeEntries(owned: Owned[]): ManagedFieldsEntry[] {
  return owned
    .filter((o) => o.set.size > 0)
    .map((o) => ({ ...o.entry, fieldsType: "FieldsV1" as const, fieldsV1: toFieldsV1(o.set) }));
}

function ownerOf(owned: Owned[], m: Manager, time: string): Owned {
  let mine = owned.find((o) => sameManager(o.entry, m));
  if (!mine) {
    mine = {
      entry: {
        manager: m.manager,
        operation: m.operation,
        apiVersion: m.apiVersion,
        time,
        fieldsType: "FieldsV1",
        fieldsV1: {},
        ...(m.subresource ? { subresource: m.subresource } : {}),
      },
      set: new FieldSet(),
    };
    owned.push(mine);
  }
  mine.entry = { ...mine.entry, apiVersion: m.apiVersion, time };
  return mine;
}

/** Drops every owned path that no longer names a leaf of the object. */
function forgetVanished(owned: Owned[], leaves: FieldSet, scope: Scope): void {
  for (const o of owned) {
    for (const p of o.set.paths()) if (inScope(p, scope) && !leaves.has(p)) o.set.delete(p);
  }
}

/**
 * Ownership after a non-apply write (create, update, patch): the writer takes
 * every field whose value it changed; nobody keeps a field that is gone.
 */
export function trackUpdate(
  previous: KubeObject | undefined,
  next: KubeObject,
  manager: Manager,
  scope: Scope,
  time: string,
): ManagedFieldsEntry[] {
  const owned = decodeEntries(previous?.metadata.managedFields);
  const leaves = leafPaths(next, scope);
  const changed = leaves
    .paths()
    .filter((p) => !previous || !sameValue(getPath(previous, p), getPath(next, p)));
  forgetVanished(owned, leaves, scope);
  if (changed.length > 0) {
    for (const o of owned) for (const p of changed) o.set.delete(p);
    const mine = ownerOf(owned, manager, time);
    for (const p of changed) mine.set.add(p);
  }
  return encodeEntries(owned);
}

export interface ApplyConflict {
  manager: string;
  /** The API version the owner wrote with, as Kubernetes names it in the message. */
  apiVersion: string;
  path: FieldPath;
}

export class ApplyConflictError extends Error {
  override name = "ApplyConflictError";
  constructor(readonly conflicts: ApplyConflict[]) {
    super(`Apply failed with ${conflicts.length} conflict${conflicts.length === 1 ? "" : "s"}`);
  }
}

function deletePath(
  obj: Record<string, unknown>,
  path: FieldPath,
  keep: (prefix: FieldPath) => boolean,
): void {
  const parents: Record<string, unknown>[] = [obj];
  let cur: unknown = obj;
  for (const seg of path.slice(0, -1)) {
    if (!isPlainObject(cur)) return;
    cur = cur[seg];
    if (!isPlainObject(cur)) return;
    parents.push(cur);
  }
  delete parents[parents.length - 1]![path[path.length - 1]!];
  // Objects emptied by the removal go too, unless someone still claims them.
  for (let depth = path.length - 1; depth >= 1; depth--) {
    const node = parents[depth]!;
    const prefix = path.slice(0, depth);
    if (Object.keys(node).length > 0 || keep(prefix)) break;
    delete parents[depth - 1]![path[depth - 1]!];
  }
}

function mergeApplied(target: unknown, config: unknown): unknown {
  if (!isPlainObject(config) || !isPlainObject(target)) return cloneJson(config);
  const out: Record<string, unknown> = { ...target };
  for (const [k, v] of Object.entries(config)) {
    if (v === null) delete out[k];
    else out[k] = mergeApplied(out[k], v);
  }
  return out;
}

/**
 * Server-side apply of `config` by `manager` onto `live` (absent: a create).
 * Fields the manager applied before and now omits are removed unless another
 * manager owns them. Changing a field another manager owns is a conflict,
 * unless `force` takes it over.
 */
export function serverSideApply(
  live: KubeObject | undefined,
  config: KubeObject,
  manager: Manager,
  opts: { force: boolean; scope: Scope; time: string },
): KubeObject {
  const { scope, time } = opts;
  const owned = decodeEntries(live?.metadata.managedFields);
  const applied = leafPaths(config, scope);
  const conflicts: ApplyConflict[] = [];
  const others = owned.filter((o) => !sameManager(o.entry, manager));
  for (const p of applied.paths()) {
    const current = getPath(live, p);
    const wanted = getPath(config, p);
    if (current === undefined || sameValue(current, wanted)) continue;
    // An empty object merges into what is there without changing it.
    if (isPlainObject(current) && isPlainObject(wanted) && Object.keys(wanted).length === 0) continue;
    for (const o of others) {
      if (o.set.coversOrIsUnder(p))
        conflicts.push({ manager: o.entry.manager, apiVersion: o.entry.apiVersion, path: p });
    }
  }
  if (conflicts.length > 0 && !opts.force) throw new ApplyConflictError(conflicts);
  for (const c of conflicts) {
    for (const o of others) {
      for (const m of o.set.paths()) {
        const under = m.length >= c.path.length && c.path.every((seg, i) => m[i] === seg);
        const over = m.length < c.path.length && m.every((seg, i) => c.path[i] === seg);
        if (under || over) o.set.delete(m);
      }
    }
  }
  const base = cloneJson(live ?? config) as unknown as Record<string, unknown>;
  const previous = owned.find((o) => sameManager(o.entry, manager))?.set ?? new FieldSet();
  const claimed = (prefix: FieldPath) =>
    applied.hasUnder(prefix) || others.some((o) => o.set.hasUnder(prefix));
  for (const p of previous.paths()) {
    if (applied.has(p) || claimed(p)) continue;
    // Only a leaf goes: an object that others have filled in since is theirs too.
    const current = getPath(base, p);
    if (isPlainObject(current) && Object.keys(current).length > 0) continue;
    deletePath(base, p, claimed);
  }
  const result = (live ? mergeApplied(base, config) : cloneJson(config)) as KubeObject;
  const leaves = leafPaths(result, scope);
  const mine = ownerOf(owned, manager, time);
  mine.set = FieldSet.of(applied.paths().filter((p) => leaves.has(p)));
  forgetVanished(owned, leaves, scope);
  result.metadata = { ...result.metadata, managedFields: encodeEntries(owned) };
  return result;
}

/** Kubernetes' wording of a conflict path: `.spec.replicas`. */
export function describePath(p: FieldPath): string {
  return p.map((seg) => (/^[A-Za-z0-9_-]+$/.test(seg) ? `.${seg}` : `[${JSON.stringify(seg)}]`)).join("");
}
