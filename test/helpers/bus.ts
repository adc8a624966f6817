// Bus fixtures: valid sample payloads and a Bus connected to the nats fixture
// as a given role, with its own metrics registry and an in-memory logger.
import { Registry } from "prom-client";
import { ulid } from "ulid";
import type { Svid } from "../../identity/ca.js";
import type { NatsRole } from "../../identity/nats-config.js";
import { Bus, counterValue, newNonce, type BusOptions, type RejectReason } from "../../protocol/bus/index.js";
import type { Bid, Event, Heartbeat, ProviderRecord, Task } from "../../protocol/schema/messages.js";
import { exampleProviderRecord } from "../../protocol/examples.js";
import { memoryLogger } from "../../controllers/common/log.js";
import type { NatsFixture } from "./nats-server.js";

export function sampleBid(nodeId: string, taskId: string = ulid(), now = Date.now()): Bid {
  return {
    task_id: taskId,
    node_id: nodeId,
    score: 0.5,
    fit: true,
    reasons: [],
    capabilities: [],
    offered: 1,
    nonce: newNonce(),
    ts: now,
  };
}

/** A provider record of default/web's `pod` on node-1 (fencing token 1), with overrides. */
export function sampleProvider(
  pod: string,
  state: ProviderRecord["state"],
  over: Partial<ProviderRecord> = {},
): ProviderRecord {
  return { ...exampleProviderRecord(), pod, state, fencing_token: 1, ...over };
}

export function sampleHeartbeat(
  ns: string,
  parent: string,
  pod: string,
  now = Date.now(),
  seq = 0,
): Heartbeat {
  return {
    pod,
    node: "node-1",
    ns,
    parent,
    generation: 1,
    healthy: true,
    ready: true,
    started_at: now - 1000,
    spec_revision: 1,
    template_hash: "0123456789abcdef",
    slot: null,
    retiring: false,
    pending: [],
    seq,
    ts: now,
  };
}

export function sampleTask(ns = "default", parent = "web", extra: Partial<Task> = {}): Task {
  return {
    task_id: ulid(),
    kind: "Deployment",
    ns,
    parent,
    parent_uid: "uid-1",
    generation: 1,
    manifest_ref: { key: `${ns}.${parent}.m1`, sha256: "0".repeat(64) },
    reqs: { cpu_millis: 100, memory_bytes: 1 << 20, ports: [] },
    priority: 0,
    qos: "BestEffort",
    attempt: 0,
    origin: "dispatcher",
    nonce: newNonce(),
    ts: Date.now(),
    ...extra,
  };
}

export function sampleEvent(ns = "default", parent = "web", extra: Partial<Event> = {}): Event {
  return { task_id: ulid(), status: "cloned", kind: "Deployment", ns, parent, ts: Date.now(), ...extra };
}

export interface TestBus {
  bus: Bus;
  svid: Svid;
  registry: Registry;
  logs: ReturnType<typeof memoryLogger>;
  rejected(reason: RejectReason): Promise<number>;
}

/** A Bus as role (SPIFFE path from idSegments, or the fixture's per-role default). */
export async function busAs(
  nats: NatsFixture,
  role: NatsRole,
  idSegments: string[] = [],
  opts: Partial<BusOptions> = {},
): Promise<TestBus> {
  const svid = await nats.issue(role, ...idSegments);
  const registry = new Registry();
  const logs = memoryLogger(`bus-${role}`);
  const bus = nats.track(await Bus.connect({ servers: nats.urls, svid, registry, logger: logs, ...opts }));
  return {
    bus,
    svid,
    registry,
    logs,
    rejected: (reason) => counterValue(registry, "beemesh_messages_rejected_total", { reason }),
  };
}
