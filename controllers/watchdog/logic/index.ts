// Public entry of the watchdog's pure logic. The simulator (sim.ts) is
// imported from its own file: the sidecar never loads it.
export * from "./types.js";
export * from "./options.js";
export * from "./replica.js";
