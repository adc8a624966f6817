// Public entry of the dispatcher's object store.
export type {
  KubeObject,
  ManagedFieldsEntry,
  ObjectMeta,
  ObjectStore,
  ResourceRef,
  ListOptions,
  ListResult,
  WatchOptions,
  StoreEvent,
  StoreEventType,
  StoreWatch,
} from "./types.js";
export { revisionOf } from "./types.js";
export {
  StoreError,
  NotFoundError,
  AlreadyExistsError,
  ConflictError,
  ResourceExpiredError,
  ObjectTooLargeError,
  StoreUnavailableError,
} from "./errors.js";
export {
  SelectorError,
  parseLabelSelector,
  parseFieldSelector,
  matchesLabels,
  matchesFields,
  labelKeyProblem,
  labelValueProblem,
  SELECTABLE_FIELDS,
  type LabelSelector,
  type FieldSelector,
} from "./selectors.js";
export { objectKey, keyFilter, splitKey, resourcePrefix, cloneJson } from "./common.js";
export { MemoryObjectStore, type MemoryStoreOptions } from "./memory.js";
export {
  KvObjectStore,
  DEFAULT_OBJECTS_BUCKET,
  DEFAULT_OBJECT_HISTORY,
  type KvObjectStoreOptions,
} from "./nats-kv.js";
export { watchResources, needsRollout, type ResourceEvent, type ResourceEvents } from "./changes.js";
