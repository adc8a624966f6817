// Public entry of the dispatcher's pure decisions (no clock, timer or I/O inside).
export * from "./revive.js";
