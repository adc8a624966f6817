// Public entry of the dispatcher's status aggregation.
export * from "./aggregate.js";
export * from "./observations.js";
export * from "./controller.js";
export * from "./feeds.js";
