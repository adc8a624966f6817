// Capacity ledger of one node: every bid reserves what it offers, an award
// binds the reservation, a lost bid / removal / expiry releases it. The
// invariant, checked by `reserve` and kept by `bind`: the sum of charges never
// exceeds allocatable in any dimension, so concurrent bids cannot overcommit.
//
// A preempting reservation charges only its excess over its victims
// (max(0, request - victims) per dimension) while the victims, still running,
// charge in full; its victims become unavailable to other bids. On award the
// victims are removed and the task charges in full, which fits because
// request <= victims + excess. On loss the victims simply stay. The I/O layer
// must evict the victims before it starts the preempting pod.
//
// Batches (DESIGN §3.6): a bid for many replicas reserves as many as fit under
// the task id in one entry; each award of a share turns part of it into one
// bound entry per pod (key `<task id>/<replica>`), the rest stays reserved for
// another share of the same bid until its hold runs out.
import { evaluateTask, toVictim } from "./bid.js";
import type { BidDecision, EvaluateOptions } from "./bid.js";
import { PARENT_LABEL, checkFit, reasonStrings, selectorMatches } from "./fit.js";
import type { NodeView, PlacementTask, PodOnNode, PortRequest, Resources, Taint, Victim } from "./types.js";

export interface LedgerNode {
  node_id: string;
  labels: Record<string, string>;
  taints: Taint[];
  allocatable: Resources;
}

export interface LedgerOptions {
  /** How long a bid's reservation is held without an award (default 5000 ms). */
  bidHoldMs?: number;
}

export const DEFAULT_BID_HOLD_MS = 5000;

/** Name and labels of the pod a task would become (from its manifest). */
export interface PodMeta {
  pod?: string;
  labels?: Record<string, string>;
}

type EntryState = "reserved" | "bound";

interface Entry {
  key: string;
  task_id: string;
  ns: string;
  parent: string;
  pod: string;
  priority: number;
  labels: Record<string, string>;
  ports: PortRequest[];
  request: Resources;
  charge: Resources;
  state: EntryState;
  victims: string[];
  earmarkedBy: string | null;
  addedAtMs: number;
  expiresAtMs: number | null;
}

export type ReserveResult = { ok: true } | { ok: false; reasons: string[] };
export type BindResult = { ok: true; evict: Victim[] } | { ok: false; reason: string };

/** What a node answers to a batch: how many replicas it takes now, and its score for them. */
export interface BatchBidDecision {
  fit: boolean;
  /** Replicas reserved for this bid (0 when it does not fit). */
  offered: number;
  score: number;
  reasons: string[];
}

/** One pod of an awarded share: its ledger key and name. */
export interface SharePod {
  key: string;
  pod: string;
}

export type BindShareResult = { ok: true } | { ok: false; reasons: string[] };

/** The ledger key of one replica of a batch. */
export function replicaKey(taskId: string, replica: number): string {
  return `${taskId}/${replica}`;
}

function times(r: Resources, n: number): Resources {
  return { cpu_millis: r.cpu_millis * n, memory_bytes: r.memory_bytes * n, pods: r.pods * n };
}

function requestOf(task: PlacementTask): Resources {
  return { cpu_millis: task.reqs.cpu_millis, memory_bytes: task.reqs.memory_bytes, pods: 1 };
}

function sub0(a: Resources, b: Resources): Resources {
  return {
    cpu_millis: Math.max(0, a.cpu_millis - b.cpu_millis),
    memory_bytes: Math.max(0, a.memory_bytes - b.memory_bytes),
    pods: Math.max(0, a.pods - b.pods),
  };
}

function add(a: Resources, b: Resources): Resources {
  return {
    cpu_millis: a.cpu_millis + b.cpu_millis,
    memory_bytes: a.memory_bytes + b.memory_bytes,
    pods: a.pods + b.pods,
  };
}

const ZERO: Resources = { cpu_millis: 0, memory_bytes: 0, pods: 0 };

export class CapacityLedger {
  private node: LedgerNode;
  private readonly entries = new Map<string, Entry>();
  private readonly bidHoldMs: number;

  constructor(node: LedgerNode, options: LedgerOptions = {}) {
    this.node = { ...node };
    this.bidHoldMs = options.bidHoldMs ?? DEFAULT_BID_HOLD_MS;
  }

  /** New labels, taints or allocatable (existing entries stay; a shrink may leave the node over until pods go). */
  updateNode(node: Partial<Omit<LedgerNode, "node_id">>): void {
    this.node = { ...this.node, ...node };
  }

  view(): NodeView {
    return { ...this.node, pods: [...this.entries.values()].map((e) => this.toPod(e)) };
  }

  used(): Resources {
    let used = ZERO;
    for (const e of this.entries.values()) used = add(used, e.charge);
    return used;
  }

  has(taskId: string): boolean {
    return this.entries.has(taskId);
  }

  stateOf(taskId: string): EntryState | undefined {
    return this.entries.get(taskId)?.state;
  }

  /** Evaluate a task against the current view (no reservation). */
  evaluate(task: PlacementTask, options?: EvaluateOptions): BidDecision {
    return evaluateTask(task, this.view(), options);
  }

  /**
   * Evaluate and, when the node can take the task (fitting or by preemption),
   * reserve it. The returned decision is what the Bid carries.
   */
  bid(task: PlacementTask, nowMs: number, meta: PodMeta = {}, options?: EvaluateOptions): BidDecision {
    const existing = this.entries.get(task.task_id);
    if (existing !== undefined) {
      // A repeated task (republished attempt): re-evaluate without our own entry, keep the hold.
      this.entries.delete(task.task_id);
      const decision = this.evaluate(task, options);
      this.entries.set(task.task_id, existing);
      return decision;
    }
    const decision = this.evaluate(task, options);
    if (decision.fit || decision.victims !== undefined) {
      const victims = decision.victimKeys ?? (decision.victims ?? []).map((v) => v.task_id);
      const reserved = this.reserve(task, nowMs, meta, victims);
      if (!reserved.ok) return { fit: false, score: 0, reasons: reserved.reasons };
    }
    return decision;
  }

  /** Hold capacity for a bid. Refuses anything that would overcommit the node. */
  reserve(
    task: PlacementTask,
    nowMs: number,
    meta: PodMeta = {},
    victimTaskIds: readonly string[] = [],
  ): ReserveResult {
    if (this.entries.has(task.task_id)) return { ok: true };
    const victims: Entry[] = [];
    for (const id of new Set(victimTaskIds)) {
      const v = this.entries.get(id);
      if (v === undefined || v.state !== "bound" || v.earmarkedBy !== null || v.priority >= task.priority) {
        return {
          ok: false,
          reasons: [`InvalidVictim: ${id} is not a preemptible pod of lower priority here`],
        };
      }
      victims.push(v);
    }
    const victimSet = new Set(victims);
    const view: NodeView = {
      ...this.node,
      pods: [...this.entries.values()].filter((e) => !victimSet.has(e)).map((e) => this.toPod(e)),
    };
    const fit = checkFit(task, view);
    if (!fit.fit) return { ok: false, reasons: reasonStrings(fit.reasons) };

    const request = requestOf(task);
    const victimCharge = victims.reduce((acc, v) => add(acc, v.charge), ZERO);
    const charge = victims.length > 0 ? sub0(request, victimCharge) : request;
    for (const v of victims) v.earmarkedBy = task.task_id;
    this.putReservation(task, meta, nowMs, request, charge, victims);
    return { ok: true };
  }

  /** Holds `charge` for a bid under the task id until the bid hold runs out (or an award binds it). */
  private putReservation(
    task: PlacementTask,
    meta: PodMeta,
    nowMs: number,
    request: Resources,
    charge: Resources,
    victims: readonly Entry[],
  ): void {
    this.entries.set(task.task_id, {
      key: task.task_id,
      task_id: task.task_id,
      ns: task.ns,
      parent: task.parent,
      pod: meta.pod ?? task.task_id,
      priority: task.priority,
      labels: { ...(meta.labels ?? {}) },
      ports: task.reqs.ports.map((p) => ({ ...p })),
      request,
      charge,
      state: "reserved",
      victims: victims.map((v) => v.key),
      earmarkedBy: null,
      addedAtMs: nowMs,
      expiresAtMs: nowMs + this.bidHoldMs,
    });
  }

  /** The award arrived: evict the victims (returned) and charge the task in full. */
  bind(taskId: string): BindResult {
    const e = this.entries.get(taskId);
    if (e === undefined) return { ok: false, reason: `no reservation for ${taskId}` };
    if (e.state === "bound") return { ok: true, evict: [] };
    const evict: Victim[] = [];
    for (const id of e.victims) {
      const v = this.entries.get(id);
      if (v !== undefined) {
        evict.push(toVictim(this.toPod(v)));
        this.entries.delete(id);
      }
    }
    e.victims = [];
    e.charge = e.request;
    e.state = "bound";
    e.expiresAtMs = null;
    return { ok: true, evict };
  }

  /**
   * How many of `wanted` replicas of a batch fit now (no preemption), reserved
   * under the task id until the hold runs out. Host ports, or an anti-affinity
   * that matches the replicas' own labels, allow one replica per node.
   */
  bidBatch(
    task: PlacementTask,
    wanted: number,
    nowMs: number,
    meta: PodMeta = {},
    options?: EvaluateOptions,
  ): BatchBidDecision {
    // A republished attempt voids the last one's offer: bid afresh.
    if (this.entries.get(task.task_id)?.state === "reserved") this.release(task.task_id);
    const one = this.evaluate(task, { ...options, preemption: false });
    if (!one.fit) return { fit: false, offered: 0, score: 0, reasons: one.reasons };
    const n = Math.min(wanted, this.roomFor(task, meta));
    if (n < 1) return { fit: false, offered: 0, score: 0, reasons: ["TooManyPods: no room left"] };
    const request = times(requestOf(task), n);
    this.putReservation(task, meta, nowMs, request, request, []);
    return { fit: true, offered: n, score: one.score, reasons: [] };
  }

  /**
   * A share was awarded: its pods become bound entries, charged from the
   * task's reservation first and from free room for the rest. Refuses (and
   * changes nothing) when they do not all fit.
   */
  bindShare(
    task: PlacementTask,
    pods: readonly SharePod[],
    nowMs: number,
    meta: PodMeta = {},
  ): BindShareResult {
    if (pods.length === 0) return { ok: true };
    const per = requestOf(task);
    const reservation = this.entries.get(task.task_id);
    const reserved = reservation !== undefined && reservation.state === "reserved" ? reservation : undefined;
    const fromHold = reserved !== undefined ? Math.min(pods.length, reserved.request.pods) : 0;
    const extra = times(per, pods.length - fromHold);
    const used = this.used();
    const after = add(used, extra);
    const reasons: string[] = [];
    if (after.cpu_millis > this.node.allocatable.cpu_millis)
      reasons.push(`InsufficientCPU: the share needs ${extra.cpu_millis}m more cpu than is free`);
    if (after.memory_bytes > this.node.allocatable.memory_bytes)
      reasons.push(`InsufficientMemory: the share needs ${extra.memory_bytes} more bytes than are free`);
    if (after.pods > this.node.allocatable.pods)
      reasons.push(`TooManyPods: the share needs ${extra.pods} more pod slots than are free`);
    for (const p of pods) {
      if (this.entries.has(p.key)) reasons.push(`InvalidRequest: ${p.key} is already on this node`);
    }
    if (reasons.length > 0) return { ok: false, reasons };
    if (reserved !== undefined) {
      const left = reserved.request.pods - fromHold;
      if (left <= 0) this.entries.delete(task.task_id);
      else {
        reserved.request = times(per, left);
        reserved.charge = reserved.request;
      }
    }
    for (const p of pods) {
      this.entries.set(p.key, {
        key: p.key,
        task_id: task.task_id,
        ns: task.ns,
        parent: task.parent,
        pod: p.pod,
        priority: task.priority,
        labels: { ...(meta.labels ?? {}) },
        ports: task.reqs.ports.map((x) => ({ ...x })),
        request: per,
        charge: per,
        state: "bound",
        victims: [],
        earmarkedBy: null,
        addedAtMs: nowMs,
        expiresAtMs: null,
      });
    }
    return { ok: true };
  }

  /** Replicas of `task` that fit in the free room (at most one with host ports or a self-matching anti-affinity). */
  private roomFor(task: PlacementTask, meta: PodMeta): number {
    const used = this.used();
    const free = sub0(this.node.allocatable, used);
    let n = free.pods;
    if (task.reqs.cpu_millis > 0) n = Math.min(n, Math.floor(free.cpu_millis / task.reqs.cpu_millis));
    if (task.reqs.memory_bytes > 0) n = Math.min(n, Math.floor(free.memory_bytes / task.reqs.memory_bytes));
    const own = { ...(meta.labels ?? {}), [PARENT_LABEL]: task.parent };
    if (
      task.reqs.ports.length > 0 ||
      (task.anti_affinity !== undefined && selectorMatches(task.anti_affinity, own))
    )
      n = Math.min(n, 1);
    return Math.max(0, n);
  }

  /**
   * Record a pod that already runs (restart recovery). Returns false when it
   * does not fit the recorded capacity; it is recorded anyway, since it runs.
   */
  addRunning(
    pod: {
      /** Ledger key (default the task id; a batch pod's is replicaKey()). */
      key?: string;
      task_id: string;
      ns: string;
      parent: string;
      pod: string;
      priority: number;
      labels?: Record<string, string>;
      reqs: PlacementTask["reqs"];
    },
    nowMs: number,
  ): boolean {
    const request: Resources = {
      cpu_millis: pod.reqs.cpu_millis,
      memory_bytes: pod.reqs.memory_bytes,
      pods: 1,
    };
    const after = add(this.used(), request);
    const within =
      after.cpu_millis <= this.node.allocatable.cpu_millis &&
      after.memory_bytes <= this.node.allocatable.memory_bytes &&
      after.pods <= this.node.allocatable.pods;
    const key = pod.key ?? pod.task_id;
    this.entries.set(key, {
      key,
      task_id: pod.task_id,
      ns: pod.ns,
      parent: pod.parent,
      pod: pod.pod,
      priority: pod.priority,
      labels: { ...(pod.labels ?? {}) },
      ports: pod.reqs.ports.map((p) => ({ ...p })),
      request,
      charge: request,
      state: "bound",
      victims: [],
      earmarkedBy: null,
      addedAtMs: nowMs,
      expiresAtMs: null,
    });
    return within;
  }

  /** Lost bid, failed start or removed pod: give the capacity back (and free any earmarked victims). */
  release(taskId: string): boolean {
    const e = this.entries.get(taskId);
    if (e === undefined) return false;
    for (const id of e.victims) {
      const v = this.entries.get(id);
      if (v !== undefined && v.earmarkedBy === taskId) v.earmarkedBy = null;
    }
    if (e.earmarkedBy !== null) {
      // A victim went away on its own: the preempting reservation now needs its full charge.
      const holder = this.entries.get(e.earmarkedBy);
      if (holder !== undefined) {
        holder.victims = holder.victims.filter((id) => id !== taskId);
        this.entries.delete(taskId);
        this.recharge(holder);
        return true;
      }
    }
    this.entries.delete(taskId);
    return true;
  }

  /** Release reservations whose bid hold ran out; returns their task ids. */
  expire(nowMs: number): string[] {
    const expired: string[] = [];
    for (const e of [...this.entries.values()]) {
      if (e.state === "reserved" && e.expiresAtMs !== null && e.expiresAtMs <= nowMs) {
        this.release(e.key);
        expired.push(e.key);
      }
    }
    return expired;
  }

  /** Earliest reservation expiry, for the driver's timer. */
  nextExpiryMs(): number | null {
    let next: number | null = null;
    for (const e of this.entries.values()) {
      if (e.expiresAtMs !== null && (next === null || e.expiresAtMs < next)) next = e.expiresAtMs;
    }
    return next;
  }

  private recharge(holder: Entry): void {
    const victimCharge = holder.victims
      .map((id) => this.entries.get(id)?.charge ?? ZERO)
      .reduce((acc, c) => add(acc, c), ZERO);
    const wanted = holder.victims.length > 0 ? sub0(holder.request, victimCharge) : holder.request;
    const others = sub0(this.used(), holder.charge);
    const after = add(others, wanted);
    if (
      after.cpu_millis <= this.node.allocatable.cpu_millis &&
      after.memory_bytes <= this.node.allocatable.memory_bytes &&
      after.pods <= this.node.allocatable.pods
    ) {
      holder.charge = wanted;
    } else {
      // The freed room was taken meanwhile: the preempting bid can no longer be honoured.
      this.release(holder.key);
    }
  }

  private toPod(e: Entry): PodOnNode {
    return {
      key: e.key,
      task_id: e.task_id,
      ns: e.ns,
      parent: e.parent,
      pod: e.pod,
      priority: e.priority,
      labels: e.labels,
      charge: e.charge,
      ports: e.ports,
      started_at_ms: e.addedAtMs,
      preemptible: e.state === "bound" && e.earmarkedBy === null,
    };
  }
}
