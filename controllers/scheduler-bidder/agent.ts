// The node agent (DESIGN §1, §3): bids for the Tasks of the shards it probes,
// holds capacity for its open bids, and, when a lease-keeper awards it a task,
// renews the lease, checks the manifest, runs the pod through its runtime and
// reports what happened. The pure parts (fit, score, preemption, the capacity
// ledger) are in ./logic; this file is the I/O around them.
//
// Tasks arrive on core NATS subscriptions to the shard subjects, not on
// JetStream consumers: a JetStream publish is also delivered to plain
// subscribers, the server keeps no per-node consumer state (10,000 nodes would
// mean 10,000 consumers), and interest-based routing sends a shard's tasks to
// its listeners only. A node that is offline misses tasks, which is harmless:
// other probed nodes bid, and a task nobody bid for is retried by the keepers.
//
// A bid's reservation is released after `bidHoldMs` unless the award came; a
// node never hears that it lost.
//
// Batches (DESIGN §3.6): a Task may stand for many replicas. The node offers
// as many as fit (no preemption for batches), and an award grants it a share,
// replicas first..first+granted-1, under one lease: the node starts that many
// pods, all or none (a failure removes the ones it started and reports the
// share `failed`, so the keepers re-award it whole), renews the share's lease,
// and reports one event per share. A single-replica task is the share of one. Tasks refused only for capacity are deferred
// and bid again (a late bid) when reservations free up, so a burst larger
// than one node's room still converges without a republish.
import { Counter, Registry } from "prom-client";
import type { KV } from "@nats-io/kv";
import {
  NODE_VERBS,
  kvKeys,
  parseLease,
  parseTask,
  subjects,
  taskOrdinals,
  taskReplicaCount,
  type Bid,
  type EventStatus,
  type Lease,
  type NodeStatus,
  type ProviderRecord,
  type ProviderState,
  type RemoveRequest,
  type Subjects,
  type Taint,
  type Task,
} from "../../protocol/index.js";
import { newNonce, type BusSubscription, type MessageSpec, type Received } from "../../protocol/bus/index.js";
import { Alarm, systemClock, type ControllerClock } from "../common/clock.js";
import { errorText, silentLogger, type Logger } from "../common/log.js";
import {
  TASK_LEASE_PREFIX,
  decodeLeaseEntry,
  encodeLease,
  isWrongLastSequence,
  parseTaskLeaseKey,
  readLease,
  shareLeaseKey,
  type LeaseRecord,
} from "../common/lease-record.js";
import { fnv1a32 } from "./logic/hash.js";
import {
  CapacityLedger,
  PARENT_LABEL,
  RESOLVABLE_BY_EVICTION,
  type BidDecision,
  type FitReasonCode,
  type PlacementTask,
  type Resources,
  type SharePod,
  type Victim,
} from "./logic/index.js";
import { ManifestCache } from "./manifests.js";
import {
  LOGS_SPEC,
  MAX_LOG_BYTES,
  MAX_LOG_LINES,
  NODE_REPLY_TYPE,
  REMOVE_SPEC,
  STATUS_SPEC,
  type LogsRequest,
  type NodeReply,
} from "./node-api.js";
import {
  PodExistsError,
  type PodIdentity,
  type PodManifest,
  type Runtime,
  type WorkloadKind,
} from "./runtime/index.js";
import { POD_ENV, injectAttachment, sidecarsOf, type WorkloadIdentities } from "./workload-identity.js";

// ------------------------------------------------------------- options ---

/** What the agent needs of a Bus (protocol/bus Bus satisfies it; simulations multiplex one connection). */
export interface AgentBus {
  readonly prefix: string;
  publish(subject: string, type: string, payload: unknown): void;
  publishDurable(
    subject: string,
    type: string,
    payload: unknown,
    opts?: { msgID?: string; timeoutMs?: number },
  ): Promise<unknown>;
  subscribe<T>(subject: string, spec: MessageSpec<T>): BusSubscription<T>;
  reply(to: Received<unknown, { reply?: string }>, type: string, payload: unknown): void;
  readonly nc: { flush(): Promise<void> };
}

export interface AgentBuckets {
  manifests: KV;
  leases: KV;
  nodes: KV;
  providers: KV;
}

export interface NodeAgentOptions {
  /** DNS-1123 label; must match the SVID /node/<nodeId> the bus signs with. */
  nodeId: string;
  bus: AgentBus;
  runtime: Runtime;
  buckets: AgentBuckets;
  logger?: Logger;
  /** Metrics land here (shared registries aggregate several agents). Default: a private registry. */
  registry?: Registry;
  labels?: Record<string, string>;
  taints?: Taint[];
  /** Default: the runtime's capacity. */
  capacity?: Partial<Resources>;
  /** What bids may use; default: the capacity. */
  allocatable?: Partial<Resources>;
  /** Total number of task shards S in the mesh (default 1). */
  shards?: number;
  /** Shards this node listens to: k of S, or "all" (default). */
  probeK?: number | "all";
  /** Explicit shard list (overrides probeK). */
  shardList?: number[];
  /** How long a bid holds its capacity without an award (default 1000 ms). */
  bidHoldMs?: number;
  /** The lease TTL the keepers judge (for expires_at; default 3000 ms). */
  leaseTtlMs?: number;
  /** Renewal period while a task is being started and just after (default 1000 ms). */
  renewIntervalMs?: number;
  /** Renewal period once the pod runs and the keepers are done with it (default 10 s). */
  settledRenewIntervalMs?: number;
  /** Fast renewals continue this long after `deployed` (default 5000 ms). */
  settleGraceMs?: number;
  /** Node status and provider records are rewritten this often (default 10 s). */
  statusIntervalMs?: number;
  /** A deferred task is bid again for at most this long (default 15 s). */
  deferMs?: number;
  maxDeferred?: number;
  /** Tasks are remembered this long for a late award (default 120 s). */
  taskMemoryMs?: number;
  maxKnownTasks?: number;
  /** Offer preemption bids (default true). */
  preemption?: boolean;
  /** Extra capability strings in bids (the runtime kind is always there). */
  capabilities?: string[];
  /** Share one verified-manifest cache between agents (simulations). */
  manifestCache?: ManifestCache;
  /**
   * Per-pod SPIFFE Workload API sockets (workload-identity.ts): each pod's
   * sidecar gets its own socket directory mounted, and its pod address when
   * the node hands them out. Without it pods get their facts in env, no socket.
   */
  workloadIdentity?: Pick<WorkloadIdentities, "attach" | "detach">;
  clock?: ControllerClock;
}

interface Settings {
  bidHoldMs: number;
  leaseTtlMs: number;
  renewIntervalMs: number;
  settledRenewIntervalMs: number;
  settleGraceMs: number;
  statusIntervalMs: number;
  deferMs: number;
  maxDeferred: number;
  taskMemoryMs: number;
  maxKnownTasks: number;
  preemption: boolean;
}

export class NodeAgentOptionsError extends Error {
  override name = "NodeAgentOptionsError";
}

function settingsOf(o: NodeAgentOptions): Settings {
  const s: Settings = {
    bidHoldMs: o.bidHoldMs ?? 1000,
    leaseTtlMs: o.leaseTtlMs ?? 3000,
    renewIntervalMs: o.renewIntervalMs ?? 1000,
    settledRenewIntervalMs: o.settledRenewIntervalMs ?? 10_000,
    settleGraceMs: o.settleGraceMs ?? 5000,
    statusIntervalMs: o.statusIntervalMs ?? 10_000,
    deferMs: o.deferMs ?? 15_000,
    maxDeferred: o.maxDeferred ?? 10_000,
    taskMemoryMs: o.taskMemoryMs ?? 120_000,
    maxKnownTasks: o.maxKnownTasks ?? 100_000,
    preemption: o.preemption ?? true,
  };
  for (const [k, v] of Object.entries(s)) {
    if (typeof v === "number" && !(Number.isFinite(v) && v > 0))
      throw new NodeAgentOptionsError(`node-agent: ${k} must be positive, got ${v}`);
  }
  if (s.renewIntervalMs >= s.leaseTtlMs)
    throw new NodeAgentOptionsError("node-agent: renewIntervalMs must be below leaseTtlMs");
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(o.nodeId) || o.nodeId.length > 63) {
    throw new NodeAgentOptionsError(
      `node-agent: node id ${JSON.stringify(o.nodeId)} is not a DNS-1123 label`,
    );
  }
  return s;
}

/**
 * The shards a node listens to: all of them, or k drawn deterministically
 * from its id (the same shards after a restart, spread evenly over nodes).
 */
export function shardSample(nodeId: string, shards: number, k: number | "all"): number[] {
  if (!Number.isSafeInteger(shards) || shards < 1)
    throw new NodeAgentOptionsError(`node-agent: shards must be a positive integer, got ${shards}`);
  if (k === "all" || k >= shards) return Array.from({ length: shards }, (_, i) => i);
  if (!Number.isSafeInteger(k) || k < 1)
    throw new NodeAgentOptionsError(`node-agent: probeK must be a positive integer or "all", got ${k}`);
  const picked = new Set<number>();
  for (let i = 0; picked.size < k && i < k * 64; i++) picked.add(fnv1a32(`${nodeId}#${i}`) % shards);
  for (let s = 0; picked.size < k; s++) picked.add(s);
  return [...picked].sort((a, b) => a - b);
}

/** Pods adopted after a restart carry no priority label: never offer them as victims. */
export const ADOPTED_PRIORITY = 2147483647;

const MAX_REASONS = 64;
const MAX_REASON_CHARS = 1024;

// --------------------------------------------------------------- state ---

interface TaskInfo {
  task_id: string;
  kind: WorkloadKind;
  ns: string;
  parent: string;
  ordinal?: number;
  generation: number;
  attempt: number;
}

interface KnownTask {
  task: Task;
  info: TaskInfo;
  /** The pod name of a single-replica task (a batch names each replica at its award). */
  pod: string;
  labels: Record<string, string>;
  /** Ledger keys of the pods a preempting bid named. */
  victims: string[];
  seenMs: number;
  replicas: number;
}

type HeldState = "starting" | "running";

/** A lease this node holds: one share of a task, replicas first..first+granted-1 (a single task: 0..0). */
interface HeldLease {
  key: string;
  taskId: string;
  first: number;
  granted: number;
  fencingToken: number;
  revision: number;
  lost: boolean;
  renewing: boolean;
  nextRenewMs: number;
  /** Renewals slow down after this; set when the share's pods run. */
  settleAtMs: number | null;
  pods: Set<HeldPod>;
}

interface HeldPod {
  /** Ledger (and `held`) key: the task id for a single-replica task, `<task id>/<pod>` for a batch pod. */
  key: string;
  info: TaskInfo;
  pod: string;
  lease: HeldLease;
  state: HeldState;
  deploying: boolean;
  /** Settles when the start (deploy or failure) of its share is over. */
  started: Promise<void>;
  dropped: boolean;
}

const batchPodKey = (taskId: string, pod: string): string => `${taskId}/${pod}`;

/** What one replica of a task is: replica 0 of a single-replica task, or one of a batch's. */
function taskInfo(task: Task, replica = 0): TaskInfo {
  const ordinal = taskOrdinals(task)[replica];
  return {
    task_id: task.task_id,
    kind: task.kind,
    ns: task.ns,
    parent: task.parent,
    ...(ordinal !== undefined ? { ordinal } : {}),
    generation: task.generation,
    attempt: task.attempt,
  };
}

/**
 * A pod's name on its node: `<parent>-<ordinal>` for a StatefulSet member (its
 * stable name), `<parent>-<last 10 of the task id>` for a Deployment replica,
 * `<parent>-<last 10 of the task id>-<replica>` for replica `replica` of a
 * Deployment batch.
 */
export function podNameFor(
  task: Pick<Task, "kind" | "parent" | "task_id" | "ordinal" | "ordinals"> & Partial<Pick<Task, "count">>,
  replica = 0,
): string {
  const ordinal = taskOrdinals(task)[replica];
  const id = task.task_id.slice(-10).toLowerCase();
  const suffix =
    task.kind === "StatefulSet" && ordinal !== undefined
      ? String(ordinal)
      : taskReplicaCount(task) > 1
        ? `${id}-${replica}`
        : id;
  const base = task.parent
    .replace(/\./g, "-")
    .slice(0, 62 - suffix.length)
    .replace(/-+$/, "");
  return `${base}-${suffix}`;
}

/**
 * The manifest with what only the node knows at deploy time in its sidecars'
 * env (the watchdog or raft-member reads them: watchdog/main.ts): the pod's
 * name, this node, the task that placed it. The input is not modified.
 */
export function withPodFacts(
  manifest: PodManifest,
  facts: { podName: string; nodeId: string; taskId: string },
): PodManifest {
  const sidecars = new Set(sidecarsOf(manifest).map((c) => c.name));
  if (sidecars.size === 0) return manifest;
  // A JSON round trip: manifests are JSON data, and the copy is ours to change.
  const out = JSON.parse(JSON.stringify(manifest)) as PodManifest;
  const vars = [
    { name: POD_ENV.podName, value: facts.podName },
    { name: POD_ENV.nodeId, value: facts.nodeId },
    { name: POD_ENV.taskId, value: facts.taskId },
  ];
  const names = new Set<string>(vars.map((v) => v.name));
  for (const c of out.spec.containers) {
    if (sidecars.has(c.name)) c.env = [...(c.env ?? []).filter((e) => !names.has(e.name)), ...vars];
  }
  return out;
}

function placementOf(task: Task): PlacementTask {
  return {
    task_id: task.task_id,
    ns: task.ns,
    parent: task.parent,
    priority: task.priority,
    reqs: task.reqs,
    ...(task.node_selector !== undefined ? { node_selector: task.node_selector } : {}),
    ...(task.tolerations !== undefined ? { tolerations: task.tolerations } : {}),
    ...(task.affinity !== undefined ? { affinity: task.affinity } : {}),
    ...(task.anti_affinity !== undefined ? { anti_affinity: task.anti_affinity } : {}),
    ...(task.hints !== undefined ? { hints: task.hints } : {}),
  };
}

function clampReasons(reasons: readonly string[]): string[] {
  const out = reasons
    .slice(0, MAX_REASONS)
    .map((r) => (r.length > MAX_REASON_CHARS ? `${r.slice(0, MAX_REASON_CHARS - 3)}...` : r));
  if (reasons.length > MAX_REASONS) out[MAX_REASONS - 1] = `... and ${reasons.length - MAX_REASONS + 1} more`;
  return out;
}

/** A refusal that freed capacity could cure (the reason strings are "Code: message"). */
function deferrable(reasons: readonly string[]): boolean {
  return (
    reasons.length > 0 &&
    reasons.every((r) => RESOLVABLE_BY_EVICTION.has(r.slice(0, r.indexOf(":")) as FitReasonCode))
  );
}

// ------------------------------------------------------------- metrics ---

interface AgentMetrics {
  bids: Counter<"outcome">;
  awards: Counter<"result">;
  renewals: Counter<"result">;
  preemptions: Counter;
  removals: Counter<"reason">;
}

function counter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function agentMetrics(registry: Registry): AgentMetrics {
  return {
    bids: counter(registry, "beemesh_agent_bids_total", "Bids sent, by outcome (fit, preempt, nofit)", [
      "outcome",
    ]),
    awards: counter(registry, "beemesh_agent_awards_total", "Lease awards, by how the start ended", [
      "result",
    ]),
    renewals: counter(registry, "beemesh_agent_lease_renewals_total", "Lease renewals (ok, lost, error)", [
      "result",
    ]),
    preemptions: counter(
      registry,
      "beemesh_agent_preemptions_total",
      "Pods evicted for a higher-priority task",
      [],
    ),
    removals: counter(registry, "beemesh_agent_removals_total", "Pods removed, by reason", ["reason"]),
  };
}

// --------------------------------------------------------------- agent ---

export class NodeAgent {
  readonly nodeId: string;
  readonly shards: readonly number[];
  private readonly bus: AgentBus;
  private readonly runtime: Runtime;
  private readonly kv: AgentBuckets;
  private readonly log: Logger;
  private readonly metrics: AgentMetrics;
  private readonly clock: ControllerClock;
  private readonly s: Settings;
  private readonly subj: Subjects;
  private readonly totalShards: number;
  private readonly manifests: ManifestCache;
  private readonly capabilities: string[];
  private readonly opts: NodeAgentOptions;

  private ledger: CapacityLedger | undefined;
  private capacity: Resources = { cpu_millis: 0, memory_bytes: 0, pods: 0 };
  private allocatable: Resources = { cpu_millis: 0, memory_bytes: 0, pods: 0 };
  private readonly seen = new Map<string, true>();
  private readonly known = new Map<string, KnownTask>();
  private readonly deferred = new Map<string, number>();
  private readonly held = new Map<string, HeldPod>();
  private readonly byPod = new Map<string, string>();
  private readonly leases = new Map<string, HeldLease>();
  private readonly subscriptions: BusSubscription<unknown>[] = [];
  private readonly loops: Promise<void>[] = [];
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly renewAlarm: Alarm;
  private readonly deferAlarm: Alarm;
  private housekeeping: unknown;
  private reconsiderQueued = false;
  private started = false;
  /** No new tasks, awards or requests; starts under way still finish. */
  private stopping = false;
  /** Nothing more goes out at all. */
  private halted = false;

  constructor(opts: NodeAgentOptions) {
    this.opts = opts;
    this.s = settingsOf(opts);
    this.nodeId = opts.nodeId;
    this.bus = opts.bus;
    this.runtime = opts.runtime;
    this.kv = opts.buckets;
    this.log = (opts.logger ?? silentLogger).child({ node_id: opts.nodeId });
    this.metrics = agentMetrics(opts.registry ?? new Registry());
    this.clock = opts.clock ?? systemClock;
    this.subj = subjects(opts.bus.prefix);
    this.totalShards = opts.shards ?? 1;
    this.shards = opts.shardList
      ? [...new Set(opts.shardList)].sort((a, b) => a - b)
      : shardSample(opts.nodeId, this.totalShards, opts.probeK ?? "all");
    for (const s of this.shards) {
      if (!Number.isSafeInteger(s) || s < 0 || s >= this.totalShards)
        throw new NodeAgentOptionsError(`node-agent: shard ${s} is outside 0..${this.totalShards - 1}`);
    }
    this.manifests = opts.manifestCache ?? new ManifestCache(opts.buckets.manifests);
    this.capabilities = [...new Set([opts.runtime.kind, ...(opts.capabilities ?? [])])].filter(
      (c) => c.length > 0,
    );
    this.renewAlarm = new Alarm(this.clock, () => this.renewDue());
    this.deferAlarm = new Alarm(this.clock, () => this.reconsider());
  }

  // ----------------------------------------------------------- lifecycle ---

  /** Adopts running pods, announces the node, subscribes; resolves once tasks can arrive. */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.started) return;
    this.started = true;
    signal?.addEventListener("abort", () => void this.stop(), { once: true });
    const cap = await this.runtime.capacity();
    this.capacity = {
      cpu_millis: this.opts.capacity?.cpu_millis ?? cap.total.cpuMillis,
      memory_bytes: this.opts.capacity?.memory_bytes ?? cap.total.memoryBytes,
      pods: this.opts.capacity?.pods ?? cap.total.pods,
    };
    this.allocatable = { ...this.capacity, ...this.opts.allocatable };
    this.ledger = new CapacityLedger(
      {
        node_id: this.nodeId,
        labels: { ...this.opts.labels },
        taints: [...(this.opts.taints ?? [])],
        allocatable: this.allocatable,
      },
      { bidHoldMs: this.s.bidHoldMs },
    );
    await this.adopt();
    await this.writeStatus().catch((err: unknown) =>
      this.log.warn("node status not written", { err: errorText(err) }),
    );

    const taskSpec = { type: "Task", parse: parseTask };
    const all = this.shards.length === this.totalShards;
    const taskSubjects = all
      ? [`${this.subj.prefix}.scheduler.tasks.*`]
      : this.shards.map((s) => this.subj.tasks(s));
    for (const subject of taskSubjects)
      this.consume(this.bus.subscribe(subject, taskSpec), (m) => this.onTask(m));
    this.consume(
      this.bus.subscribe(this.subj.leases(this.nodeId), { type: "Lease", parse: parseLease }),
      (m) => {
        this.onLease(m);
        return Promise.resolve();
      },
    );
    this.consume(this.bus.subscribe(this.subj.node(this.nodeId, NODE_VERBS.remove), REMOVE_SPEC), (m) =>
      this.track(this.onRemove(m)),
    );
    this.consume(this.bus.subscribe(this.subj.node(this.nodeId, NODE_VERBS.logs), LOGS_SPEC), (m) =>
      this.track(this.onLogs(m)),
    );
    this.consume(this.bus.subscribe(this.subj.node(this.nodeId, NODE_VERBS.status), STATUS_SPEC), (m) => {
      this.replyTo(m, { ok: true, pods: this.held.size });
      return Promise.resolve();
    });
    await this.bus.nc.flush();

    const jitter = Math.floor(Math.random() * Math.min(this.s.statusIntervalMs, 1000));
    this.scheduleHousekeeping(this.s.statusIntervalMs + jitter);
    this.armRenewals();
    this.log.info("node agent started", {
      shards: this.shards.length,
      of: this.totalShards,
      adopted: this.held.size,
    });
  }

  /**
   * Stops taking work and lets starts under way finish and report (bounded),
   * then stops renewing; pods keep running and a restarted agent adopts them.
   */
  async stop(): Promise<void> {
    if (this.halted || this.stopping) return;
    this.stopping = true;
    for (const sub of this.subscriptions) sub.unsubscribe();
    this.deferAlarm.cancel();
    await this.settle(5000);
    this.halted = true;
    this.cancelTimers();
    this.log.info("node agent stopped", { pods: this.held.size });
  }

  /**
   * The in-process equivalent of kill -9 for tests: stops every timer and
   * subscription at once and publishes nothing more (no events, no lease
   * cleanup). Close the bus right after to drop the connection.
   */
  kill(): void {
    this.halted = true;
    this.cancelTimers();
    for (const sub of this.subscriptions) sub.unsubscribe();
  }

  isReady(): boolean {
    return this.started && !this.halted && !this.stopping && this.ledger !== undefined;
  }

  /** Pods this agent holds a lease for, by pod name (for tests and status). */
  pods(): Array<{ pod: string; task_id: string; fencing_token: number; state: HeldState }> {
    return [...this.held.values()].map((h) => ({
      pod: h.pod,
      task_id: h.info.task_id,
      fencing_token: h.lease.fencingToken,
      state: h.state,
    }));
  }

  /** Capacity charged by pods and open bids. */
  used(): Resources {
    return this.ledgerOrThrow().used();
  }

  get allocatableResources(): Resources {
    return { ...this.allocatable };
  }

  private cancelTimers(): void {
    this.renewAlarm.cancel();
    this.deferAlarm.cancel();
    if (this.housekeeping !== undefined) this.clock.clearTimeout(this.housekeeping);
    this.housekeeping = undefined;
  }

  private async settle(timeoutMs: number): Promise<void> {
    const all = Promise.allSettled([...this.loops, ...this.inflight]);
    let timer: unknown;
    const bound = new Promise<void>((resolve) => (timer = this.clock.setTimeout(resolve, timeoutMs)));
    await Promise.race([all, bound]);
    this.clock.clearTimeout(timer);
  }

  private ledgerOrThrow(): CapacityLedger {
    if (!this.ledger) throw new Error("node-agent: not started");
    return this.ledger;
  }

  private consume<T>(sub: BusSubscription<T>, handle: (m: Received<T>) => Promise<unknown>): void {
    this.subscriptions.push(sub as BusSubscription<unknown>);
    const loop = (async () => {
      for await (const m of sub) {
        if (this.halted || this.stopping) break;
        try {
          await handle(m);
        } catch (err) {
          this.log.error("handler failed", { subject: m.subject, err: errorText(err) });
        }
      }
    })();
    this.loops.push(loop);
  }

  private track<T>(p: Promise<T>): Promise<void> {
    this.inflight.add(p);
    const done = p.then(
      () => undefined,
      (err: unknown) => this.log.error("background operation failed", { err: errorText(err) }),
    );
    void done.finally(() => this.inflight.delete(p));
    return Promise.resolve();
  }

  // ---------------------------------------------------------------- tasks ---

  private remember(key: string): boolean {
    if (this.seen.has(key)) return false;
    this.seen.set(key, true);
    if (this.seen.size > this.s.maxKnownTasks * 2) {
      const oldest = this.seen.keys().next();
      if (oldest.done !== true) this.seen.delete(oldest.value);
    }
    return true;
  }

  private async onTask(m: Received<Task>): Promise<void> {
    const task = m.payload;
    if (this.stopping || this.halted) return;
    if (!this.remember(`${task.task_id}/${task.attempt}`)) return;
    if (this.held.has(task.task_id)) return;
    const pod = podNameFor(task);
    let labels: Record<string, string>;
    try {
      const verified = await this.manifests.get(task.manifest_ref);
      labels = { ...verified.labels };
      const owner = this.ownershipProblem(m, task, verified.labels, verified.manifest.metadata.namespace);
      if (owner !== undefined) {
        this.sendBid(task, { fit: false, score: 0, reasons: [`ManifestNotOwned: ${owner}`] });
        return;
      }
    } catch (err) {
      this.sendBid(task, { fit: false, score: 0, reasons: [`ManifestUnavailable: ${errorText(err)}`] });
      return;
    }
    if (this.halted) return;
    const ledger = this.ledgerOrThrow();
    if (ledger.expire(this.clock.monotonic()).length > 0) this.queueReconsider();
    const decision = this.decide(task, pod, labels);
    this.rememberTask(task, pod, labels, decision);
    this.sendBid(task, decision);
    if (!decision.fit && decision.victims === undefined && deferrable(decision.reasons))
      this.defer(task.task_id);
  }

  /** The bid for a task now: one replica (preempting if need be), or as many of a batch as fit. */
  private decide(
    task: Task,
    pod: string,
    labels: Record<string, string>,
  ): BidDecision & { offered?: number } {
    const ledger = this.ledgerOrThrow();
    const now = this.clock.monotonic();
    const replicas = taskReplicaCount(task);
    if (replicas === 1)
      return ledger.bid(placementOf(task), now, { pod, labels }, { preemption: this.s.preemption });
    const d = ledger.bidBatch(placementOf(task), replicas, now, { pod, labels });
    return { fit: d.fit, score: d.score, reasons: d.reasons, offered: d.offered };
  }

  /**
   * DESIGN §2: a clone Task (from a workload) is accepted only for a manifest
   * of the sender's own parent; the template names its parent in the
   * beemesh.io/parent label, and its namespace if it has one.
   */
  private ownershipProblem(
    m: Received<Task>,
    task: Task,
    labels: Readonly<Record<string, string>>,
    namespace: string | undefined,
  ): string | undefined {
    const labelled = labels[PARENT_LABEL];
    if (labelled !== undefined && labelled !== task.parent)
      return `manifest belongs to ${labelled}, not ${task.parent}`;
    if (namespace !== undefined && namespace !== task.ns)
      return `manifest is for namespace ${namespace}, not ${task.ns}`;
    if (m.principal.kind === "workload" && labelled === undefined)
      return `a clone needs a manifest labelled ${PARENT_LABEL}=${task.parent}`;
    return undefined;
  }

  private rememberTask(task: Task, pod: string, labels: Record<string, string>, decision: BidDecision): void {
    this.known.delete(task.task_id);
    this.known.set(task.task_id, {
      task,
      info: taskInfo(task),
      pod,
      labels,
      victims: decision.victimKeys ?? (decision.victims ?? []).map((v) => v.task_id),
      seenMs: this.clock.monotonic(),
      replicas: taskReplicaCount(task),
    });
    if (this.known.size > this.s.maxKnownTasks) {
      const oldest = this.known.keys().next();
      if (oldest.done !== true) this.known.delete(oldest.value);
    }
  }

  private sendBid(task: Task, decision: BidDecision & { offered?: number }): void {
    if (this.halted) return;
    const victims =
      decision.victims !== undefined && decision.victims.length > 0
        ? decision.victims.slice(0, 256)
        : undefined;
    // A preempting bid does not fit as the node stands: `fit` false with the
    // victims it would evict (protocol bidRules), read the same by the keepers.
    const preempting = !decision.fit && victims !== undefined;
    const bid: Bid = {
      task_id: task.task_id,
      node_id: this.nodeId,
      score: decision.score,
      fit: decision.fit,
      reasons: clampReasons(decision.reasons),
      capabilities: this.capabilities,
      offered: decision.fit ? (decision.offered ?? 1) : preempting ? 1 : 0,
      ...(preempting ? { victims } : {}),
      nonce: newNonce(),
      ts: this.clock.now(),
    };
    this.bus.publish(this.subj.proposals(task.task_id), "Bid", bid);
    this.metrics.bids.inc({ outcome: decision.fit ? "fit" : preempting ? "preempt" : "nofit" });
  }

  private defer(taskId: string): void {
    if (this.deferred.size >= this.s.maxDeferred) return;
    this.deferred.set(taskId, this.clock.monotonic() + this.s.deferMs);
    this.armDeferred();
  }

  private armDeferred(): void {
    if (this.halted || this.deferred.size === 0) return;
    const next = this.ledger?.nextExpiryMs() ?? null;
    if (next !== null) this.deferAlarm.arm(Math.max(next, this.clock.monotonic() + 1));
  }

  private queueReconsider(): void {
    if (this.reconsiderQueued || this.deferred.size === 0 || this.halted) return;
    this.reconsiderQueued = true;
    this.clock.setTimeout(() => {
      this.reconsiderQueued = false;
      this.reconsider();
    }, 0);
  }

  /** Capacity came free: bid again, late, for the tasks refused for lack of it. */
  private reconsider(): void {
    if (this.halted || !this.ledger) return;
    const ledger = this.ledger;
    const now = this.clock.monotonic();
    ledger.expire(now);
    let budget = 2000;
    for (const [taskId, deadline] of [...this.deferred]) {
      if (budget-- <= 0) break;
      const known = this.known.get(taskId);
      if (deadline <= now || known === undefined || this.held.has(taskId) || ledger.has(taskId)) {
        this.deferred.delete(taskId);
        continue;
      }
      const decision = this.decide(known.task, known.pod, known.labels);
      if (decision.fit || decision.victims !== undefined) {
        known.victims = decision.victimKeys ?? (decision.victims ?? []).map((v) => v.task_id);
        this.deferred.delete(taskId);
        this.sendBid(known.task, decision);
      }
    }
    this.armDeferred();
  }

  // --------------------------------------------------------------- awards ---

  private onLease(m: Received<Lease>): void {
    const lease = m.payload;
    if (this.stopping || this.halted) return;
    if (lease.task_id === undefined || lease.winner_id !== this.nodeId) return;
    const first = lease.first ?? 0;
    const key = shareLeaseKey(lease.task_id, first);
    const current = this.leases.get(key);
    if (current !== undefined) {
      // A repeated notice; a newer award to the same node moves the fence.
      if (lease.fencing_token > current.fencingToken) {
        current.fencingToken = lease.fencing_token;
        current.revision = lease.version;
      }
      return;
    }
    const known = this.known.get(lease.task_id);
    if (known === undefined) {
      this.log.warn("award for a task this node does not know", { task_id: lease.task_id });
      this.metrics.awards.inc({ result: "unknown_task" });
      return;
    }
    if (first + lease.granted > known.replicas) {
      this.log.warn("award beyond the task's replicas", {
        task_id: lease.task_id,
        first,
        granted: lease.granted,
      });
      this.metrics.awards.inc({ result: "invalid" });
      return;
    }
    const held: HeldLease = {
      key,
      taskId: lease.task_id,
      first,
      granted: lease.granted,
      fencingToken: lease.fencing_token,
      revision: lease.version,
      lost: false,
      renewing: false,
      nextRenewMs: Number.POSITIVE_INFINITY,
      settleAtMs: null,
      pods: new Set(),
    };
    let resolveStarted!: () => void;
    const started = new Promise<void>((r) => (resolveStarted = r));
    void this.track(this.runAward(known, held, started).finally(() => resolveStarted()));
  }

  /** What a share's events say: the task, and the ordinal only when the share is one replica. */
  private shareInfo(known: KnownTask, lease: HeldLease): TaskInfo {
    if (lease.granted === 1) return taskInfo(known.task, lease.first);
    const { ordinal: _one, ...info } = known.info;
    return info;
  }

  private async runAward(known: KnownTask, lease: HeldLease, started: Promise<void>): Promise<void> {
    const { task } = known;
    const ledger = this.ledgerOrThrow();
    const now = this.clock.monotonic();
    ledger.expire(now);
    const batch = known.replicas > 1;
    const info = this.shareInfo(known, lease);
    const singlePod = batch ? undefined : known.pod;
    const pods: HeldPod[] = Array.from({ length: lease.granted }, (_, i) => {
      const replica = lease.first + i;
      const pod = batch ? podNameFor(task, replica) : known.pod;
      return {
        key: batch ? batchPodKey(task.task_id, pod) : task.task_id,
        info: taskInfo(task, replica),
        pod,
        lease,
        state: "starting",
        deploying: false,
        started,
        dropped: false,
      };
    });
    let evict: Victim[] = [];
    if (!batch) {
      if (!ledger.has(task.task_id)) {
        // The bid's hold ran out (a slow keeper, or a re-award after an expiry): take the room again.
        const r = this.reserveForAward(known, now);
        if (!r.ok) {
          this.metrics.awards.inc({ result: "no_capacity" });
          await this.publishEvent(info, "failed", {
            pod: known.pod,
            fencing_token: lease.fencingToken,
            reasons: r.reasons,
            details: "no room left at award",
          });
          return;
        }
      }
      const bound = ledger.bind(task.task_id);
      if (!bound.ok) {
        ledger.release(task.task_id);
        await this.publishEvent(info, "failed", {
          pod: known.pod,
          fencing_token: lease.fencingToken,
          details: bound.reason,
        });
        return;
      }
      evict = bound.evict;
    } else {
      const r = this.bindShareForAward(
        known,
        pods.map((p): SharePod => ({ key: p.key, pod: p.pod })),
        now,
      );
      if (!r.ok) {
        this.metrics.awards.inc({ result: "no_capacity" });
        await this.publishEvent(info, "failed", {
          fencing_token: lease.fencingToken,
          reasons: r.reasons,
          details: `no room left at award for ${lease.granted} replicas (${lease.first}..${lease.first + lease.granted - 1})`,
        });
        return;
      }
    }
    this.deferred.delete(task.task_id);
    this.leases.set(lease.key, lease);
    for (const p of pods) {
      lease.pods.add(p);
      this.held.set(p.key, p);
      this.byPod.set(p.pod, p.key);
    }

    for (const victim of evict) await this.evict(victim, task);

    // Confirm the lease (and reset the keepers' expiry clocks) before running anything.
    if (!(await this.renew(lease)) || this.halted) return;

    let manifest;
    try {
      manifest = (await this.manifests.get(task.manifest_ref)).manifest;
    } catch (err) {
      await this.failShare(lease, info, singlePod, `manifest: ${errorText(err)}`);
      return;
    }
    if (this.halted) return;
    for (const held of pods) {
      if (lease.lost || held.dropped) break;
      const failure = await this.deployPod(held, task, manifest);
      if (this.halted) return;
      if (failure !== undefined) {
        // All or none: the share goes back whole, so the keepers never split it.
        await this.failShare(lease, info, singlePod, failure);
        return;
      }
      held.state = "running";
    }
    const live = pods.filter((p) => !p.dropped);
    if (lease.lost || live.length < pods.length) {
      // Fenced (or a pod removed) while starting: another node holds the share now.
      for (const held of live) {
        await this.drop(held, {
          removePod: held.state === "running",
          deleteLease: false,
          event: held.state === "running" ? "removed" : undefined,
          details: "lease lost while starting",
        });
      }
      return;
    }
    lease.settleAtMs = this.clock.monotonic() + this.s.settleGraceMs;
    this.metrics.awards.inc({ result: "deployed" }, live.length);
    await Promise.all(live.map((held) => this.writeProvider(held, "running")));
    await this.publishEvent(info, "deployed", {
      ...(singlePod !== undefined ? { pod: singlePod } : {}),
      fencing_token: lease.fencingToken,
      ...(batch ? { details: this.shareText(lease, live) } : {}),
    });
  }

  private shareText(lease: HeldLease, pods: readonly HeldPod[]): string {
    const names =
      pods.length <= 3
        ? pods.map((p) => p.pod).join(", ")
        : `${pods[0]?.pod} .. ${pods[pods.length - 1]?.pod}`;
    return `replicas ${lease.first}..${lease.first + lease.granted - 1}: ${pods.length} pods (${names})`;
  }

  /** Starts one pod; returns why it failed, or undefined when it runs. */
  private async deployPod(held: HeldPod, task: Task, manifest: PodManifest): Promise<string | undefined> {
    const info = held.info;
    const identity: PodIdentity = {
      taskId: info.task_id,
      ns: info.ns,
      parent: info.parent,
      kind: info.kind,
      ...(info.ordinal !== undefined ? { ordinal: info.ordinal } : {}),
      generation: info.generation,
      fencingToken: held.lease.fencingToken,
    };
    held.deploying = true;
    try {
      let podManifest = withPodFacts(manifest, {
        podName: held.pod,
        nodeId: this.nodeId,
        taskId: info.task_id,
      });
      const wi = this.opts.workloadIdentity;
      if (wi !== undefined && sidecarsOf(podManifest).length > 0) {
        // The pod's own socket directory replaces the renderer's emptyDir placeholder.
        podManifest = injectAttachment(podManifest, await wi.attach(held.pod, identity));
      }
      await this.runtime.deploy({
        podName: held.pod,
        manifest: podManifest,
        identity,
        limits: { cpuMillis: task.reqs.cpu_millis, memoryBytes: task.reqs.memory_bytes },
      });
    } catch (err) {
      held.deploying = false;
      // A pod of that name still runs (a repeated award): it keeps its socket.
      if (!(err instanceof PodExistsError)) await this.detachIdentity(held.pod);
      if (!(err instanceof PodExistsError && (await this.isOurPod(held)))) return errorText(err);
    }
    held.deploying = false;
    return undefined;
  }

  /**
   * An award is a commitment, open bids are only hopes: when the room is held
   * by other bids' reservations, release the newest of them until the awarded
   * task fits. Their bids stand; if one of them is awarded later it claims
   * room the same way, or reports `failed` and the keeper moves on.
   */
  private reserveForAward(known: KnownTask, now: number): { ok: true } | { ok: false; reasons: string[] } {
    const ledger = this.ledgerOrThrow();
    const meta = { pod: known.pod, labels: known.labels };
    let r = ledger.reserve(placementOf(known.task), now, meta, known.victims);
    if (r.ok) return r;
    for (const key of this.speculativeReservations(known.task.task_id)) {
      ledger.release(key);
      r = ledger.reserve(placementOf(known.task), now, meta, known.victims);
      if (r.ok) return r;
    }
    return r;
  }

  /** The same for a batch share: other bids' reservations give way, newest first, until its pods fit. */
  private bindShareForAward(
    known: KnownTask,
    pods: readonly SharePod[],
    now: number,
  ): { ok: true } | { ok: false; reasons: string[] } {
    const ledger = this.ledgerOrThrow();
    const meta = { labels: known.labels };
    let r = ledger.bindShare(placementOf(known.task), pods, now, meta);
    if (r.ok) return r;
    for (const key of this.speculativeReservations(known.task.task_id)) {
      ledger.release(key);
      r = ledger.bindShare(placementOf(known.task), pods, now, meta);
      if (r.ok) return r;
    }
    return r;
  }

  /** Other tasks' open bid reservations, newest first. */
  private speculativeReservations(except: string): string[] {
    const ledger = this.ledgerOrThrow();
    return ledger
      .view()
      .pods.filter((p) => p.task_id !== except && ledger.stateOf(p.key ?? p.task_id) === "reserved")
      .sort((a, b) => b.started_at_ms - a.started_at_ms)
      .map((p) => p.key ?? p.task_id);
  }

  /** Withdraws a pod's Workload API socket and removes its directory (no-op without workload identity). */
  private async detachIdentity(pod: string): Promise<void> {
    const wi = this.opts.workloadIdentity;
    if (wi === undefined) return;
    await wi
      .detach(pod)
      .catch((err: unknown) =>
        this.log.warn("workload api socket not removed", { pod, err: errorText(err) }),
      );
  }

  private async isOurPod(held: HeldPod): Promise<boolean> {
    try {
      const listing = await this.runtime.list();
      const pod = listing.pods.find((p) => p.podName === held.pod);
      return (
        pod !== undefined &&
        pod.identity.taskId === held.info.task_id &&
        pod.identity.fencingToken === held.lease.fencingToken
      );
    } catch {
      return false;
    }
  }

  /**
   * A share could not start: the pods it did start go, its capacity comes back,
   * and `failed` tells the keepers. The lease stays: they re-award it by CAS.
   */
  private async failShare(
    lease: HeldLease,
    info: TaskInfo,
    pod: string | undefined,
    why: string,
  ): Promise<void> {
    this.metrics.awards.inc({ result: "failed" });
    this.log.warn("task failed to start", { task_id: lease.taskId, first: lease.first, pod, why });
    for (const held of [...lease.pods]) {
      if (held.state === "running") {
        await this.runtime
          .remove(held.pod)
          .catch((err: unknown) =>
            this.log.error("pod removal failed", { pod: held.pod, err: errorText(err) }),
          );
        await this.detachIdentity(held.pod);
      }
      this.forget(held);
    }
    await this.publishEvent(info, "failed", {
      ...(pod !== undefined ? { pod } : {}),
      fencing_token: lease.fencingToken,
      details: why.slice(0, 4096),
    });
    this.queueReconsider();
  }

  /** Stops tracking a pod and gives its capacity back; a lease with no pods left is no longer renewed. */
  private forget(held: HeldPod): void {
    held.dropped = true;
    if (this.held.get(held.key) === held) this.held.delete(held.key);
    if (this.byPod.get(held.pod) === held.key) this.byPod.delete(held.pod);
    this.ledger?.release(held.key);
    const lease = held.lease;
    lease.pods.delete(held);
    if (lease.pods.size === 0 && this.leases.get(lease.key) === lease) this.leases.delete(lease.key);
  }

  /**
   * Removes a held pod: runtime, ledger, provider record, optionally the lease
   * (once its share has no pod left); then one event.
   */
  private async drop(
    held: HeldPod,
    what: { removePod: boolean; deleteLease: boolean; event?: EventStatus; details?: string },
  ): Promise<boolean> {
    const wasDropped = held.dropped;
    this.forget(held);
    let removed = false;
    if (what.removePod) {
      try {
        removed = await this.runtime.remove(held.pod);
        await this.detachIdentity(held.pod);
      } catch (err) {
        this.log.error("pod removal failed", { pod: held.pod, err: errorText(err) });
      }
    }
    if (this.halted) return removed;
    await this.kv.providers
      .delete(kvKeys.provider(held.info.kind, held.info.ns, held.info.parent, held.pod))
      .catch(() => undefined);
    if (what.deleteLease && held.lease.pods.size === 0)
      await this.kv.leases.delete(held.lease.key).catch(() => undefined);
    if (what.event !== undefined && !wasDropped) {
      this.metrics.removals.inc({ reason: what.event });
      await this.publishEvent(held.info, what.event, {
        pod: held.pod,
        fencing_token: held.lease.fencingToken,
        ...(what.details !== undefined ? { details: what.details.slice(0, 4096) } : {}),
      });
    }
    this.queueReconsider();
    return removed;
  }

  private async evict(victim: Victim, by: Task): Promise<void> {
    const key = this.byPod.get(victim.pod);
    const held = key !== undefined ? this.held.get(key) : undefined;
    this.metrics.preemptions.inc();
    if (held === undefined) {
      await this.runtime
        .remove(victim.pod)
        .then(() => this.detachIdentity(victim.pod))
        .catch((err: unknown) => this.log.error("eviction failed", { pod: victim.pod, err: errorText(err) }));
      return;
    }
    await this.drop(held, {
      removePod: true,
      deleteLease: true,
      event: "preempted",
      details: `preempted by task ${by.task_id} (${by.ns}/${by.parent}, priority ${by.priority} > ${victim.priority})`,
    });
  }

  // ------------------------------------------------------------- renewals ---

  private intervalFor(lease: HeldLease): number {
    const settled = lease.settleAtMs !== null && this.clock.monotonic() >= lease.settleAtMs;
    return settled ? this.s.settledRenewIntervalMs : this.s.renewIntervalMs;
  }

  /** CAS-renews one share's lease; false when the lease is no longer this node's. */
  private async renew(lease: HeldLease): Promise<boolean> {
    if (lease.lost) return false;
    lease.renewing = true;
    try {
      const now = this.clock.now();
      const value: Lease = {
        task_id: lease.taskId,
        winner_id: this.nodeId,
        expires_at: now + this.s.leaseTtlMs,
        version: lease.revision,
        fencing_token: lease.fencingToken,
        granted: lease.granted,
        ...(lease.first > 0 ? { first: lease.first } : {}),
        ts: now,
      };
      lease.revision = await this.kv.leases.update(lease.key, encodeLease(value), lease.revision);
      this.metrics.renewals.inc({ result: "ok" });
      return true;
    } catch (err) {
      if (!isWrongLastSequence(err)) {
        // Transient (timeout, reconnect): try again soon; the keepers allow a TTL of slack.
        this.metrics.renewals.inc({ result: "error" });
        this.log.debug("lease renewal failed", { task_id: lease.taskId, err: errorText(err) });
        return true;
      }
      let current;
      try {
        current = await readLease(this.kv.leases, lease.taskId, lease.first);
      } catch {
        return true;
      }
      if (
        current !== undefined &&
        current.lease.winner_id === this.nodeId &&
        current.fencingToken === lease.fencingToken
      ) {
        lease.revision = current.revision;
        return true;
      }
      this.metrics.renewals.inc({ result: "lost" });
      await this.lose(
        lease,
        current === undefined
          ? "the lease is gone"
          : `now held by ${current.lease.winner_id} (fencing ${current.fencingToken})`,
      );
      return false;
    } finally {
      lease.renewing = false;
      lease.nextRenewMs = this.clock.monotonic() + this.intervalFor(lease);
      this.armRenewals();
    }
  }

  /** The lease moved on (we were judged dead): the share's pods must go. */
  private async lose(lease: HeldLease, why: string): Promise<void> {
    if (lease.lost) return;
    lease.lost = true;
    this.log.warn("lease lost", { task_id: lease.taskId, first: lease.first, pods: lease.pods.size, why });
    for (const held of [...lease.pods]) {
      if (held.deploying) continue; // the start finishes, sees `lost` and removes the pod
      if (held.state === "starting") {
        this.forget(held);
        this.metrics.awards.inc({ result: "lost" });
        continue;
      }
      await this.drop(held, {
        removePod: true,
        deleteLease: false,
        event: "removed",
        details: `lease lost: ${why}`,
      });
    }
  }

  private armRenewals(): void {
    if (this.halted) return;
    let next = Number.POSITIVE_INFINITY;
    for (const l of this.leases.values()) if (!l.renewing && l.nextRenewMs < next) next = l.nextRenewMs;
    if (Number.isFinite(next)) this.renewAlarm.arm(next);
  }

  private renewDue(): void {
    if (this.halted) return;
    const now = this.clock.monotonic();
    for (const l of [...this.leases.values()]) {
      if (!l.renewing && !l.lost && l.nextRenewMs <= now) void this.track(this.renew(l));
    }
    this.armRenewals();
  }

  // ------------------------------------------------------ remove and logs ---

  private replyTo(m: Received<unknown>, reply: Omit<NodeReply, "node_id" | "ts">): void {
    if (this.halted) return;
    const payload: NodeReply = { ...reply, node_id: this.nodeId, ts: this.clock.now() };
    try {
      this.bus.reply(m, NODE_REPLY_TYPE, payload);
    } catch (err) {
      this.log.warn("cannot reply", { subject: m.subject, err: errorText(err) });
    }
  }

  private findPod(pod: string, ns: string): HeldPod | undefined {
    const key = this.byPod.get(pod);
    const held = key !== undefined ? this.held.get(key) : undefined;
    return held !== undefined && held.info.ns === ns ? held : undefined;
  }

  private async onRemove(m: Received<RemoveRequest>): Promise<void> {
    const req = m.payload;
    const held = this.findPod(req.pod, req.ns);
    const refuse = (error: string) => this.replyTo(m, { ok: false, pod: req.pod, removed: false, error });
    if (held === undefined) return refuse(`no pod ${req.ns}/${req.pod} on node ${this.nodeId}`);
    if (held.info.parent !== req.parent || held.info.kind !== req.kind) {
      return refuse(
        `pod ${req.pod} belongs to ${held.info.kind} ${held.info.parent}, not ${req.kind} ${req.parent}`,
      );
    }
    if (req.task_id !== undefined && req.task_id !== held.info.task_id)
      return refuse(`pod ${req.pod} runs task ${held.info.task_id}`);
    if (req.fencing_token !== undefined && req.fencing_token !== held.lease.fencingToken) {
      return refuse(
        `stale fencing token ${req.fencing_token}; the pod runs under ${held.lease.fencingToken}`,
      );
    }
    await held.started;
    if (held.dropped) return refuse(`pod ${req.pod} is already gone`);
    const removed = await this.drop(held, {
      removePod: true,
      deleteLease: true,
      event: "removed",
      details: `removed on request (${req.reason}) by ${m.sender.toString()}`,
    });
    this.replyTo(m, { ok: true, pod: req.pod, removed });
  }

  private async onLogs(m: Received<LogsRequest>): Promise<void> {
    const req = m.payload;
    const held = this.findPod(req.pod, req.ns);
    if (held === undefined)
      return this.replyTo(m, {
        ok: false,
        pod: req.pod,
        error: `no pod ${req.ns}/${req.pod} on node ${this.nodeId}`,
      });
    try {
      const logs = await this.runtime.logs(held.pod, { tail: Math.min(req.tail ?? 100, MAX_LOG_LINES) });
      let budget = MAX_LOG_BYTES;
      const containers = logs.containers.slice(0, 64).map((c) => {
        const lines: string[] = [];
        for (let i = c.lines.length - 1; i >= 0 && budget > 0; i--) {
          const line = c.lines[i] ?? "";
          budget -= line.length + 4;
          if (budget >= 0) lines.unshift(line);
        }
        return { name: c.name, lines };
      });
      this.replyTo(m, { ok: true, pod: req.pod, logs: containers });
    } catch (err) {
      this.replyTo(m, { ok: false, pod: req.pod, error: errorText(err) });
    }
  }

  // ----------------------------------------------------------- adoption ---

  /** Pods the runtime already runs (a restart): keep them and their leases instead of starting them again. */
  private async adopt(): Promise<void> {
    const ledger = this.ledgerOrThrow();
    const listing = await this.runtime.list();
    for (const bad of listing.unparsable)
      this.log.warn("pod with unreadable beemesh labels left alone", {
        pod: bad.podName,
        reason: bad.reason,
      });
    // The pods of one share carry the same task and fencing token: one lease each group.
    const groups = new Map<string, typeof listing.pods>();
    for (const pod of listing.pods) {
      const k = `${pod.identity.taskId}/${pod.identity.fencingToken}`;
      groups.set(k, [...(groups.get(k) ?? []), pod]);
    }
    for (const group of groups.values()) {
      const id0 = group[0]!.identity;
      const found = await this.findLease(id0.taskId, id0.fencingToken, group.length);
      const rec = typeof found === "string" ? undefined : found;
      const first = rec?.lease.first ?? 0;
      const lease: HeldLease = {
        key: shareLeaseKey(id0.taskId, first),
        taskId: id0.taskId,
        first,
        granted: rec?.lease.granted ?? group.length,
        fencingToken: id0.fencingToken,
        revision: rec?.revision ?? 0,
        lost: false,
        renewing: false,
        nextRenewMs: this.clock.monotonic(),
        settleAtMs: this.clock.monotonic(),
        pods: new Set(),
      };
      const single = lease.first === 0 && lease.granted === 1;
      const adopted: Array<{ held: HeldPod; phase: string }> = [];
      for (const pod of group) {
        const id = pod.identity;
        const info: TaskInfo = {
          task_id: id.taskId,
          kind: id.kind,
          ns: id.ns,
          parent: id.parent,
          ...(id.ordinal !== undefined ? { ordinal: id.ordinal } : {}),
          generation: id.generation,
          attempt: 0,
        };
        const key = single ? id.taskId : batchPodKey(id.taskId, pod.podName);
        const held: HeldPod = {
          key,
          info,
          pod: pod.podName,
          lease,
          state: "running",
          deploying: false,
          started: Promise.resolve(),
          dropped: false,
        };
        ledger.addRunning(
          {
            key,
            task_id: id.taskId,
            ns: id.ns,
            parent: id.parent,
            pod: pod.podName,
            priority: ADOPTED_PRIORITY,
            reqs: { cpu_millis: pod.limits.cpuMillis, memory_bytes: pod.limits.memoryBytes, ports: [] },
          },
          this.clock.monotonic(),
        );
        lease.pods.add(held);
        this.held.set(key, held);
        this.byPod.set(pod.podName, key);
        adopted.push({ held, phase: pod.phase });
        // The pod still mounts its socket directory: serve its identity there again.
        await this.opts.workloadIdentity
          ?.attach(pod.podName, id)
          .catch((err: unknown) =>
            this.log.warn("workload api socket not restored", { pod: pod.podName, err: errorText(err) }),
          );
      }
      this.leases.set(lease.key, lease);
      if (typeof found !== "string") {
        for (const { held, phase } of adopted) {
          await this.writeProvider(
            held,
            phase === "running" ? "running" : phase === "failed" ? "failed" : "starting",
          );
          this.log.info("adopted pod", {
            pod: held.pod,
            task_id: id0.taskId,
            fencing_token: id0.fencingToken,
          });
        }
      } else {
        for (const { held } of adopted) {
          await this.drop(held, {
            removePod: true,
            deleteLease: false,
            event: "removed",
            details: `stale after restart: ${found}`,
          });
        }
      }
    }
  }

  /**
   * The lease of adopted pods (one share): still this node's under their
   * fencing token, or why not. A vanished single-replica lease is re-created;
   * a batch share's range cannot be known again, so its pods are stale.
   */
  private async findLease(taskId: string, fencingToken: number, pods: number): Promise<LeaseRecord | string> {
    const ours = (r: LeaseRecord | undefined) =>
      r !== undefined && r.lease.winner_id === this.nodeId && r.fencingToken === fencingToken;
    for (let attempt = 0; attempt < 3; attempt++) {
      const current = await readLease(this.kv.leases, taskId);
      if (ours(current)) return current!;
      const keys = await this.kv.leases.keys(`${TASK_LEASE_PREFIX}${taskId}.>`);
      for await (const k of keys) {
        const share = parseTaskLeaseKey(k);
        if (share === undefined || share.taskId !== taskId) continue;
        const r = decodeLeaseEntry(await this.kv.leases.get(k));
        if (ours(r)) return r!;
      }
      if (current !== undefined)
        return `lease held by ${current.lease.winner_id} (fencing ${current.fencingToken})`;
      if (pods > 1) return "the share's lease is gone";
      const now = this.clock.now();
      const lease: Lease = {
        task_id: taskId,
        winner_id: this.nodeId,
        expires_at: now + this.s.leaseTtlMs,
        version: 0,
        fencing_token: fencingToken,
        granted: 1,
        ts: now,
      };
      try {
        const revision = await this.kv.leases.create(shareLeaseKey(taskId, 0), encodeLease(lease));
        return { lease, revision, fencingToken };
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
      }
    }
    return "lease contended";
  }

  // ------------------------------------------------- status and events ---

  private scheduleHousekeeping(ms: number): void {
    if (this.halted) return;
    this.housekeeping = this.clock.setTimeout(() => {
      void this.track(this.houseKeep()).finally(() => this.scheduleHousekeeping(this.s.statusIntervalMs));
    }, ms);
  }

  private async houseKeep(): Promise<void> {
    const now = this.clock.monotonic();
    for (const [id, k] of [...this.known]) {
      if (now - k.seenMs <= this.s.taskMemoryMs) break;
      if (!this.held.has(id)) this.known.delete(id);
    }
    if ((this.ledger?.expire(now).length ?? 0) > 0) this.queueReconsider();
    await this.writeStatus().catch((err: unknown) =>
      this.log.warn("node status not written", { err: errorText(err) }),
    );
    for (const h of [...this.held.values()]) {
      if (h.state === "running" && !h.lease.lost) await this.writeProvider(h, "running");
    }
  }

  private async writeStatus(): Promise<void> {
    if (this.halted || !this.ledger) return;
    const used = this.ledger.used();
    const status: NodeStatus = {
      node_id: this.nodeId,
      capacity: { ...this.capacity },
      allocatable: { ...this.allocatable },
      used: { cpu_millis: used.cpu_millis, memory_bytes: used.memory_bytes, pods: used.pods },
      labels: { ...this.opts.labels },
      taints: [...(this.opts.taints ?? [])],
      shards: [...this.shards],
      last_seen: this.clock.now(),
    };
    await this.kv.nodes.put(kvKeys.node(this.nodeId), JSON.stringify(status));
  }

  private async writeProvider(held: HeldPod, state: ProviderState): Promise<void> {
    if (this.halted) return;
    const record: ProviderRecord = {
      ns: held.info.ns,
      kind: held.info.kind,
      parent: held.info.parent,
      pod: held.pod,
      node_id: this.nodeId,
      task_id: held.info.task_id,
      fencing_token: held.lease.fencingToken,
      generation: held.info.generation,
      ...(held.info.ordinal !== undefined ? { ordinal: held.info.ordinal } : {}),
      state,
      ts: this.clock.now(),
    };
    try {
      await this.kv.providers.put(
        kvKeys.provider(held.info.kind, held.info.ns, held.info.parent, held.pod),
        JSON.stringify(record),
      );
    } catch (err) {
      this.log.warn("provider record not written", { pod: held.pod, err: errorText(err) });
    }
  }

  private async publishEvent(
    info: TaskInfo,
    status: EventStatus,
    fields: { pod?: string; fencing_token?: number; details?: string; reasons?: string[] },
  ): Promise<void> {
    if (this.halted) return;
    const event = {
      task_id: info.task_id,
      node_id: this.nodeId,
      status,
      kind: info.kind,
      ns: info.ns,
      parent: info.parent,
      ...(fields.pod !== undefined ? { pod: fields.pod } : {}),
      ...(info.ordinal !== undefined ? { ordinal: info.ordinal } : {}),
      attempt: info.attempt,
      ...(fields.fencing_token !== undefined ? { fencing_token: fields.fencing_token } : {}),
      ...(fields.details !== undefined ? { details: fields.details } : {}),
      ...(fields.reasons !== undefined ? { reasons: clampReasons(fields.reasons) } : {}),
      ts: this.clock.now(),
    };
    // One copy per (task, status, award, node): a retried publish is dropped by the stream.
    const msgID = `${info.task_id}/${status}/${fields.fencing_token ?? 0}/${this.nodeId}/${fields.pod ?? ""}`;
    try {
      await this.bus.publishDurable(this.subj.events(info.kind, info.ns, info.parent), "Event", event, {
        msgID,
      });
    } catch (err) {
      this.log.warn("event not published", { status, task_id: info.task_id, err: errorText(err) });
    }
  }
}
