// Public entry of the Kubernetes workload source (BEEMESH_SOURCE=kubernetes).
export * from "./kubernetes-source.js";
export * from "./mirror.js";
