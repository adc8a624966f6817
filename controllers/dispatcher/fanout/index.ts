// Public entry of the dispatcher's fan-out: rendering, planning, the
// controller, its ports (and their NATS implementations), the workload sources.
export * from "./render.js";
export * from "./plan.js";
export * from "./ports.js";
export * from "./fanout.js";
export * from "./nats.js";
export * from "./queue.js";
export * from "./source.js";
export { Channel } from "./channel.js";
