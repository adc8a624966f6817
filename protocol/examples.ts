// One valid instance of every message, fresh on each call: for tests and docs
// across the project (mutate the copy you get, the next call is unaffected).
import type {
  Bid,
  Envelope,
  Event,
  Heartbeat,
  Lease,
  NodeStatus,
  ProviderRecord,
  RemoveRequest,
  Task,
} from "./schema/messages.js";

export const EXAMPLE_TS = 1_700_000_000_000;
export const EXAMPLE_TASK_ID = "01HF7YAT00SP7ZQ8GM4CVZ7K5V";
export const EXAMPLE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

export function exampleTask(): Task {
  return {
    task_id: EXAMPLE_TASK_ID,
    kind: "Deployment",
    ns: "default",
    parent: "web",
    parent_uid: "6f1e0c8e-6a4b-4b7e-9d7e-2f1c3b5a9e10",
    generation: 1,
    count: 1,
    manifest_ref: { key: `sha256.${EXAMPLE_SHA256}`, sha256: EXAMPLE_SHA256 },
    reqs: { cpu_millis: 250, memory_bytes: 64 * 1024 * 1024, ports: [{ port: 8080, protocol: "TCP" }] },
    priority: 0,
    qos: "Burstable",
    anti_affinity: { matchLabels: { app: "web" } },
    node_selector: { "kubernetes.io/os": "linux" },
    tolerations: [{ key: "dedicated", operator: "Equal", value: "web", effect: "NoSchedule" }],
    hints: { zone: "a" },
    attempt: 0,
    origin: "dispatcher",
    nonce: "n0nce-0123456789abcdef",
    ts: EXAMPLE_TS,
  };
}

export function exampleStatefulTask(): Task {
  return {
    ...exampleTask(),
    kind: "StatefulSet",
    parent: "db",
    ordinals: [0, 1, 2],
    count: 3,
    anti_affinity: { matchLabels: { app: "db" } },
  };
}

export function exampleBid(): Bid {
  return {
    task_id: EXAMPLE_TASK_ID,
    node_id: "node-1",
    score: 0.73,
    fit: true,
    reasons: [],
    capabilities: ["podman", "hostNetwork"],
    offered: 1,
    nonce: "bidn0nce-0123456789ab",
    ts: EXAMPLE_TS + 10,
  };
}

export function exampleLease(): Lease {
  return {
    task_id: EXAMPLE_TASK_ID,
    winner_id: "node-1",
    expires_at: EXAMPLE_TS + 3000,
    version: 42,
    fencing_token: 42,
    granted: 1,
    ts: EXAMPLE_TS + 260,
  };
}

export function exampleEvent(): Event {
  return {
    task_id: EXAMPLE_TASK_ID,
    node_id: "node-1",
    status: "deployed",
    kind: "Deployment",
    ns: "default",
    parent: "web",
    pod: "web-7c9d2",
    attempt: 0,
    fencing_token: 42,
    details: "pod running",
    ts: EXAMPLE_TS + 900,
  };
}

export function exampleHeartbeat(): Heartbeat {
  return {
    pod: "web-7c9d2",
    node: "node-1",
    ns: "default",
    parent: "web",
    generation: 1,
    healthy: true,
    ready: true,
    task_id: EXAMPLE_TASK_ID,
    started_at: EXAMPLE_TS + 800,
    spec_revision: 12,
    template_hash: "0123456789abcdef",
    slot: null,
    retiring: false,
    pending: [],
    seq: 7,
    ts: EXAMPLE_TS + 8000,
  };
}

export function exampleNodeStatus(): NodeStatus {
  return {
    node_id: "node-1",
    capacity: { cpu_millis: 4000, memory_bytes: 8 * 1024 ** 3, pods: 110 },
    allocatable: { cpu_millis: 3800, memory_bytes: 7 * 1024 ** 3, pods: 110 },
    used: { cpu_millis: 250, memory_bytes: 64 * 1024 ** 2, pods: 1 },
    labels: { "kubernetes.io/os": "linux", zone: "a" },
    taints: [{ key: "dedicated", value: "web", effect: "NoSchedule" }],
    shards: [0, 3, 5],
    last_seen: EXAMPLE_TS + 5000,
  };
}

export function exampleProviderRecord(): ProviderRecord {
  return {
    ns: "default",
    kind: "Deployment",
    parent: "web",
    pod: "web-7c9d2",
    node_id: "node-1",
    task_id: EXAMPLE_TASK_ID,
    fencing_token: 42,
    generation: 1,
    state: "running",
    ts: EXAMPLE_TS + 1000,
  };
}

export function exampleRemoveRequest(): RemoveRequest {
  return {
    ns: "default",
    kind: "Deployment",
    parent: "web",
    pod: "web-7c9d2",
    task_id: EXAMPLE_TASK_ID,
    fencing_token: 42,
    reason: "retire",
    ts: EXAMPLE_TS + 20000,
  };
}

export function exampleEnvelope(): Envelope {
  return {
    type: "Task",
    payload: exampleTask(),
    sig: {
      spiffe_id: "spiffe://beemesh.local/controller/dispatcher/0",
      cert: "MIIBszCCAVmgAwIBAgIUYWJj",
      alg: "ES256",
      value: "MEUCIQDx9J2kq0zv1aXbYbK0c3VmZHNhZmRzYWZkc2E=",
    },
    nonce: "envn0nce-0123456789ab",
    ts: EXAMPLE_TS,
  };
}
