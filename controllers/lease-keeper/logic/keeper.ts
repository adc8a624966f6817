// Many task machines behind one input: routes by task_id, buffers bids that
// arrive before their task (core NATS bids can overtake the JetStream task),
// and forgets finished tasks while remembering their ids for a while so a
// late republish does not start them again.
import { TaskLeaseMachine } from "./machine.js";
import type { MachineDeps } from "./machine.js";
import { parseLeaseKeeperOptions } from "./options.js";
import type { LeaseKeeperOptions, LeaseKeeperSettings } from "./options.js";
import type {
  AwardResult,
  KeeperAction,
  LeaseBid,
  LeaseTask,
  NodeEventStatus,
  ObservedLease,
} from "./types.js";

export type KeeperInput =
  | { type: "task"; task: LeaseTask; expectedBids?: number; nowMs: number }
  | { type: "bid"; bid: LeaseBid; nowMs: number }
  | { type: "awardResult"; task_id: string; first?: number; result: AwardResult; nowMs: number }
  | { type: "leaseObserved"; task_id: string; first?: number; lease: ObservedLease; nowMs: number }
  | { type: "leaseDeleted"; task_id: string; first?: number; nowMs: number }
  | {
      type: "nodeEvent";
      task_id: string;
      status: NodeEventStatus;
      node_id: string;
      fencing_token?: number;
      nowMs: number;
    }
  | { type: "tick"; nowMs: number };

export interface TaggedAction {
  task_id: string;
  action: KeeperAction;
}

export interface LeaseKeeperLimits {
  /** Bids kept for an unknown task this long (default 5000 ms). */
  orphanBidTtlMs?: number;
  /** Most unknown tasks with buffered bids (default 10000). */
  maxOrphanTasks?: number;
  /** Finished task ids remembered (default 100000). */
  maxFinished?: number;
}

/** Inputs about a task this keeper has not been given yet (core bids and events can overtake it). */
interface Orphan {
  firstMs: number;
  bids: LeaseBid[];
  reports: Array<{ status: NodeEventStatus; node_id: string; fencing_token: number }>;
}

const MAX_ORPHAN_REPORTS = 64;

export class LeaseKeeperLogic {
  private readonly settings: LeaseKeeperSettings;
  private readonly machines = new Map<string, TaskLeaseMachine>();
  private readonly orphans = new Map<string, Orphan>();
  private readonly finished = new Set<string>();
  private readonly orphanBidTtlMs: number;
  private readonly maxOrphanTasks: number;
  private readonly maxFinished: number;

  constructor(
    options: LeaseKeeperOptions,
    private readonly deps: MachineDeps,
    limits: LeaseKeeperLimits = {},
  ) {
    this.settings = parseLeaseKeeperOptions(options);
    this.orphanBidTtlMs = limits.orphanBidTtlMs ?? 5000;
    this.maxOrphanTasks = limits.maxOrphanTasks ?? 10_000;
    this.maxFinished = limits.maxFinished ?? 100_000;
  }

  machine(taskId: string): TaskLeaseMachine | undefined {
    return this.machines.get(taskId);
  }

  activeTasks(): number {
    return this.machines.size;
  }

  wasFinished(taskId: string): boolean {
    return this.finished.has(taskId);
  }

  /** Earliest tick any machine (or the orphan buffer) wants. */
  nextWakeMs(): number | null {
    let next: number | null = null;
    for (const m of this.machines.values()) {
      const at = m.nextWakeMs();
      if (at !== null && (next === null || at < next)) next = at;
    }
    for (const o of this.orphans.values()) {
      const at = o.firstMs + this.orphanBidTtlMs;
      if (next === null || at < next) next = at;
    }
    return next;
  }

  step(input: KeeperInput): TaggedAction[] {
    switch (input.type) {
      case "task":
        return this.onTask(input.task, input.nowMs, input.expectedBids);
      case "bid": {
        const m = this.machines.get(input.bid.task_id);
        if (m !== undefined) return this.run(m, { type: "bid", bid: input.bid, nowMs: input.nowMs });
        if (!this.finished.has(input.bid.task_id)) this.bufferOrphan(input.bid, input.nowMs);
        return [];
      }
      case "tick": {
        const out: TaggedAction[] = [];
        for (const m of [...this.machines.values()]) {
          const at = m.nextWakeMs();
          if (at !== null && at <= input.nowMs)
            out.push(...this.run(m, { type: "tick", nowMs: input.nowMs }));
        }
        for (const [id, o] of [...this.orphans]) {
          if (o.firstMs + this.orphanBidTtlMs <= input.nowMs) this.orphans.delete(id);
        }
        return out;
      }
      case "awardResult":
      case "leaseObserved":
      case "leaseDeleted":
      case "nodeEvent": {
        const m = this.machines.get(input.task_id);
        if (m === undefined) {
          if (
            input.type === "nodeEvent" &&
            input.fencing_token !== undefined &&
            !this.finished.has(input.task_id)
          )
            this.bufferReport(input.task_id, input.status, input.node_id, input.fencing_token, input.nowMs);
          return [];
        }
        const { task_id: _ignored, ...rest } = input;
        return this.run(m, rest);
      }
    }
  }

  private onTask(task: LeaseTask, nowMs: number, expectedBids?: number): TaggedAction[] {
    if (this.finished.has(task.task_id)) return [];
    const existing = this.machines.get(task.task_id);
    if (existing !== undefined) {
      return this.run(existing, {
        type: "task",
        task,
        nowMs,
        ...(expectedBids !== undefined ? { expectedBids } : {}),
      });
    }
    const m = new TaskLeaseMachine(task, this.settings, this.deps, nowMs, expectedBids);
    this.machines.set(task.task_id, m);
    const out = m.start().map((action) => ({ task_id: task.task_id, action }));
    const orphan = this.orphans.get(task.task_id);
    this.orphans.delete(task.task_id);
    for (const bid of orphan?.bids ?? []) out.push(...this.run(m, { type: "bid", bid, nowMs }));
    for (const r of orphan?.reports ?? []) out.push(...this.run(m, { type: "nodeEvent", ...r, nowMs }));
    return out;
  }

  private run(m: TaskLeaseMachine, input: Parameters<TaskLeaseMachine["step"]>[0]): TaggedAction[] {
    const actions = m.step(input).map((action) => ({ task_id: m.taskId, action }));
    if (m.isDone()) {
      this.machines.delete(m.taskId);
      this.finished.add(m.taskId);
      if (this.finished.size > this.maxFinished) {
        const oldest = this.finished.values().next();
        if (oldest.done !== true) this.finished.delete(oldest.value);
      }
    }
    return actions;
  }

  private bufferOrphan(bid: LeaseBid, nowMs: number): void {
    const entry = this.orphanOf(bid.task_id, nowMs);
    entry.bids = [...entry.bids.filter((b) => b.node_id !== bid.node_id), bid];
  }

  private bufferReport(
    taskId: string,
    status: NodeEventStatus,
    nodeId: string,
    fencingToken: number,
    nowMs: number,
  ): void {
    const entry = this.orphanOf(taskId, nowMs);
    if (entry.reports.length >= MAX_ORPHAN_REPORTS) entry.reports.shift();
    entry.reports.push({ status, node_id: nodeId, fencing_token: fencingToken });
  }

  private orphanOf(taskId: string, nowMs: number): Orphan {
    const entry = this.orphans.get(taskId);
    if (entry !== undefined) return entry;
    if (this.orphans.size >= this.maxOrphanTasks) {
      const oldest = this.orphans.keys().next();
      if (oldest.done !== true) this.orphans.delete(oldest.value);
    }
    const fresh: Orphan = { firstMs: nowMs, bids: [], reports: [] };
    this.orphans.set(taskId, fresh);
    return fresh;
  }
}
