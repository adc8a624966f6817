// The node agent's settings from its environment (read in main only;
// every variable, default and meaning: docs/configuration.md).
import {
  EnvError,
  envBytes,
  envCpuMillis,
  envInt,
  envLabels,
  envOptional,
  envString,
  envTaints,
  type Env,
} from "../common/env.js";
import { parseProcessSettings, type ProcessSettings } from "../common/process-settings.js";
import type { Taint } from "../../protocol/index.js";
import type { Resources } from "./logic/index.js";
import {
  DEFAULT_SOCKET_DIR,
  WorkloadIdentityError,
  parseAddressRange,
  type WorkloadIdentityConfig,
} from "./workload-identity.js";

export type RuntimeChoice = "podman" | "fake" | "kubernetes";

export interface AgentConfig extends ProcessSettings {
  /** Undefined: taken from the SVID (/node/<nodeId>). */
  nodeId: string | undefined;
  runtime: RuntimeChoice;
  shards: number;
  probeK: number | "all";
  labels: Record<string, string>;
  taints: Taint[];
  capacity: Partial<Resources>;
  /** Namespace of pods on Kubernetes. */
  kubernetesNamespace: string;
  /** Fake runtime only: how long a deploy takes (simulations, kill tests). */
  fakeDeployDelayMs: number;
  /** Per-pod Workload API sockets; set when this node signs its pods' SVIDs (BEEMESH_CA_DIR). */
  workloadIdentity: WorkloadIdentityConfig | undefined;
}

function workloadIdentityOf(env: Env): WorkloadIdentityConfig | undefined {
  const caDir = envOptional(env, "BEEMESH_CA_DIR");
  if (caDir === undefined) return undefined;
  const range = envOptional(env, "BEEMESH_POD_ADDRESS_RANGE");
  if (range !== undefined) {
    try {
      parseAddressRange(range);
    } catch (err) {
      if (err instanceof WorkloadIdentityError) throw new EnvError("BEEMESH_POD_ADDRESS_RANGE", err.message);
      throw err;
    }
  }
  const ttlS = envOptional(env, "BEEMESH_WORKLOAD_SVID_TTL_S");
  return {
    caDir,
    // Unset: the CA's own trust domain.
    trustDomain: envOptional(env, "BEEMESH_TRUST_DOMAIN"),
    socketDir: envString(env, "BEEMESH_WORKLOAD_API_DIR", DEFAULT_SOCKET_DIR),
    podAddressRange: range,
    svidTtlMs:
      ttlS === undefined
        ? undefined
        : envInt(env, "BEEMESH_WORKLOAD_SVID_TTL_S", 3600, { min: 1, max: 30 * 86_400 }) * 1000,
  };
}

export function parseAgentEnv(env: Env): AgentConfig {
  const runtime = envString(env, "BEEMESH_RUNTIME", "podman");
  if (runtime !== "podman" && runtime !== "fake" && runtime !== "kubernetes") {
    throw new EnvError("BEEMESH_RUNTIME", `must be podman, fake or kubernetes, got ${runtime}`);
  }
  // The dispatcher's default too: both sides must count the same shards.
  const shards = envInt(env, "BEEMESH_SHARDS", 16, { min: 1, max: 65536 });
  const k = envString(env, "BEEMESH_PROBE_K", "all");
  let probeK: number | "all" = "all";
  if (k !== "all") {
    probeK = envInt(env, "BEEMESH_PROBE_K", 1, { min: 1, max: 65536 });
  }
  const capacity: Partial<Resources> = {};
  const cpu = envCpuMillis(env, "BEEMESH_CAPACITY_CPU");
  const memory = envBytes(env, "BEEMESH_CAPACITY_MEMORY");
  const pods = envOptional(env, "BEEMESH_CAPACITY_PODS");
  if (cpu !== undefined) capacity.cpu_millis = cpu;
  if (memory !== undefined) capacity.memory_bytes = memory;
  if (pods !== undefined)
    capacity.pods = envInt(env, "BEEMESH_CAPACITY_PODS", 110, { min: 0, max: 1_000_000 });
  const nodeId = envOptional(env, "BEEMESH_NODE_ID");
  if (nodeId !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(nodeId)) {
    throw new EnvError("BEEMESH_NODE_ID", `must be a DNS-1123 label, got ${JSON.stringify(nodeId)}`);
  }
  return {
    ...parseProcessSettings(env, 9103),
    nodeId,
    runtime,
    shards,
    probeK,
    labels: envLabels(env, "BEEMESH_NODE_LABELS"),
    taints: envTaints(env, "BEEMESH_NODE_TAINTS"),
    capacity,
    kubernetesNamespace: envString(env, "BEEMESH_KUBERNETES_NAMESPACE", "beemesh"),
    fakeDeployDelayMs: envInt(env, "BEEMESH_FAKE_DEPLOY_DELAY_MS", 0, { min: 0, max: 3_600_000 }),
    workloadIdentity: workloadIdentityOf(env),
  };
}
