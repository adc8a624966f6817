// Public entry of the lease-keeper's pure logic.
export * from "./types.js";
export * from "./options.js";
export * from "./select.js";
export * from "./machine.js";
export * from "./keeper.js";
