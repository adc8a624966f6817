// Public entry of the bidder's pure logic: fit, score, preemption, ledger.
export * from "./types.js";
export * from "./hash.js";
export * from "./fit.js";
export * from "./score.js";
export * from "./preempt.js";
export * from "./bid.js";
export * from "./ledger.js";
