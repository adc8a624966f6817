// The object store behind the dispatcher's Kubernetes-compatible API: typed
// objects keyed by resource, namespace and name; resourceVersion is the
// backend's revision (the NATS KV stream sequence), so it grows across the
// whole bucket and a watch can resume from any version a list returned.
import type { FieldSelector, LabelSelector } from "./selectors.js";

export interface ManagedFieldsEntry {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion: string;
  time?: string;
  fieldsType: "FieldsV1";
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

export interface ObjectMeta {
  name: string;
  namespace: string;
  generateName?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: unknown[];
  managedFields?: ManagedFieldsEntry[];
}

/** A namespaced API object as stored and served: the whole JSON document. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
  [field: string]: unknown;
}

/** Which collection an object lives in: group and plural name of its resource. */
export interface ResourceRef {
  readonly group: string;
  readonly plural: string;
}

export interface ListOptions {
  /** Absent: all namespaces. */
  namespace?: string;
  labelSelector?: LabelSelector;
  fieldSelector?: FieldSelector;
}

export interface ListResult {
  /** Sorted by namespace, then name. */
  items: KubeObject[];
  /** A revision at or after the snapshot: a watch from it misses no later change. */
  revision: number;
}

export interface WatchOptions extends ListOptions {
  /**
   * Deliver changes after this revision. Absent: first an ADDED event for every
   * current object, then changes (Kubernetes' "resourceVersion unset or 0").
   */
  fromRevision?: number;
}

export type StoreEventType = "ADDED" | "MODIFIED" | "DELETED";

export interface StoreEvent {
  type: StoreEventType;
  /** For DELETED, the last state of the object, with the deletion's revision. */
  object: KubeObject;
  /** The object before this change when the store knows it (fan-out compares generations). */
  previous: KubeObject | undefined;
  revision: number;
}

/** An open watch: iterate it for events; stop() (or breaking the loop) ends it. */
export interface StoreWatch extends AsyncIterable<StoreEvent> {
  stop(): void;
}

export interface ObjectStore {
  get(res: ResourceRef, namespace: string, name: string): Promise<KubeObject | undefined>;
  list(res: ResourceRef, opts?: ListOptions): Promise<ListResult>;
  /** Refuses when the object exists (AlreadyExistsError). Returns it with its resourceVersion. */
  create(res: ResourceRef, obj: KubeObject): Promise<KubeObject>;
  /** Writes only if the stored revision is still expectedRevision (else ConflictError). */
  update(res: ResourceRef, obj: KubeObject, expectedRevision: number): Promise<KubeObject>;
  /**
   * Removes the object (when expectedRevision is given, only if it is still that
   * revision) and returns its last state with the deletion's resourceVersion.
   */
  delete(res: ResourceRef, namespace: string, name: string, expectedRevision?: number): Promise<KubeObject>;
  /** Throws ResourceExpiredError when fromRevision is older than the retained history. */
  watch(res: ResourceRef, opts?: WatchOptions): Promise<StoreWatch>;
  /** The newest revision of the whole store. */
  currentRevision(): Promise<number>;
  close(): Promise<void>;
}

export function revisionOf(obj: KubeObject): number {
  const rv = Number(obj.metadata.resourceVersion);
  return Number.isSafeInteger(rv) && rv > 0 ? rv : 0;
}
