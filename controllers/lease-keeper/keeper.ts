// The lease-keeper driver (DESIGN §3): feeds the pure per-task state machine
// (./logic) with Tasks, Bids, node Events and lease renewals, and carries out
// what it asks: award by KV create (or CAS update on a re-award), tell the
// winner, emit Events, wake it on time. Several keepers run the same machines
// on the same inputs; the KV create lets exactly one award win, the others see
// the conflict and follow the lease they find.
//
// Inputs: Tasks and Events through JetStream ordered consumers (a keeper that
// reconnects resumes where it was, so it never misses a `deployed`), Bids on a
// core subscription (they only matter within the selection window), lease
// renewals through a KV watch (each new revision resets the expiry clock, which
// runs on this process's monotonic time), node statuses through a KV watch
// (how many nodes probe each shard, so a window can close as soon as all of
// them answered).
import { DeliverPolicy } from "@nats-io/jetstream";
import type { JsMsg } from "@nats-io/jetstream";
import { KvWatchInclude, type KV, type KvWatchEntry } from "@nats-io/kv";
import { Counter, Gauge, Registry } from "prom-client";
import {
  STREAMS,
  parseEvent,
  parseBid,
  parseNodeStatus,
  parseTask,
  subjects,
  taskReplicaCount,
  type Bid,
  type Event,
  type Lease,
  type Subjects,
  type Task,
} from "../../protocol/index.js";
import { newNonce, type Bus, type MessageSpec, type Received } from "../../protocol/bus/index.js";
import { Alarm, systemClock, type ControllerClock } from "../common/clock.js";
import { errorText, silentLogger, type Logger } from "../common/log.js";
import { MinHeap } from "../common/min-heap.js";
import {
  TASK_LEASES_FILTER,
  decodeLeaseEntry,
  encodeLease,
  isWrongLastSequence,
  parseTaskLeaseKey,
  readLease,
  shareLeaseKey,
} from "../common/lease-record.js";
import {
  LeaseKeeperLogic,
  type AwardResult,
  type KeeperAction,
  type KeeperEvent,
  type KeeperInput,
  type LeaseBid,
  type LeaseKeeperLimits,
  type LeaseKeeperOptions as LogicOptions,
  type NodeEventStatus,
  type TaggedAction,
} from "./logic/index.js";

export interface LeaseKeeperBuckets {
  leases: KV;
  nodes: KV;
}

export interface LeaseKeeperOptions {
  bus: Bus;
  buckets: LeaseKeeperBuckets;
  logger?: Logger;
  registry?: Registry;
  clock?: ControllerClock;
  /** Uniform in [0, 1): the selection window's jitter. */
  random?: () => number;
  /** Selection window, TTL, backoffs (see ./logic/options.ts). */
  logic?: LogicOptions;
  limits?: LeaseKeeperLimits;
  /** Close a window once every node known to probe the task's shard has bid (default true). */
  earlyClose?: boolean;
  /** A node status older than this does not count as a prober (default 30 s). */
  nodeStaleMs?: number;
  /** Ticks are coalesced to at most one per this many ms (default 5). */
  tickGranularityMs?: number;
}

// -------------------------------------------------------------- metrics ---

interface KeeperMetrics {
  awards: Counter<"result">;
  events: Counter<"status">;
  active: Gauge;
}

function keeperMetrics(registry: Registry, active: () => number): KeeperMetrics {
  const get = <T>(name: string, make: () => T): T =>
    (registry.getSingleMetric(name) as T | undefined) ?? make();
  return {
    awards: get(
      "beemesh_keeper_awards_total",
      () =>
        new Counter({
          name: "beemesh_keeper_awards_total",
          help: "Lease award attempts: won (this keeper's write landed), conflict (another's did), error",
          labelNames: ["result"],
          registers: [registry],
        }),
    ),
    events: get(
      "beemesh_keeper_events_total",
      () =>
        new Counter({
          name: "beemesh_keeper_events_total",
          help: "Events emitted by the lease-keeper, by status",
          labelNames: ["status"],
          registers: [registry],
        }),
    ),
    active: get(
      "beemesh_keeper_active_tasks",
      () =>
        new Gauge({
          name: "beemesh_keeper_active_tasks",
          help: "Tasks whose lease this keeper is following",
          registers: [registry],
          collect() {
            this.set(active());
          },
        }),
    ),
  };
}

const NODE_STATUSES = new Set(["deployed", "failed", "removed", "preempted"]);

interface TaskEntry {
  task: Task;
  subject: string;
}

interface NodeEntry {
  shards: number[];
  seenMs: number;
}

// --------------------------------------------------------------- keeper ---

export class LeaseKeeper {
  private readonly bus: Bus;
  private readonly kv: LeaseKeeperBuckets;
  private readonly log: Logger;
  private readonly clock: ControllerClock;
  private readonly subj: Subjects;
  private readonly logic: LeaseKeeperLogic;
  private readonly metrics: KeeperMetrics;
  private readonly leaseTtlMs: number;
  private readonly earlyClose: boolean;
  private readonly nodeStaleMs: number;
  private readonly granularity: number;
  private readonly tasks = new Map<string, TaskEntry>();
  private readonly nodes = new Map<string, NodeEntry>();
  private readonly probers = new Map<number, number>();
  /** Wake times; stale entries only cost a spare tick. */
  private readonly wakes = new MinHeap<number>((x, y) => x < y);
  private readonly alarm: Alarm;
  private readonly stops: Array<() => void> = [];
  private readonly loops: Promise<void>[] = [];
  private readonly inflight = new Set<Promise<unknown>>();
  private pruneTimer: unknown;
  private republishWarned = false;
  private started = false;
  private halted = false;

  constructor(private readonly opts: LeaseKeeperOptions) {
    this.bus = opts.bus;
    this.kv = opts.buckets;
    this.log = opts.logger ?? silentLogger;
    this.clock = opts.clock ?? systemClock;
    this.subj = subjects(opts.bus.prefix);
    const random = opts.random ?? Math.random;
    this.logic = new LeaseKeeperLogic(opts.logic ?? {}, { random }, opts.limits);
    this.leaseTtlMs = opts.logic?.leaseTtlMs ?? 3000;
    this.earlyClose = opts.earlyClose ?? true;
    this.nodeStaleMs = opts.nodeStaleMs ?? 30_000;
    this.granularity = opts.tickGranularityMs ?? 5;
    this.metrics = keeperMetrics(opts.registry ?? new Registry(), () => this.logic.activeTasks());
    this.alarm = new Alarm(this.clock, () => this.onAlarm());
  }

  async start(signal?: AbortSignal): Promise<void> {
    if (this.started) return;
    this.started = true;
    signal?.addEventListener("abort", () => void this.stop(), { once: true });
    const prefix = this.subj.prefix;

    // Node statuses first (their initial values), so the first tasks already know their probers.
    const nodeWatch = await this.kv.nodes.watch({ include: KvWatchInclude.LastValue });
    this.stops.push(() => nodeWatch.stop());
    this.loop("nodes", nodeWatch, (e) => this.onNodeEntry(e));

    const leaseWatch = await this.kv.leases.watch({
      key: TASK_LEASES_FILTER,
      include: KvWatchInclude.UpdatesOnly,
    });
    this.stops.push(() => leaseWatch.stop());
    this.loop("leases", leaseWatch, (e) => this.onLeaseEntry(e));

    const bids = this.bus.subscribe(this.subj.allProposals, { type: "Bid", parse: parseBid });
    this.stops.push(() => bids.unsubscribe());
    this.loop("bids", bids, (m) => this.onBid(m));

    const tasks = await this.consumeStream(STREAMS.tasks, `${prefix}.scheduler.tasks.>`, {
      type: "Task",
      parse: parseTask,
    });
    this.loop("tasks", tasks, (m) => this.onTask(m));
    const events = await this.consumeStream(STREAMS.events, `${prefix}.scheduler.events.>`, {
      type: "Event",
      parse: parseEvent,
    });
    this.loop("events", events, (m) => this.onEvent(m));

    await this.bus.nc.flush();
    this.schedulePrune();
    this.log.info("lease-keeper started", { spiffe_id: this.bus.spiffeId });
  }

  async stop(): Promise<void> {
    if (this.halted) return;
    this.halted = true;
    this.alarm.cancel();
    if (this.pruneTimer !== undefined) this.clock.clearTimeout(this.pruneTimer);
    for (const stop of this.stops) {
      try {
        stop();
      } catch {
        // already stopped
      }
    }
    let timer: unknown;
    await Promise.race([
      Promise.allSettled([...this.loops, ...this.inflight]),
      new Promise<void>((r) => (timer = this.clock.setTimeout(r, 5000))),
    ]);
    this.clock.clearTimeout(timer);
    this.log.info("lease-keeper stopped");
  }

  isReady(): boolean {
    return this.started && !this.halted;
  }

  /** Tasks this keeper still follows (not yet deployed, removed or deleted). */
  activeTasks(): number {
    return this.logic.activeTasks();
  }

  // ------------------------------------------------------------- inputs ---

  private async consumeStream<T>(
    stream: string,
    filter: string,
    spec: MessageSpec<T>,
  ): Promise<AsyncIterable<Received<T, JsMsg>>> {
    const consumer = await this.bus.js.consumers.get(stream, {
      filter_subjects: filter,
      deliver_policy: DeliverPolicy.New,
    });
    const messages = await consumer.consume();
    this.stops.push(() => void messages.close().catch(() => undefined));
    return this.bus.verified(messages, spec);
  }

  private loop<M>(what: string, source: AsyncIterable<M>, handle: (m: M) => void): void {
    this.loops.push(
      (async () => {
        try {
          for await (const m of source) {
            if (this.halted) break;
            try {
              handle(m);
            } catch (err) {
              this.log.error("input handler failed", { input: what, err: errorText(err) });
            }
          }
        } catch (err) {
          if (!this.halted) this.log.error("input stream ended", { input: what, err: errorText(err) });
        }
      })(),
    );
  }

  private onTask(m: Received<Task, JsMsg>): void {
    const task = m.payload;
    const shard = Number(m.subject.slice(m.subject.lastIndexOf(".") + 1));
    const known = this.tasks.get(task.task_id);
    if (known === undefined || task.attempt > known.task.attempt)
      this.tasks.set(task.task_id, { task, subject: m.subject });
    const expected = this.earlyClose && Number.isSafeInteger(shard) ? this.probers.get(shard) : undefined;
    this.step({
      type: "task",
      task: {
        task_id: task.task_id,
        priority: task.priority,
        attempt: task.attempt,
        replicas: taskReplicaCount(task),
      },
      ...(expected !== undefined && expected > 0 ? { expectedBids: expected } : {}),
      nowMs: this.clock.monotonic(),
    });
  }

  private onBid(m: Received<Bid>): void {
    const b = m.payload;
    // The wire and the logic read a bid alike: `fit` false with victims fits only by evicting them.
    const bid: LeaseBid = {
      task_id: b.task_id,
      node_id: b.node_id,
      score: b.score,
      fit: b.fit,
      reasons: b.reasons,
      ...(b.victims !== undefined ? { victims: b.victims } : {}),
      offered: b.offered,
    };
    this.step({ type: "bid", bid, nowMs: this.clock.monotonic() });
  }

  private onEvent(m: Received<Event, JsMsg>): void {
    const e = m.payload;
    if (!NODE_STATUSES.has(e.status) || e.node_id === undefined) return;
    // Only the node itself speaks for its pods.
    if (m.principal.kind !== "node" || m.principal.nodeId !== e.node_id) return;
    // A report that overtakes the lease it is about waits in the logic until that lease is followed.
    this.step({
      type: "nodeEvent",
      task_id: e.task_id,
      status: e.status as NodeEventStatus,
      node_id: e.node_id,
      ...(e.fencing_token !== undefined ? { fencing_token: e.fencing_token } : {}),
      nowMs: this.clock.monotonic(),
    });
  }

  private onLeaseEntry(entry: KvWatchEntry): void {
    const key = parseTaskLeaseKey(entry.key);
    if (key === undefined) return;
    const { taskId, first } = key;
    const now = this.clock.monotonic();
    if (entry.operation !== "PUT") {
      this.step({ type: "leaseDeleted", task_id: taskId, first, nowMs: now });
      return;
    }
    const rec = decodeLeaseEntry(entry);
    if (rec === undefined) {
      this.log.warn("unreadable lease", { key: entry.key, revision: entry.revision });
      return;
    }
    this.step({
      type: "leaseObserved",
      task_id: taskId,
      first,
      lease: {
        winner_id: rec.lease.winner_id,
        revision: entry.revision,
        granted: rec.lease.granted,
        fencing_token: rec.fencingToken,
      },
      nowMs: now,
    });
  }

  private onNodeEntry(entry: KvWatchEntry): void {
    const previous = this.nodes.get(entry.key);
    if (previous !== undefined) this.countProbers(previous.shards, -1);
    this.nodes.delete(entry.key);
    if (entry.operation !== "PUT") return;
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder().decode(entry.value));
    } catch {
      return;
    }
    const parsed = parseNodeStatus(raw);
    if (!parsed.ok) return;
    const age = Math.max(0, this.clock.now() - parsed.value.last_seen);
    if (age > this.nodeStaleMs) return;
    const node: NodeEntry = { shards: parsed.value.shards, seenMs: this.clock.monotonic() - age };
    this.nodes.set(entry.key, node);
    this.countProbers(node.shards, 1);
  }

  private countProbers(shards: readonly number[], delta: number): void {
    for (const s of shards) {
      const n = (this.probers.get(s) ?? 0) + delta;
      if (n > 0) this.probers.set(s, n);
      else this.probers.delete(s);
    }
  }

  private schedulePrune(): void {
    if (this.halted) return;
    this.pruneTimer = this.clock.setTimeout(
      () => {
        const cutoff = this.clock.monotonic() - this.nodeStaleMs;
        for (const [id, n] of [...this.nodes]) {
          if (n.seenMs < cutoff) {
            this.nodes.delete(id);
            this.countProbers(n.shards, -1);
          }
        }
        this.schedulePrune();
      },
      Math.max(1000, this.nodeStaleMs / 3),
    );
  }

  // ------------------------------------------------------------ actions ---

  private step(input: KeeperInput): void {
    if (this.halted) return;
    this.apply(this.logic.step(input));
  }

  private apply(actions: TaggedAction[]): void {
    const touched = new Set<string>();
    for (const { task_id, action } of actions) {
      touched.add(task_id);
      switch (action.type) {
        case "schedule":
          this.wake(action.atMs);
          break;
        case "award":
          this.track(this.award(task_id, action));
          break;
        case "emit":
          this.emit(action.event);
          break;
        case "republish":
          this.republish(task_id, action.attempt);
          break;
      }
    }
    for (const id of touched) {
      if (this.logic.machine(id) === undefined && this.logic.wasFinished(id)) this.tasks.delete(id);
    }
  }

  private wake(atMs: number): void {
    const at = Math.max(atMs, this.clock.monotonic());
    this.wakes.push(at);
    const armed = this.alarm.armedAt;
    // Coalesce: a wake a few ms after the armed one rides along with it.
    if (armed === null || at < armed - this.granularity) this.alarm.arm(at);
  }

  private onAlarm(): void {
    if (this.halted) return;
    const now = this.clock.monotonic();
    // Timers may fire a little early; only what is due now is ticked, the rest re-armed.
    while (this.wakes.size > 0 && (this.wakes.peek() ?? Infinity) <= now) this.wakes.pop();
    try {
      this.apply(this.logic.step({ type: "tick", nowMs: now }));
    } catch (err) {
      this.log.error("tick failed", { err: errorText(err) });
    }
    const next = this.wakes.peek();
    if (next !== undefined) this.alarm.arm(Math.max(next, now + 1));
  }

  private track(p: Promise<unknown>): void {
    this.inflight.add(p);
    void p
      .catch((err: unknown) => this.log.error("keeper operation failed", { err: errorText(err) }))
      .finally(() => this.inflight.delete(p));
  }

  /** One share's award: KV create (or CAS update on a re-award), then the notice to the winner. */
  private async award(taskId: string, action: Extract<KeeperAction, { type: "award" }>): Promise<void> {
    const { bid, prevRevision } = action;
    const first = action.first ?? 0;
    const key = shareLeaseKey(taskId, first);
    const now = this.clock.now();
    const lease: Lease = {
      task_id: taskId,
      winner_id: bid.node_id,
      expires_at: now + this.leaseTtlMs,
      version: prevRevision ?? 0,
      // 0: "the revision of this entry" (lease-record.ts); the winner's renewals carry it.
      fencing_token: 0,
      granted: action.granted ?? 1,
      ...(first > 0 ? { first } : {}),
      ts: now,
    };
    let result: AwardResult;
    try {
      const revision =
        prevRevision === null
          ? await this.kv.leases.create(key, encodeLease(lease))
          : await this.kv.leases.update(key, encodeLease(lease), prevRevision);
      result = { ok: true, revision };
    } catch (err) {
      const conflict = isWrongLastSequence(err);
      if (!conflict) this.log.warn("award write failed", { task_id: taskId, first, err: errorText(err) });
      const current = await readLease(this.kv.leases, taskId, first).catch(() => undefined);
      if (
        !conflict &&
        current !== undefined &&
        current.lease.winner_id === bid.node_id &&
        current.lease.fencing_token === 0 &&
        current.revision > (prevRevision ?? 0)
      ) {
        // The write landed although its answer was lost.
        result = { ok: true, revision: current.revision };
      } else {
        result = {
          ok: false,
          current:
            current === undefined
              ? null
              : {
                  winner_id: current.lease.winner_id,
                  revision: current.revision,
                  granted: current.lease.granted,
                  fencing_token: current.fencingToken,
                },
        };
      }
      this.metrics.awards.inc({ result: conflict ? "conflict" : "error" });
    }
    if (this.halted) return;
    if (result.ok) {
      this.metrics.awards.inc({ result: "won" });
      const notice: Lease = {
        ...lease,
        version: result.revision,
        fencing_token: result.revision,
        ts: this.clock.now(),
      };
      this.bus.publish(this.subj.leases(bid.node_id), "Lease", notice);
    }
    this.apply(
      this.logic.step({ type: "awardResult", task_id: taskId, first, result, nowMs: this.clock.monotonic() }),
    );
  }

  private emit(e: KeeperEvent): void {
    const entry = this.tasks.get(e.task_id);
    if (entry === undefined) return;
    const t = entry.task;
    const reasons = e.reasons?.slice(0, 64).map((r) => (r.length > 1024 ? `${r.slice(0, 1021)}...` : r));
    const event: Event = {
      task_id: e.task_id,
      ...(e.node_id !== undefined ? { node_id: e.node_id } : {}),
      status: e.status,
      kind: t.kind,
      ns: t.ns,
      parent: t.parent,
      ...(t.ordinal !== undefined ? { ordinal: t.ordinal } : {}),
      attempt: e.attempt,
      ...(e.fencing_token !== undefined ? { fencing_token: e.fencing_token } : {}),
      ...(e.details !== undefined ? { details: e.details.slice(0, 4096) } : {}),
      ...(reasons !== undefined ? { reasons } : {}),
      ts: this.clock.now(),
    };
    this.metrics.events.inc({ status: e.status });
    this.track(
      this.bus
        .publishDurable(this.subj.events(t.kind, t.ns, t.parent), "Event", event, { msgID: e.dedup_id })
        .catch((err: unknown) =>
          this.log.warn("event not published", { status: e.status, task_id: e.task_id, err: errorText(err) }),
        ),
    );
  }

  private republish(taskId: string, attempt: number): void {
    const entry = this.tasks.get(taskId);
    if (entry === undefined) return;
    const task: Task = { ...entry.task, attempt, nonce: newNonce(), ts: this.clock.now() };
    entry.task = task;
    this.track(
      this.bus
        .publishDurable(entry.subject, "Task", task, { msgID: `${taskId}/attempt-${attempt}` })
        .catch((err: unknown) => {
          // The lease-keeper role publishes on the tasks subjects (identity/nats-config.ts, bus authz keeperRepublish).
          const level = this.republishWarned ? "debug" : "warn";
          this.republishWarned = true;
          this.log[level]("task not republished", { task_id: taskId, attempt, err: errorText(err) });
        }),
    );
  }
}
