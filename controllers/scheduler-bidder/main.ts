// The node agent process: environment in, a NodeAgent on a Bus with its SVID,
// /metrics /healthz /readyz, a graceful stop on SIGTERM (pods keep running;
// the next start adopts them).
import { connectProcess, runMain, serveProcess } from "../common/controller-process.js";
import { ensureSchedulingInfra } from "../common/nats-setup.js";
import { NodeAgent } from "./agent.js";
import { parseAgentEnv, type AgentConfig } from "./config.js";
import { startWorkloadIdentities, type WorkloadIdentities } from "./workload-identity.js";
import {
  FakeRuntime,
  KubernetesRuntime,
  PodmanRuntime,
  podApiFromKubeConfig,
  type ResourceAmounts,
  type Runtime,
} from "./runtime/index.js";

function runtimeCapacity(cfg: AgentConfig): Partial<ResourceAmounts> {
  return {
    ...(cfg.capacity.cpu_millis !== undefined ? { cpuMillis: cfg.capacity.cpu_millis } : {}),
    ...(cfg.capacity.memory_bytes !== undefined ? { memoryBytes: cfg.capacity.memory_bytes } : {}),
    ...(cfg.capacity.pods !== undefined ? { pods: cfg.capacity.pods } : {}),
  };
}

async function makeRuntime(cfg: AgentConfig, nodeId: string): Promise<Runtime> {
  switch (cfg.runtime) {
    case "podman":
      return new PodmanRuntime({ capacity: runtimeCapacity(cfg) });
    case "fake":
      return new FakeRuntime({ capacity: runtimeCapacity(cfg), deployDelayMs: cfg.fakeDeployDelayMs });
    case "kubernetes": {
      // Loaded only here: the client is large and only this runtime needs it.
      const { KubeConfig } = await import("@kubernetes/client-node");
      const kc = new KubeConfig();
      kc.loadFromDefault();
      return new KubernetesRuntime({
        api: podApiFromKubeConfig(kc),
        nodeName: nodeId,
        namespace: cfg.kubernetesNamespace,
      });
    }
  }
}

async function main(): Promise<void> {
  const cfg = parseAgentEnv(process.env);
  const p = await connectProcess({
    component: "scheduler-bidder",
    settings: cfg,
    identify: (principal, spiffeId) => {
      if (principal.kind !== "node")
        throw new Error(`scheduler-bidder: the SVID ${spiffeId} is not a node identity (/node/<id>)`);
      const nodeId = cfg.nodeId ?? principal.nodeId;
      if (nodeId !== principal.nodeId)
        throw new Error(
          `scheduler-bidder: BEEMESH_NODE_ID ${nodeId} does not match the SVID's node ${principal.nodeId}`,
        );
      return { node_id: nodeId };
    },
  });
  const { bus, log } = p;
  const nodeId = p.identity.node_id;
  const infra = await ensureSchedulingInfra(bus.nc, { prefix: cfg.prefix, waitTimeoutMs: 300_000 });
  const runtime = await makeRuntime(cfg, nodeId);
  // Per-pod Workload API sockets when this node signs its pods' SVIDs (BEEMESH_CA_DIR).
  let identities: WorkloadIdentities | undefined;
  if (cfg.workloadIdentity !== undefined) {
    identities = await startWorkloadIdentities(cfg.workloadIdentity, {
      nodeId,
      log: log.child({ part: "workload-api" }),
    });
  }
  const agent = new NodeAgent({
    nodeId,
    bus,
    runtime,
    buckets: infra.buckets,
    logger: log,
    registry: p.registry,
    labels: cfg.labels,
    taints: cfg.taints,
    capacity: cfg.capacity,
    shards: cfg.shards,
    probeK: cfg.probeK,
    ...(identities !== undefined ? { workloadIdentity: identities } : {}),
  });
  const health = await serveProcess(p, {
    settings: cfg,
    controller: agent,
    // Pods keep running and keep their socket directories; a restarted agent serves them again.
    afterStop: async () => {
      await identities?.close().catch(() => undefined);
    },
  });
  log.info("ready", { runtime: runtime.kind, shards: agent.shards.length, health_port: health.port });
}

runMain("scheduler-bidder", main);
