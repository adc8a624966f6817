// Public entry of the dispatcher's revival of Deployments left without a replica.
export * from "./monitor.js";
export * from "./nats.js";
