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
// node never hears that it lost. Tasks refused only for capacity are deferred
// and bid again (a late bid) when reservations free up, so a burst larger
// than one node's room still converges without a republish.
import { Counter, Registry } from "prom-client";
import type { KV } from "@nats-io/kv";
import {
  kvKeys,
  parseLease,
  parseTask,
  subjects,
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
import type { Logger } from "../common/log.js";
import { encodeLease, isWrongLastSequence, readLease, taskLeaseKey } from "../common/lease-record.js";
import { fnv1a32 } from "./logic/hash.js";
import {
  CapacityLedger,
  PARENT_LABEL,
  RESOLVABLE_BY_EVICTION,
  type BidDecision,
  type FitReasonCode,
  type PlacementTask,
  type Resources,
  type Victim,
} from "./logic/index.js";
import { ManifestCache } from "./manifests.js";
import {
  LOGS_SPEC,
  MAX_LOG_BYTES,
  MAX_LOG_LINES,
  NODE_REPLY_TYPE,
  REMOVE_SPEC,
  type LogsRequest,
  type NodeReply,
} from "./node-api.js";
import { PodExistsError, type PodIdentity, type Runtime, type WorkloadKind } from "./runtime/index.js";

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
  pod: string;
  labels: Record<string, string>;
  victims: string[];
  seenMs: number;
}

type HeldState = "starting" | "running";

interface HeldPod {
  info: TaskInfo;
  pod: string;
  fencingToken: number;
  revision: number;
  state: HeldState;
  deploying: boolean;
  /** Settles when the start (deploy or failure) is over. */
  started: Promise<void>;
  lost: boolean;
  dropped: boolean;
  renewing: boolean;
  nextRenewMs: number;
  settleAtMs: number | null;
}

function taskInfo(task: Task): TaskInfo {
  const ordinal = task.ordinal ?? task.ordinals?.[0];
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
 * stable name), `<parent>-<last 10 of the task id>` for a Deployment replica.
 */
export function podNameFor(task: Pick<Task, "kind" | "parent" | "task_id" | "ordinal" | "ordinals">): string {
  const ordinal = task.ordinal ?? task.ordinals?.[0];
  const suffix =
    task.kind === "StatefulSet" && ordinal !== undefined
      ? String(ordinal)
      : task.task_id.slice(-10).toLowerCase();
  const base = task.parent
    .replace(/\./g, "-")
    .slice(0, 62 - suffix.length)
    .replace(/-+$/, "");
  return `${base}-${suffix}`;
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

const errorText = (err: unknown): string =>
  err instanceof Error ? `${err.name}: ${err.message}` : String(err);

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

const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};

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
    this.consume(this.bus.subscribe(this.subj.node(this.nodeId, "remove"), REMOVE_SPEC), (m) =>
      this.track(this.onRemove(m)),
    );
    this.consume(this.bus.subscribe(this.subj.node(this.nodeId, "logs"), LOGS_SPEC), (m) =>
      this.track(this.onLogs(m)),
    );
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
      fencing_token: h.fencingToken,
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
    const replicas = task.count ?? task.ordinals?.length ?? 1;
    if (replicas > 1) {
      this.sendBid(task, {
        fit: false,
        score: 0,
        reasons: [`BatchUnsupported: this agent places one replica per task, the task asks for ${replicas}`],
      });
      return;
    }
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
    const decision = ledger.bid(
      placementOf(task),
      this.clock.monotonic(),
      { pod, labels },
      { preemption: this.s.preemption },
    );
    this.rememberTask(task, pod, labels, decision);
    this.sendBid(task, decision);
    if (!decision.fit && decision.victims === undefined && deferrable(decision.reasons))
      this.defer(task.task_id);
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
      victims: (decision.victims ?? []).map((v) => v.task_id),
      seenMs: this.clock.monotonic(),
    });
    if (this.known.size > this.s.maxKnownTasks) {
      const oldest = this.known.keys().next();
      if (oldest.done !== true) this.known.delete(oldest.value);
    }
  }

  private sendBid(task: Task, decision: BidDecision): void {
    if (this.halted) return;
    const victims =
      decision.victims !== undefined && decision.victims.length > 0
        ? decision.victims.slice(0, 256)
        : undefined;
    // On the wire a preempting bid fits "given these evictions" (protocol bidRules:
    // a bid that does not fit names no victims); the keeper maps it back.
    const bid: Bid = {
      task_id: task.task_id,
      node_id: this.nodeId,
      score: decision.score,
      fit: decision.fit || victims !== undefined,
      reasons: clampReasons(decision.reasons),
      capabilities: this.capabilities,
      offered: decision.fit || victims !== undefined ? 1 : 0,
      ...(victims !== undefined ? { victims } : {}),
      nonce: newNonce(),
      ts: this.clock.now(),
    };
    this.bus.publish(this.subj.proposals(task.task_id), "Bid", bid);
    this.metrics.bids.inc({ outcome: decision.fit ? "fit" : victims !== undefined ? "preempt" : "nofit" });
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
      const decision = ledger.bid(
        placementOf(known.task),
        now,
        { pod: known.pod, labels: known.labels },
        { preemption: this.s.preemption },
      );
      if (decision.fit || decision.victims !== undefined) {
        known.victims = (decision.victims ?? []).map((v) => v.task_id);
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
    const current = this.held.get(lease.task_id);
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
    let resolveStarted!: () => void;
    const held: HeldPod = {
      info: known.info,
      pod: known.pod,
      fencingToken: lease.fencing_token,
      revision: lease.version,
      state: "starting",
      deploying: false,
      started: new Promise<void>((r) => (resolveStarted = r)),
      lost: false,
      dropped: false,
      renewing: false,
      nextRenewMs: Number.POSITIVE_INFINITY,
      settleAtMs: null,
    };
    void this.track(this.runAward(known, held).finally(() => resolveStarted()));
  }

  private async runAward(known: KnownTask, held: HeldPod): Promise<void> {
    const { task, info } = known;
    const ledger = this.ledgerOrThrow();
    const now = this.clock.monotonic();
    ledger.expire(now);
    if (!ledger.has(task.task_id)) {
      // The bid's hold ran out (a slow keeper, or a re-award after an expiry): take the room again.
      const r = this.reserveForAward(known, now);
      if (!r.ok) {
        this.metrics.awards.inc({ result: "no_capacity" });
        await this.publishEvent(info, "failed", {
          pod: known.pod,
          fencing_token: held.fencingToken,
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
        fencing_token: held.fencingToken,
        details: bound.reason,
      });
      return;
    }
    this.deferred.delete(task.task_id);
    this.held.set(task.task_id, held);
    this.byPod.set(held.pod, task.task_id);

    for (const victim of bound.evict) await this.evict(victim, task);

    // Confirm the lease (and reset the keepers' expiry clocks) before running anything.
    if (!(await this.renew(held)) || this.halted) return;

    let manifest;
    try {
      manifest = (await this.manifests.get(task.manifest_ref)).manifest;
    } catch (err) {
      await this.failStart(held, `manifest: ${errorText(err)}`);
      return;
    }
    if (this.halted) return;
    if (held.lost || held.dropped) {
      this.forget(held);
      return;
    }
    const identity: PodIdentity = {
      taskId: info.task_id,
      ns: info.ns,
      parent: info.parent,
      kind: info.kind,
      ...(info.ordinal !== undefined ? { ordinal: info.ordinal } : {}),
      generation: info.generation,
      fencingToken: held.fencingToken,
    };
    held.deploying = true;
    try {
      await this.runtime.deploy({
        podName: held.pod,
        manifest,
        identity,
        limits: { cpuMillis: task.reqs.cpu_millis, memoryBytes: task.reqs.memory_bytes },
      });
    } catch (err) {
      held.deploying = false;
      if (!(err instanceof PodExistsError && (await this.isOurPod(held)))) {
        await this.failStart(held, errorText(err));
        return;
      }
    }
    held.deploying = false;
    if (this.halted) return;
    if (held.lost || held.dropped) {
      // Fenced while starting: another node holds the task now.
      await this.drop(held, {
        removePod: true,
        deleteLease: false,
        event: "removed",
        details: "lease lost while starting",
      });
      return;
    }
    held.state = "running";
    held.settleAtMs = this.clock.monotonic() + this.s.settleGraceMs;
    this.metrics.awards.inc({ result: "deployed" });
    await this.writeProvider(held, "running");
    await this.publishEvent(info, "deployed", { pod: held.pod, fencing_token: held.fencingToken });
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
    const speculative = ledger
      .view()
      .pods.filter((p) => p.task_id !== known.task.task_id && ledger.stateOf(p.task_id) === "reserved")
      .sort((a, b) => b.started_at_ms - a.started_at_ms);
    for (const p of speculative) {
      ledger.release(p.task_id);
      r = ledger.reserve(placementOf(known.task), now, meta, known.victims);
      if (r.ok) return r;
    }
    return r;
  }

  private async isOurPod(held: HeldPod): Promise<boolean> {
    try {
      const listing = await this.runtime.list();
      const pod = listing.pods.find((p) => p.podName === held.pod);
      return (
        pod !== undefined &&
        pod.identity.taskId === held.info.task_id &&
        pod.identity.fencingToken === held.fencingToken
      );
    } catch {
      return false;
    }
  }

  private async failStart(held: HeldPod, why: string): Promise<void> {
    this.metrics.awards.inc({ result: "failed" });
    this.log.warn("task failed to start", { task_id: held.info.task_id, pod: held.pod, why });
    this.forget(held);
    // The lease stays: the keepers re-award it by CAS to the next best bid.
    await this.publishEvent(held.info, "failed", {
      pod: held.pod,
      fencing_token: held.fencingToken,
      details: why.slice(0, 4096),
    });
    this.queueReconsider();
  }

  /** Stops tracking a pod and gives its capacity back. */
  private forget(held: HeldPod): void {
    held.dropped = true;
    if (this.held.get(held.info.task_id) === held) this.held.delete(held.info.task_id);
    if (this.byPod.get(held.pod) === held.info.task_id) this.byPod.delete(held.pod);
    this.ledger?.release(held.info.task_id);
  }

  /** Removes a held pod: runtime, ledger, provider record, optionally the lease; then one event. */
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
      } catch (err) {
        this.log.error("pod removal failed", { pod: held.pod, err: errorText(err) });
      }
    }
    if (this.halted) return removed;
    await this.kv.providers
      .delete(kvKeys.provider(held.info.kind, held.info.ns, held.info.parent, held.pod))
      .catch(() => undefined);
    if (what.deleteLease) await this.kv.leases.delete(taskLeaseKey(held.info.task_id)).catch(() => undefined);
    if (what.event !== undefined && !wasDropped) {
      this.metrics.removals.inc({ reason: what.event });
      await this.publishEvent(held.info, what.event, {
        pod: held.pod,
        fencing_token: held.fencingToken,
        ...(what.details !== undefined ? { details: what.details.slice(0, 4096) } : {}),
      });
    }
    this.queueReconsider();
    return removed;
  }

  private async evict(victim: Victim, by: Task): Promise<void> {
    const held = this.held.get(victim.task_id);
    this.metrics.preemptions.inc();
    if (held === undefined) {
      await this.runtime
        .remove(victim.pod)
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

  private intervalFor(held: HeldPod): number {
    const settled =
      held.state === "running" && held.settleAtMs !== null && this.clock.monotonic() >= held.settleAtMs;
    return settled ? this.s.settledRenewIntervalMs : this.s.renewIntervalMs;
  }

  /** CAS-renews one lease; false when the lease is no longer this node's. */
  private async renew(held: HeldPod): Promise<boolean> {
    if (held.lost) return false;
    held.renewing = true;
    try {
      const now = this.clock.now();
      const lease: Lease = {
        task_id: held.info.task_id,
        winner_id: this.nodeId,
        expires_at: now + this.s.leaseTtlMs,
        version: held.revision,
        fencing_token: held.fencingToken,
        granted: 1,
        ts: now,
      };
      held.revision = await this.kv.leases.update(
        taskLeaseKey(held.info.task_id),
        encodeLease(lease),
        held.revision,
      );
      this.metrics.renewals.inc({ result: "ok" });
      return true;
    } catch (err) {
      if (!isWrongLastSequence(err)) {
        // Transient (timeout, reconnect): try again soon; the keepers allow a TTL of slack.
        this.metrics.renewals.inc({ result: "error" });
        this.log.debug("lease renewal failed", { task_id: held.info.task_id, err: errorText(err) });
        return true;
      }
      let current;
      try {
        current = await readLease(this.kv.leases, held.info.task_id);
      } catch {
        return true;
      }
      if (
        current !== undefined &&
        current.lease.winner_id === this.nodeId &&
        current.fencingToken === held.fencingToken
      ) {
        held.revision = current.revision;
        return true;
      }
      this.metrics.renewals.inc({ result: "lost" });
      await this.lose(
        held,
        current === undefined
          ? "the lease is gone"
          : `now held by ${current.lease.winner_id} (fencing ${current.fencingToken})`,
      );
      return false;
    } finally {
      held.renewing = false;
      held.nextRenewMs = this.clock.monotonic() + this.intervalFor(held);
      this.armRenewals();
    }
  }

  /** The lease moved on (we were judged dead): this copy must go. */
  private async lose(held: HeldPod, why: string): Promise<void> {
    if (held.lost) return;
    held.lost = true;
    this.log.warn("lease lost", { task_id: held.info.task_id, pod: held.pod, why });
    if (held.deploying) return; // the start finishes, sees `lost` and removes the pod
    if (held.state === "starting") {
      this.forget(held);
      this.metrics.awards.inc({ result: "lost" });
      return;
    }
    await this.drop(held, {
      removePod: true,
      deleteLease: false,
      event: "removed",
      details: `lease lost: ${why}`,
    });
  }

  private armRenewals(): void {
    if (this.halted) return;
    let next = Number.POSITIVE_INFINITY;
    for (const h of this.held.values()) if (!h.renewing && h.nextRenewMs < next) next = h.nextRenewMs;
    if (Number.isFinite(next)) this.renewAlarm.arm(next);
  }

  private renewDue(): void {
    if (this.halted) return;
    const now = this.clock.monotonic();
    for (const h of [...this.held.values()]) {
      if (!h.renewing && !h.lost && h.nextRenewMs <= now) void this.track(this.renew(h));
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
    const taskId = this.byPod.get(pod);
    const held = taskId !== undefined ? this.held.get(taskId) : undefined;
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
    if (req.fencing_token !== undefined && req.fencing_token !== held.fencingToken) {
      return refuse(`stale fencing token ${req.fencing_token}; the pod runs under ${held.fencingToken}`);
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
    for (const pod of listing.pods) {
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
      const held: HeldPod = {
        info,
        pod: pod.podName,
        fencingToken: id.fencingToken,
        revision: 0,
        state: "running",
        deploying: false,
        started: Promise.resolve(),
        lost: false,
        dropped: false,
        renewing: false,
        nextRenewMs: this.clock.monotonic(),
        settleAtMs: this.clock.monotonic(),
      };
      ledger.addRunning(
        {
          task_id: id.taskId,
          ns: id.ns,
          parent: id.parent,
          pod: pod.podName,
          priority: ADOPTED_PRIORITY,
          reqs: { cpu_millis: pod.limits.cpuMillis, memory_bytes: pod.limits.memoryBytes, ports: [] },
        },
        this.clock.monotonic(),
      );
      this.held.set(id.taskId, held);
      this.byPod.set(pod.podName, id.taskId);
      const verdict = await this.reclaimLease(held);
      if (verdict === "ours") {
        await this.writeProvider(
          held,
          pod.phase === "running" ? "running" : pod.phase === "failed" ? "failed" : "starting",
        );
        this.log.info("adopted pod", { pod: held.pod, task_id: id.taskId, fencing_token: id.fencingToken });
      } else {
        await this.drop(held, {
          removePod: true,
          deleteLease: false,
          event: "removed",
          details: `stale after restart: ${verdict}`,
        });
      }
    }
  }

  /** Whether an adopted pod's lease is still this node's; re-creates a vanished one. */
  private async reclaimLease(held: HeldPod): Promise<"ours" | string> {
    const key = taskLeaseKey(held.info.task_id);
    for (let attempt = 0; attempt < 3; attempt++) {
      const current = await readLease(this.kv.leases, held.info.task_id);
      if (current !== undefined) {
        if (current.lease.winner_id === this.nodeId && current.fencingToken === held.fencingToken) {
          held.revision = current.revision;
          return "ours";
        }
        return `lease held by ${current.lease.winner_id} (fencing ${current.fencingToken})`;
      }
      const now = this.clock.now();
      try {
        held.revision = await this.kv.leases.create(
          key,
          encodeLease({
            task_id: held.info.task_id,
            winner_id: this.nodeId,
            expires_at: now + this.s.leaseTtlMs,
            version: 0,
            fencing_token: held.fencingToken,
            granted: 1,
            ts: now,
          }),
        );
        return "ours";
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
      if (h.state === "running" && !h.lost) await this.writeProvider(h, "running");
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
      fencing_token: held.fencingToken,
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
