// The node agent process: environment in, a NodeAgent on a Bus with its SVID,
// /metrics /healthz /readyz, a graceful stop on SIGTERM (pods keep running;
// the next start adopts them).
import { Bus, createAuthorizer } from "../../protocol/bus/index.js";
import { principalOf, parseSpiffeId } from "../../identity/spiffe-id.js";
import { startHealthServer, newRegistry } from "../common/health-server.js";
import { createLogger, type Logger } from "../common/log.js";
import { ensureSchedulingInfra } from "../common/nats-setup.js";
import { svidDirSource } from "../common/svid-dir.js";
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
  let log: Logger = createLogger({ component: "scheduler-bidder", level: cfg.logLevel });
  const registry = newRegistry("scheduler-bidder");
  const svids = await svidDirSource(cfg.svidDir, {
    onError: (err) => log.warn("svid reload failed", { err: String(err) }),
  });
  const principal = principalOf(parseSpiffeId(svids.current().spiffeId));
  if (principal.kind !== "node")
    throw new Error(
      `scheduler-bidder: the SVID ${svids.current().spiffeId} is not a node identity (/node/<id>)`,
    );
  const nodeId = cfg.nodeId ?? principal.nodeId;
  if (nodeId !== principal.nodeId)
    throw new Error(
      `scheduler-bidder: BEEMESH_NODE_ID ${nodeId} does not match the SVID's node ${principal.nodeId}`,
    );
  log = log.child({ node_id: nodeId });

  const bus = await Bus.connect({
    servers: cfg.natsUrls,
    svid: svids,
    registry,
    logger: log.child({ part: "bus" }),
    trustDomain: cfg.trustDomain,
    prefix: cfg.prefix,
    waitOnFirstConnect: true,
    authorize: createAuthorizer({ prefix: cfg.prefix }),
  });
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
    registry,
    labels: cfg.labels,
    taints: cfg.taints,
    capacity: cfg.capacity,
    shards: cfg.shards,
    probeK: cfg.probeK,
    ...(identities !== undefined ? { workloadIdentity: identities } : {}),
  });
  const health = await startHealthServer({
    port: cfg.healthPort,
    host: cfg.healthHost,
    registry,
    healthy: () => !bus.nc.isClosed(),
    ready: () => agent.isReady() && bus.isConnected(),
  });

  const abort = new AbortController();
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { signal });
    abort.abort();
    await agent.stop();
    // Pods keep running and keep their socket directories; a restarted agent serves them again.
    await identities?.close().catch(() => undefined);
    await bus.drain().catch(() => undefined);
    await health.close();
    svids.close();
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
  void bus.closed().then((err) => {
    if (!stopping) {
      log.error("bus closed", { err: err instanceof Error ? err.message : undefined });
      process.exit(1);
    }
  });
  await agent.start(abort.signal);
  log.info("ready", { runtime: runtime.kind, shards: agent.shards.length, health_port: health.port });
}

const bootLog = createLogger({ component: "scheduler-bidder" });
main().catch((err: unknown) => {
  bootLog.error("failed to start", {
    err: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
  });
  process.exit(1);
});
