// Pieces both store implementations share: the key layout, selector matching
// on objects, and how a watch with selectors turns raw changes into events.
import type { KubeObject, ListOptions, ResourceRef, StoreEvent, StoreEventType } from "./types.js";
import { matchesFields, matchesLabels } from "./selectors.js";
import { ConflictError, NotFoundError, ObjectTooLargeError, ResourceExpiredError } from "./errors.js";
import { kvKeys, nameFromToken } from "../../../protocol/index.js";

/**
 * KV key of an object, the layout every component reads (protocol kvKeys):
 * `<plural>.<namespace>.<name>` with the dots of a name mapped to `_`.
 */
export function resourcePrefix(res: ResourceRef): string {
  return res.plural;
}

export function objectKey(res: ResourceRef, namespace: string, name: string): string {
  return kvKeys.object(res.plural, namespace, name);
}

/** The KV key filter for a resource, in one namespace or all. */
export function keyFilter(res: ResourceRef, namespace?: string): string {
  return namespace === undefined ? `${res.plural}.>` : `${res.plural}.${namespace}.*`;
}

export function splitKey(res: ResourceRef, key: string): { namespace: string; name: string } | undefined {
  const parts = key.split(".");
  if (parts.length !== 3 || parts[0] !== res.plural || !parts[1] || !parts[2]) return undefined;
  return { namespace: parts[1], name: nameFromToken(parts[2]) };
}

export function matchesListOptions(obj: KubeObject, opts: ListOptions): boolean {
  if (opts.namespace !== undefined && obj.metadata.namespace !== opts.namespace) return false;
  if (!matchesLabels(opts.labelSelector, obj.metadata.labels)) return false;
  return matchesFields(opts.fieldSelector, {
    "metadata.name": obj.metadata.name,
    "metadata.namespace": obj.metadata.namespace,
  });
}

export function compareObjects(a: KubeObject, b: KubeObject): number {
  const ns = a.metadata.namespace.localeCompare(b.metadata.namespace);
  return ns !== 0 ? ns : a.metadata.name.localeCompare(b.metadata.name);
}

export function withRevision(obj: KubeObject, revision: number): KubeObject {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(revision) } };
}

/** The stored form never carries resourceVersion: the backend's revision is the truth. */
export function forStorage(obj: KubeObject): KubeObject {
  const metadata = { ...obj.metadata };
  delete metadata.resourceVersion;
  return { ...obj, metadata };
}

/** The bytes stored for an object (its storage form as JSON); ObjectTooLarge above `limit`. */
export function encodeForStorage(obj: KubeObject, limit: number): Uint8Array {
  const data = new TextEncoder().encode(JSON.stringify(forStorage(obj)));
  if (data.length > limit) throw new ObjectTooLargeError(data.length, limit);
  return data;
}

/**
 * A raw change seen through a selector (Kubernetes semantics): an object that
 * starts matching is ADDED, one that stops matching is DELETED, and a change
 * the selector never sees is dropped. `previous` undefined means "did not exist".
 */
export interface RawChange {
  type: StoreEventType;
  object: KubeObject;
  previous: KubeObject | undefined;
  revision: number;
  /** The store could not tell what was there before (history no longer kept). */
  previousUnknown?: boolean;
}

export function filterChange(opts: ListOptions, raw: RawChange): StoreEvent | undefined {
  const { type, object, previous, revision } = raw;
  if (type === "DELETED")
    return matchesListOptions(object, opts) ? { type, object, previous, revision } : undefined;
  const now = matchesListOptions(object, opts);
  const before = raw.previousUnknown ? now : previous !== undefined && matchesListOptions(previous, opts);
  const changed = raw.previousUnknown ? type : undefined;
  if (now && before) return { type: changed ?? "MODIFIED", object, previous, revision };
  if (now) return { type: "ADDED", object, previous, revision };
  if (before) return { type: "DELETED", object, previous, revision };
  return undefined;
}

/**
 * A deep copy of JSON data made in this realm. (structuredClone builds objects
 * of the main realm, which the protocol's plain-object check refuses under
 * Jest's VM modules.)
 */
export function cloneJson<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/**
 * The guard of a compare-and-set write or delete: NotFound when nothing is
 * stored under `key`, Conflict when the writer expects another revision.
 */
export function checkWritable<T>(
  key: string,
  current: T | undefined,
  revisionOf: (stored: T) => number,
  expected?: number,
): asserts current is T {
  if (current === undefined) throw new NotFoundError(key);
  if (expected !== undefined && revisionOf(current) !== expected) throw new ConflictError(key);
}

/** A watch resumes after `fromRevision` only while the change after it is still kept. */
export function checkResumable(fromRevision: number, oldestKept: number): void {
  if (fromRevision < oldestKept - 1) throw new ResourceExpiredError(fromRevision, oldestKept - 1);
}
