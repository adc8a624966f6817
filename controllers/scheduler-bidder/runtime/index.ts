// Public entry of the node agent's runtimes (DESIGN §7).
export * from "./types.js";
export { LABEL, MANAGED_BY, identityLabels, parseIdentityLabels, type LabelParse } from "./labels.js";
export {
  assertValidDeploySpec,
  deploySpecProblems,
  derivePodPhase,
  manifestLimits,
  parseCpuMillis,
  parseMemoryBytes,
  parsePodManifest,
  parseQuantity,
  prepareManifest,
} from "./manifest.js";
export { FakeRuntime, PodEventHub, seededRandom, type FakeRuntimeOptions, type PodEvent } from "./fake.js";
export { PodmanRuntime, findContainersConf, podmanSettings, type PodmanRuntimeOptions } from "./podman.js";
export {
  KubernetesRuntime,
  podApiFromKubeConfig,
  type KubernetesRuntimeOptions,
  type PodApi,
} from "./kubernetes.js";
