// Public entry of the schema source: wire messages and API resources.
export * from "./common.js";
export * from "./messages.js";
export * from "./pod.js";
export * from "./resources.js";
