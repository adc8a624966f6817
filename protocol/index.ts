// Public entry of the wire contract: schemas, parsers, subjects, ids,
// canonical bytes and CRD generation. Import from here, not from the files;
// except crd-yaml.js (js-yaml) and examples.js (fixtures): every sidecar loads
// this index, and neither is needed at run time.
export * from "./schema/index.js";
export * from "./errors.js";
export { toPlainJson, DEFAULT_JSON_LIMITS } from "./json.js";
export type { JsonValue, JsonLimits, PathCause, Segments } from "./json.js";
export * from "./parse.js";
export * from "./labels.js";
export * from "./selector.js";
export * from "./quantity.js";
export * from "./subjects.js";
export * from "./ids.js";
export * from "./canonical.js";
export * from "./crd.js";
export * from "./task.js";
