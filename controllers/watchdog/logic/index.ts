// Public entry of the watchdog's pure logic (and its simulator).
export * from "./types.js";
export * from "./options.js";
export * from "./replica.js";
export * from "./sim.js";
